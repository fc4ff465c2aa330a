"""Assent device SDK for Python: enroll a device and answer login
confirmations (OTP and push) through a handler object.

    import assent_device

    class Handler:
        def confirm(self, request: assent_device.Request) -> assent_device.Answer:
            if request.number_choices:              # number matching
                return assent_device.accept(number=ask_person(request.number_choices))
            return assent_device.accept()

    assent_device.enroll("/var/lib/kiosk/assent", "http://127.0.0.1:50051", code, "Kiosk 7")
    with assent_device.Device("/var/lib/kiosk/assent", "http://127.0.0.1:50051", Handler()) as device:
        outcome = device.submit_otp(otp_from_qr_code, timeout=60)
        print(outcome.ok, outcome.state, outcome.error)
"""

import os
from typing import Dict, List, Optional, Protocol, Union

__version__: str

_Path = Union[str, "os.PathLike[str]"]

class AssentError(Exception):
    """Base class of every error the Assent device SDK raises."""

class NotEnrolledError(AssentError):
    """The state directory holds no enrollment: call enroll() first."""

class AlreadyEnrolledError(AssentError):
    """The state directory already holds an enrollment: pass force=True to replace it."""

class InvalidArgumentError(AssentError):
    """A device name or server URL that cannot be used."""

class EnrollmentRefusedError(AssentError):
    """The server refused the enrollment (unknown, used or expired code, invalid input)."""

class ServerUnreachableError(AssentError):
    """The server could not be reached (network, TLS, or no answer in time)."""

class RevokedError(AssentError):
    """The server revoked this device: enroll it again with a new code."""

class Request:
    """A confirmation request: who asks, for whom, what to show, until when."""

    transaction_id: str
    kind: str
    """"OTP" (the device handed in an OTP) or "PUSH" (the server pushed it)."""
    application_id: str
    application_name: str
    user_id: str
    message: str
    context: Dict[str, str]
    expires_at: Optional[str]
    """ISO 8601 in UTC (e.g. "2030-01-01T12:00:00+00:00"), or None."""
    number_choices: List[int]
    """Under number matching, the three numbers to pick from; empty otherwise."""

    def is_withdrawn(self) -> bool:
        """Whether the server withdrew the request (cancelled, expired, answered
        elsewhere, device revoked). Always False on requests from Device.pending()."""
    def wait_withdrawn(self, timeout: Optional[float] = None) -> bool:
        """Waits (without the GIL) until the request is withdrawn, at most
        `timeout` seconds; returns whether it was."""
    def to_dict(self) -> Dict[str, object]:
        """The attributes as a dict."""

class Answer:
    """A handler's answer; made by accept() or deny()."""

    accepted: bool
    number: Optional[int]
    """The number picked under number matching, or None."""
    reason: Optional[str]
    """"not_me", "cancelled_by_user" or "policy" for a denial; None for an acceptance."""

def accept(number: Optional[int] = None) -> Answer:
    """Approve the login. Under number matching `number` must be the number the
    login page shows (one of request.number_choices); otherwise leave it None.
    An acceptance that does not answer the request's choices is sent as a
    denial with reason "policy"."""

def deny(reason: str) -> Answer:
    """Refuse the login: "not_me" (the person did not try to log in: the
    relying party sees a fraud report and further pushes to the user are held
    back), "cancelled" (the person gave up) or "policy" (a rule refused it).
    Raises ValueError for any other reason."""

class Outcome:
    """How a handed-in OTP ended."""

    ok: bool
    """True only when the login was accepted."""
    state: Optional[str]
    """"ACCEPTED", "DENIED", "EXPIRED", "CANCELLED" or "FAILED"; None with an error."""
    transaction_id: Optional[str]
    reason: Optional[str]
    """The reason stored with a denial or given with a cancellation."""
    error: Optional[str]
    """Why there is no final state: malformed, unknown, expired or used OTP,
    server unreachable, timeout, device stopped."""

    def to_dict(self) -> Dict[str, object]:
        """The attributes as a dict."""

class Handler(Protocol):
    """What Device expects of its handler. Only confirm is required; the
    on_* methods are called when present. Every method is called on a
    thread of the device (never the caller's), with the GIL held; an
    exception in confirm denies with reason "policy" and is logged on the
    "assent_device" logger, an exception in the others is logged."""

    def confirm(self, request: Request) -> Answer: ...
    # Optional:
    # def on_withdrawn(self, transaction_id: str, reason: str) -> None
    #     The server withdrew a request this device held ("cancelled",
    #     "expired", "answered_elsewhere", "device_revoked", ...).
    # def on_decided(self, transaction_id: str, state: str, applied: bool) -> None
    #     The server's verdict on a decision this device sent: the final state
    #     and whether this device's decision was the one applied.
    # def on_connection(self, state: str, detail: str) -> None
    #     "connected" (detail: the server URL), "disconnected" (detail: why;
    #     the device retries with back-off) or "revoked" (detail: the
    #     server's words; the device stops).

def enroll(
    state_dir: _Path,
    server: str,
    code: str,
    device_name: str,
    force: bool = False,
    ca_cert: Optional[_Path] = None,
) -> Dict[str, str]:
    """Enrolls this device with the one-time code the application showed the
    user and saves its key in state_dir. Returns {"device_id", "user_id",
    "application_id", "application_name"}. Raises AlreadyEnrolledError (unless
    force), InvalidArgumentError, EnrollmentRefusedError,
    ServerUnreachableError or AssentError."""

class Device:
    """A running device: holds the signed stream to the server (reconnecting
    with back-off) and asks handler.confirm about every login confirmation.
    Use it as a context manager, or call stop()."""

    def __init__(
        self,
        state_dir: _Path,
        server: str,
        handler: Handler,
        ca_cert: Optional[_Path] = None,
    ) -> None:
        """Starts the device enrolled in state_dir; returns at once (it connects
        in the background). Raises NotEnrolledError, InvalidArgumentError, or
        TypeError when handler has no confirm method."""
    def submit_otp(self, otp: str, timeout: Optional[float] = None) -> Outcome:
        """Hands in the OTP from the login page's QR code and waits (without
        the GIL; Ctrl-C interrupts) for its outcome. Never raises for what
        happened to the login: see Outcome."""
    def status(self) -> Optional[Dict[str, object]]:
        """{"connected", "device_id", "user_id", "application_id",
        "application_name", "server"}; None once stopped."""
    def pending(self) -> List[Request]:
        """The requests the handler is deciding now."""
    def stop(self) -> None:
        """Stops the device (idempotent). Raises RevokedError when the server
        had revoked it."""
    def __enter__(self) -> "Device": ...
    def __exit__(self, *args: object) -> bool: ...
