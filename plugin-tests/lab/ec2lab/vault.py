"""A fake HashiCorp Vault answering only what a Vault AWS secrets engine client asks.

`GET /v1/<engine>/creds/<role>` (an iam_user role: access and secret key, no
session token) and `GET|POST|PUT /v1/<engine>/sts/<role>` (an assumed_role
role: with a session token and the role ARN; a JSON body may name `role_arn`
and `ttl`), answered in Vault's response shape with fresh lab keys that moto
accepts. Every other path is Vault's 404; a missing or wrong X-Vault-Token is
Vault's 403 "permission denied". Every request is recorded (without the token
itself), so tests can tell what the client asked and which keys it was given.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import LAB_ACCOUNT

StartResponse = Callable[..., Any]
#: Vault's own default lease of AWS credentials (32 days is its max; 768h).
DEFAULT_LEASE_SECONDS = 3600


@dataclass
class VaultRequest:
    """One request the fake Vault received."""

    time: float
    method: str
    path: str
    #: The X-Vault-Token header matched the lab's token.
    token_ok: bool
    #: Whether an X-Vault-Token header was sent at all.
    token_sent: bool
    #: The JSON body of a write (`role_arn`, `ttl`), {} for reads.
    body: dict[str, Any]
    status: int = 0
    #: Keys handed out by this request ("" when refused).
    access_key: str = ""
    secret_key: str = ""
    security_token: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def _reply(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _lab_key(prefix: str) -> str:
    """An access key id in AWS's shape (20 upper-case characters)."""
    return (prefix + secrets.token_hex(10).upper())[:20]


class FakeVault:
    """WSGI app of the fake Vault; thread-safe."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._lock = threading.Lock()
        self.requests: list[VaultRequest] = []

    def snapshot(self) -> list[dict[str, Any]]:
        """Every request so far, oldest first, JSON-able."""
        with self._lock:
            return [asdict(r) for r in self.requests]

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        sent = environ.get("HTTP_X_VAULT_TOKEN")
        request = VaultRequest(
            time.time(),
            method,
            path,
            token_ok=sent is not None and secrets.compare_digest(sent, self.token),
            token_sent=sent is not None,
            body={},
            headers={k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_") and k != "HTTP_X_VAULT_TOKEN"},
        )
        with self._lock:
            self.requests.append(request)
        status, body = self._answer(request, method, path, raw)
        request.status = status
        return _reply(start_response, status, body)

    def _answer(self, request: VaultRequest, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                return 400, {"errors": [f"failed to parse JSON input: {exc}"]}
            if not isinstance(parsed, dict):
                return 400, {"errors": ["request body must be a JSON object"]}
            request.body = parsed
        if path == "/v1/sys/health":
            return 200, {"initialized": True, "sealed": False, "standby": False, "version": "1.15.0-ec2lab"}
        if not request.token_ok:
            # Vault says no more than this, whether the token is missing, wrong or expired.
            return 403, {"errors": ["permission denied"]}
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "v1" or parts[2] not in ("creds", "sts"):
            return 404, {"errors": [f"no handler for route {path.removeprefix('/v1/')!r}. route entry not found."]}
        _, engine, kind, role = parts
        if kind == "creds" and method != "GET":
            return 405, {"errors": ["1 error occurred:\n\t* unsupported operation\n\n"]}
        if kind == "sts" and method not in ("GET", "POST", "PUT"):
            return 405, {"errors": ["1 error occurred:\n\t* unsupported operation\n\n"]}
        lease = DEFAULT_LEASE_SECONDS
        data: dict[str, Any]
        if kind == "creds":
            request.access_key = _lab_key("AKIAVAULT")
            request.secret_key = "vault-secret-" + secrets.token_hex(12)
            data = {"access_key": request.access_key, "secret_key": request.secret_key, "security_token": None}
        else:
            ttl = str(request.body.get("ttl", "") or "")
            if ttl:
                try:
                    lease = int(ttl.removesuffix("s"))
                except ValueError:
                    return 400, {"errors": [f"invalid ttl {ttl!r}"]}
            role_arn = request.body.get("role_arn") or f"arn:aws:iam::{LAB_ACCOUNT}:role/{role}"
            request.access_key = _lab_key("ASIAVAULT")
            request.secret_key = "vault-sts-secret-" + secrets.token_hex(12)
            request.security_token = "vault-sts-token-" + secrets.token_hex(24)
            data = {
                "access_key": request.access_key,
                "secret_key": request.secret_key,
                "security_token": request.security_token,
                "session_token": request.security_token,
                "arn": f"arn:aws:sts::{LAB_ACCOUNT}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/vault-{role}",
                "ttl": lease,
            }
        return 200, {
            "request_id": str(uuid.uuid4()),
            "lease_id": f"{engine}/{kind}/{role}/{uuid.uuid4().hex[:24]}",
            "renewable": kind == "creds",
            "lease_duration": lease,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
