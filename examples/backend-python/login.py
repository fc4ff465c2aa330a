#!/usr/bin/env python3
"""A web backend's login flow with Assent, in a terminal (grpcio).

Creates an OTP login bound to a (pretend) browser session, prints the code to
scan (or hand to `assent-agent otp`), waits for the outcome with
WaitTransaction, checks the binding and the server's Ed25519 signature over
the outcome event (docs/relying-party.md), and prints "Logged in as USER" or
the refusal. Exit status 0 only for a verified acceptance.

Environment: ASSENT_SERVER (host:port, default 127.0.0.1:50051),
ASSENT_API_KEY (required). Usage: login.py [USER]
"""

import hashlib
import os
import secrets
import struct
import sys
import tempfile
import importlib

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "proto", "proto")


def load_stubs():
    """Generates the Python stubs from the repository's .proto files."""
    out = tempfile.mkdtemp(prefix="assent-stubs-")
    wkt = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for name in ("common", "relying_party"):
        code = protoc.main([
            "protoc", f"-I{PROTO_DIR}", f"-I{wkt}", f"--python_out={out}",
            f"--grpc_python_out={out}", f"assent/v1/{name}.proto",
        ])
        if code != 0:
            sys.exit(f"error: cannot compile assent/v1/{name}.proto")
    for package in ("assent", "assent/v1"):
        open(os.path.join(out, package, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    pb = importlib.import_module("assent.v1.relying_party_pb2")
    rpc = importlib.import_module("assent.v1.relying_party_pb2_grpc")
    common = importlib.import_module("assent.v1.common_pb2")
    return pb, rpc, common


def field(value):
    data = value.encode() if isinstance(value, str) else bytes(value)
    return struct.pack(">I", len(data)) + data


def event_bytes(event):
    """The `assent.v1.event` layout the server signs."""
    micros = event.occurred_at.seconds * 1_000_000 + event.occurred_at.nanos // 1000
    return b"".join([
        field("assent.v1.event"), field(event.application_id),
        field(struct.pack(">Q", event.cursor)), field(event.type),
        field(event.transaction_id), field(event.user_id), field(event.device_id),
        field(event.reason), field(bytes([1 if event.fraud_reported else 0])),
        field(event.binding), field(struct.pack(">q", micros)),
    ])


def main():
    api_key = os.environ.get("ASSENT_API_KEY")
    if not api_key:
        sys.exit("error: set ASSENT_API_KEY to your application's API key")
    user = sys.argv[1] if len(sys.argv) > 1 else "alice"
    pb, rpc, common = load_stubs()
    channel = grpc.insecure_channel(os.environ.get("ASSENT_SERVER", "127.0.0.1:50051"))
    assent = rpc.RelyingPartyServiceStub(channel)
    auth = [("authorization", f"Bearer {api_key}")]

    session_id = secrets.token_hex(32)
    binding = hashlib.sha256(session_id.encode()).digest()
    created = assent.CreateOtpAuthentication(pb.CreateOtpAuthenticationRequest(
        message=f"Log in to Example Shop as {user}?", user_id=user, binding=binding,
        context={"browser": "a terminal"}), metadata=auth, timeout=10)
    print(f"Scan the QR code of this text, or run:  assent-agent otp {created.qr_payload}",
          flush=True)

    while True:
        answer = assent.WaitTransaction(pb.WaitTransactionRequest(
            transaction_id=created.transaction_id, timeout_ms=20_000), metadata=auth, timeout=30)
        if not answer.timed_out:
            break
    tx, event = answer.transaction, answer.last_event
    state = common.TransactionState.Name(tx.state).replace("TRANSACTION_STATE_", "")
    if state != "ACCEPTED":
        print(f"Login refused: {state.lower()}" + (f" ({tx.reason})" if tx.reason else ""))
        return 1
    keys = assent.ListServerKeys(pb.ListServerKeysRequest(), metadata=auth, timeout=10).keys
    key = next((k for k in keys if k.key_id == event.key_id), None)
    if tx.binding != binding or event.binding != binding or key is None:
        print("Login refused: the outcome does not belong to this session")
        return 1
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(event.signature, event_bytes(event))
    except Exception:  # cryptography raises InvalidSignature
        print("Login refused: the outcome event signature does not verify")
        return 1
    print(f"Logged in as {tx.user_id} (outcome signed by server key {key.key_id})")
    return 0


def explain(error):
    """One line a person can act on, instead of a traceback."""
    code = error.code()
    server = os.environ.get("ASSENT_SERVER", "127.0.0.1:50051")
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"error: cannot reach the Assent server at {server} (is assent-server running? set ASSENT_SERVER)"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"error: the API key was refused: {error.details()}"
    return f"error: {code.name}: {error.details()}"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as error:
        sys.exit(explain(error))
    except KeyboardInterrupt:
        sys.exit(130)
