"""The Python binding against a real Assent server.

The device side uses only the `assent_device` Python API; the relying-party
side is the real `assent` command line, talking to a real `assent-server`
process on a free loopback port with its SQLite store in a temporary
directory. Both binaries come from `cargo build --workspace` (target/debug,
or the directory named by ASSENT_BIN_DIR).

Every wait is bounded; every process and directory is cleaned up.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

import assent_device

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("ASSENT_BIN_DIR", REPO / "target" / "debug"))
APP_NAME = "Example Shop"
# Upper bound of any single wait in these tests (seconds).
WAIT = 30


def binary(name):
    path = BIN_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --workspace` first")
    return str(path)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Server:
    """A running assent-server and the relying party's command line."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="assent-pytest-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / "server.log"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("ASSENT_") and key != "DATABASE_URL"
        }
        self.env["ASSENT_DATA_DIR"] = str(self.dir / "data")
        self.api_key = None
        self.process = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    binary("assent-server"),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--metrics-listen",
                    "off",
                    "serve",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

        def listening():
            if self.process.poll() is not None:
                pytest.fail(f"assent-server exited early:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listening, "assent-server to listen")
        created = subprocess.run(
            [binary("assent-server"), "app", "create", "--name", APP_NAME, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
        assert created.returncode == 0, created.stderr
        self.api_key = json.loads(created.stdout)["api_key"]

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def assent(self, *args, check=True):
        """Runs `assent --json ARGS` as the relying party; returns its JSON."""
        done = subprocess.run(
            [binary("assent"), "--server", self.url, "--api-key", self.api_key, "--json", *args],
            capture_output=True,
            text=True,
            timeout=WAIT + 10,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert done.returncode == 0, f"assent {args} failed: {done.stderr}{done.stdout}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def events(self):
        """The application's event log (one JSON object per line)."""
        done = subprocess.run(
            [binary("assent"), "--server", self.url, "--api-key", self.api_key, "--json", "events"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


class Recorder:
    """A handler that records every callback; `decide` answers confirm."""

    def __init__(self, decide):
        self.decide = decide
        self.requests = []
        self.withdrawn = []
        self.decided = []
        self.connections = []
        self.changed = threading.Condition()

    def _record(self, into, item):
        with self.changed:
            into.append(item)
            self.changed.notify_all()

    def confirm(self, request):
        self._record(self.requests, request)
        return self.decide(request)

    def on_withdrawn(self, transaction_id, reason):
        self._record(self.withdrawn, (transaction_id, reason))

    def on_decided(self, transaction_id, state, applied):
        self._record(self.decided, (transaction_id, state, applied))

    def on_connection(self, state, detail):
        self._record(self.connections, (state, detail))

    def wait_for(self, what, predicate, timeout=WAIT):
        with self.changed:
            if not self.changed.wait_for(predicate, timeout=timeout):
                pytest.fail(f"timed out after {timeout} s waiting for {what}")

    def request_for(self, transaction_id):
        self.wait_for(
            f"confirm() for {transaction_id}",
            lambda: any(r.transaction_id == transaction_id for r in self.requests),
        )
        return next(r for r in self.requests if r.transaction_id == transaction_id)


@pytest.fixture(scope="module")
def server():
    running = Server()
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def state_dir():
    path = Path(tempfile.mkdtemp(prefix="assent-device-"))
    yield path / "state"
    shutil.rmtree(path, ignore_errors=True)


def new_user():
    return f"user-{uuid.uuid4().hex[:12]}"


def enroll(server, state_dir, user):
    code = server.assent("enrollment", "create", "--user", user)["code"]
    return assent_device.enroll(state_dir, server.url, code, "pytest device")


@pytest.fixture
def device_for(server, state_dir):
    """Enrolls a device for a fresh user and starts it with a Recorder."""
    started = []

    def start(decide):
        user = new_user()
        enrollment = enroll(server, state_dir, user)
        handler = Recorder(decide)
        device = assent_device.Device(state_dir, server.url, handler)
        started.append(device)
        handler.wait_for(
            "on_connection('connected')",
            lambda: any(state == "connected" for state, _ in handler.connections),
        )
        return device, handler, user, enrollment

    yield start
    for device in started:
        device.stop()


def test_enroll_returns_the_new_device_and_the_server_lists_it(server, state_dir):
    user = new_user()
    enrollment = enroll(server, state_dir, user)

    assert set(enrollment) == {"device_id", "user_id", "application_id", "application_name"}
    assert enrollment["user_id"] == user
    assert enrollment["application_name"] == APP_NAME
    devices = server.assent("devices", "list", "--user", user)
    assert [d["device_id"] for d in devices] == [enrollment["device_id"]]

    # The enrollment is kept unless force=True; a spent code is refused.
    code = server.assent("enrollment", "create", "--user", user)["code"]
    with pytest.raises(assent_device.AlreadyEnrolledError, match="force=True"):
        assent_device.enroll(state_dir, server.url, code, "again")
    assent_device.enroll(state_dir, server.url, code, "again", force=True)
    with pytest.raises(assent_device.EnrollmentRefusedError):
        assent_device.enroll(state_dir, server.url, code, "third", force=True)


def test_a_device_without_enrollment_does_not_start(server, tmp_path):
    with pytest.raises(assent_device.NotEnrolledError, match="enroll"):
        assent_device.Device(tmp_path / "empty", server.url, Recorder(lambda r: None))
    with pytest.raises(TypeError, match="confirm"):
        assent_device.Device(tmp_path / "empty", server.url, object())


def test_status_reports_the_connected_enrollment(device_for, server):
    device, _, user, enrollment = device_for(lambda request: assent_device.deny("policy"))
    status = device.status()
    assert status["connected"] is True
    assert status["device_id"] == enrollment["device_id"]
    assert status["user_id"] == user
    assert status["application_name"] == APP_NAME
    device.stop()
    assert device.status() is None
    assert device.pending() == []
    device.stop()  # idempotent


def test_push_with_number_matching_is_accepted_with_the_number_the_login_page_shows(device_for, server):
    shown = {}
    ready = threading.Event()

    def pick_the_shown_number(request):
        # The login page shows the number to the person, who picks it here.
        assert ready.wait(WAIT), "the test never learnt the shown number"
        return assent_device.accept(number=shown[request.transaction_id])

    device, handler, user, enrollment = device_for(pick_the_shown_number)
    push = server.assent(
        "login", "push", "--user", user, "--number-matching",
        "--message", "Log in from Firefox?", "--context", "city=Berlin",
    )
    tx, number = push["transaction_id"], push["number"]
    assert isinstance(number, int)
    shown[tx] = number
    ready.set()

    request = handler.request_for(tx)
    assert request.kind == "PUSH"
    assert request.message == "Log in from Firefox?"
    assert request.context == {"city": "Berlin"}
    assert request.application_name == APP_NAME
    assert request.user_id == user
    assert len(request.number_choices) == 3 and number in request.number_choices
    assert datetime.fromisoformat(request.expires_at) > datetime.now(timezone.utc)

    handler.wait_for(f"on_decided for {tx}", lambda: (tx, "ACCEPTED", True) in handler.decided)
    outcome = server.assent("tx", "wait", tx, "--timeout", str(WAIT))
    assert outcome["state"] == "ACCEPTED"
    assert outcome["device_id"] == enrollment["device_id"]
    assert outcome["number_matching"] is True


def test_deny_not_me_is_reported_to_the_relying_party_as_fraud(device_for, server):
    device, handler, user, enrollment = device_for(lambda request: assent_device.deny("not_me"))
    tx = server.assent("login", "push", "--user", user)["transaction_id"]

    handler.request_for(tx)
    handler.wait_for(f"on_decided for {tx}", lambda: (tx, "DENIED", True) in handler.decided)
    seen = server.assent("tx", "get", tx)
    assert seen["state"] == "DENIED"
    assert seen["reason"] == "not_me"
    assert seen["device_id"] == enrollment["device_id"]
    denials = [e for e in server.events() if e["transaction_id"] == tx and e["type"] == "transaction.denied"]
    assert len(denials) == 1
    assert denials[0]["fraud_reported"] is True


def test_an_exception_in_confirm_denies_with_reason_policy_and_is_logged(device_for, server, caplog):
    def broken(request):
        raise RuntimeError("the dialog crashed")

    caplog.set_level("ERROR", logger="assent_device")
    device, handler, user, _ = device_for(broken)
    tx = server.assent("login", "push", "--user", user)["transaction_id"]

    handler.request_for(tx)
    handler.wait_for(f"on_decided for {tx}", lambda: (tx, "DENIED", True) in handler.decided)
    seen = server.assent("tx", "get", tx)
    assert (seen["state"], seen["reason"]) == ("DENIED", "policy")
    wait_until(
        lambda: any("the dialog crashed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info),
        "the exception to be logged",
    )


def test_an_otp_handed_in_is_confirmed_and_succeeds(device_for, server):
    device, handler, user, enrollment = device_for(lambda request: assent_device.accept())
    login = server.assent(
        "login", "otp", "--user", user, "--message", "Log in to the shop?", "--context", "browser=Firefox"
    )

    outcome = device.submit_otp(login["otp"], timeout=WAIT)

    assert outcome.ok is True, outcome
    assert outcome.state == "ACCEPTED"
    assert outcome.transaction_id == login["transaction_id"]
    assert outcome.error is None
    request = handler.request_for(login["transaction_id"])
    handler.wait_for(
        "on_decided for the OTP", lambda: (login["transaction_id"], "ACCEPTED", True) in handler.decided
    )
    assert request.kind == "OTP"
    assert request.message == "Log in to the shop?"
    assert request.context == {"browser": "Firefox"}
    assert request.number_choices == []
    seen = server.assent("tx", "get", login["transaction_id"])
    assert seen["state"] == "ACCEPTED"
    assert seen["device_id"] == enrollment["device_id"]


def test_an_otp_denied_by_the_handler_is_not_ok(device_for, server):
    device, handler, user, _ = device_for(lambda request: assent_device.deny("cancelled"))
    login = server.assent("login", "otp", "--user", user)

    outcome = device.submit_otp(login["otp"], timeout=WAIT)

    assert (outcome.ok, outcome.state, outcome.reason) == (False, "DENIED", "cancelled_by_user"), outcome
    handler.request_for(login["transaction_id"])


def test_an_expired_otp_gives_an_error_outcome(device_for, server):
    device, handler, user, _ = device_for(lambda request: assent_device.accept())
    login = server.assent("login", "otp", "--user", user, "--ttl", "10")
    expires_at = datetime.fromisoformat(login["expires_at"].replace("Z", "+00:00"))
    wait = (expires_at - datetime.now(timezone.utc)).total_seconds() + 1.5
    assert 0 < wait < WAIT
    time.sleep(wait)

    outcome = device.submit_otp(login["otp"], timeout=WAIT)

    assert outcome.ok is False, outcome
    assert outcome.error, outcome
    assert handler.requests == [], "an expired OTP must never reach confirm()"
    assert server.assent("tx", "get", login["transaction_id"])["state"] == "EXPIRED"


def test_a_cancelled_otp_gives_an_error_outcome(device_for, server):
    device, handler, user, _ = device_for(lambda request: assent_device.accept())
    login = server.assent("login", "otp", "--user", user)
    assert server.assent("tx", "cancel", login["transaction_id"])["state"] == "CANCELLED"

    outcome = device.submit_otp(login["otp"], timeout=WAIT)

    assert outcome.ok is False, outcome
    assert outcome.error, outcome
    assert handler.requests == []


def test_a_malformed_otp_and_a_stopped_device_give_error_outcomes(device_for):
    device, _, _, _ = device_for(lambda request: assent_device.accept())
    malformed = device.submit_otp("not an otp!", timeout=WAIT)
    assert (malformed.ok, malformed.state) == (False, None) and malformed.error
    device.stop()
    stopped = device.submit_otp("AAAA", timeout=WAIT)
    assert not stopped.ok and "stopped" in stopped.error


def test_a_request_is_withdrawn_when_the_relying_party_cancels(device_for, server):
    waited = {}

    def wait_for_the_person(request):
        # A dialog open until the person answers or the request is withdrawn.
        waited[request.transaction_id] = request.wait_withdrawn(timeout=WAIT)
        return assent_device.deny("cancelled")

    device, handler, user, _ = device_for(wait_for_the_person)
    tx = server.assent("login", "push", "--user", user)["transaction_id"]
    request = handler.request_for(tx)
    assert not request.is_withdrawn()
    wait_until(lambda: [r.transaction_id for r in device.pending()] == [tx], "the request to be pending")

    assert server.assent("tx", "cancel", tx)["state"] == "CANCELLED"

    handler.wait_for(f"on_withdrawn for {tx}", lambda: any(t == tx for t, _ in handler.withdrawn))
    reasons = [reason for t, reason in handler.withdrawn if t == tx]
    assert reasons and "cancel" in reasons[0], reasons
    assert request.is_withdrawn()
    wait_until(lambda: tx in waited, "confirm() to return")
    assert waited[tx] is True
    wait_until(lambda: device.pending() == [], "the request to leave pending()")
    assert server.assent("tx", "get", tx)["state"] == "CANCELLED"


def test_answers_are_built_by_accept_and_deny():
    assert assent_device.accept().accepted is True
    assert assent_device.accept(number=42).number == 42
    assert assent_device.deny("not_me").reason == "not_me"
    assert assent_device.deny("cancelled").reason == "cancelled_by_user"
    assert assent_device.deny("policy").accepted is False
    assert assent_device.accept(number=7) == assent_device.accept(number=7)
    with pytest.raises(ValueError, match="not_me"):
        assent_device.deny("maybe")


def test_stopping_withdraws_a_request_being_decided_and_returns_promptly(device_for, server):
    waited = {}

    def wait_for_the_person(request):
        waited[request.transaction_id] = request.wait_withdrawn(timeout=WAIT)
        return assent_device.accept()

    device, handler, user, _ = device_for(wait_for_the_person)
    tx = server.assent("login", "push", "--user", user)["transaction_id"]
    request = handler.request_for(tx)

    started = time.monotonic()
    device.stop()
    assert time.monotonic() - started < 10

    wait_until(lambda: tx in waited, "confirm() to return")
    assert waited[tx] is True
    # The request outlives its device; asking it is still safe.
    assert request.wait_withdrawn(timeout=0.1) is True
    assert server.assent("tx", "get", tx)["state"] == "PENDING"
