"""The lab's HTTP side: moto behind a middleware that logs, injects faults,
serves IMDS paths and the /_lab control API, all on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime
import io
import ipaddress
import json
import logging
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape as xml_escape

from werkzeug.serving import BaseWSGIServer, make_server

from . import blockdev, emulation, runtime
from .config import LAB_ACCOUNT
from .control import Delay, Fault, LoggedCall, wait
from .imds import Imds
from .vault import FakeVault

log = logging.getLogger("ec2lab")

StartResponse = Callable[..., Any]
CREDENTIAL_RE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/")
#: The credentials an STS answer hands out (AssumeRole, GetSessionToken, …).
ISSUED_RE = {
    "issued_access_key": re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>"),
    "issued_secret_key": re.compile(rb"<SecretAccessKey>([^<]+)</SecretAccessKey>"),
    "issued_session_token": re.compile(rb"<SessionToken>([^<]+)</SessionToken>"),
}
ERROR_CODE_RE = re.compile(rb"<Code>([^<]+)</Code>")


def _json_reply(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    data = json.dumps(body, indent=1, default=str).encode()
    start_response(
        f"{status} {'OK' if status < 400 else 'Error'}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _aws_error(start_response: StartResponse, service: str, fault: Fault) -> list[bytes]:
    if service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{fault.code}</Code><Message>{fault.message}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
        ).encode()
        ctype = "text/xml"
    else:
        body = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        ctype = "application/x-amz-json-1.1"
    start_response(
        f"{fault.status} Injected", [("Content-Type", ctype), ("Content-Length", str(len(body))), ("x-amzn-RequestId", str(uuid.uuid4()))]
    )
    return [body]


def encode_authorization_message(document: dict[str, Any]) -> str:
    """What the lab puts after "Encoded authorization failure message:" in an
    injected UnauthorizedOperation (AWS's own encoding is opaque; only STS
    can read it, and so it is here)."""
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def decode_authorization_message(encoded: str) -> tuple[int, bytes]:
    """STS DecodeAuthorizationMessage (moto has none): (HTTP status, XML body)."""
    try:
        decoded = base64.urlsafe_b64decode(encoded.encode()).decode()
        json.loads(decoded)
    except ValueError:
        return 400, (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            "<Code>InvalidAuthorizationMessageException</Code><Message>The message is not valid.</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        ).encode()
    return 200, (
        '<DecodeAuthorizationMessageResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<DecodeAuthorizationMessageResult><DecodedMessage>{xml_escape(decoded)}</DecodedMessage>"
        f"</DecodeAuthorizationMessageResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
        "</ResponseMetadata></DecodeAuthorizationMessageResponse>"
    ).encode()


def write_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A fresh key and a self-signed certificate for 127.0.0.1 (and localhost),
    valid for a day; (certificate, key) PEM files, the key readable by root only.

    Self-signed on purpose: no client trusts it unless told to, so a client
    that connects without `insecure_skip_tls_verify` (or this file as its CA)
    must fail verification with "unknown issuer", not a name mismatch."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec2lab self-signed 127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        # A server certificate, not a CA: as HTTPS servers present; clients that
        # trust this file directly (boto3's verify=, curl --cacert) accept it.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ec2lab-cert.pem", directory / "ec2lab-key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class LabApp:
    """WSGI app of the EC2 port."""

    def __init__(self, moto_app: Any, imds: Imds, lab: Lab) -> None:
        self.moto_app = moto_app
        self.imds = imds
        self.lab = lab

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_lab/"):
            return self.control(environ, start_response)
        if path.startswith("/latest/"):
            # Packer's Go SDK sends IMDS requests to custom_endpoint_ec2.
            if runtime.get().config.imds_disabled:
                return _json_reply(start_response, 404, {"error": "IMDS disabled"})
            return self.imds(environ, start_response)
        return self.aws(environ, start_response)

    # ----- AWS requests -----------------------------------------------
    def aws(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rt = runtime.get()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        match = CREDENTIAL_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
        access_key, region, service = match.groups() if match else ("", "", "")
        params = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qs(body.decode(errors="replace")))
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = params.get("Action", [target.rsplit(".", 1)[-1] if target else ""])[0]
        if target and not params:
            try:
                params = {k: [json.dumps(v) if not isinstance(v, str) else v] for k, v in json.loads(body or b"{}").items()}
            except ValueError:
                params = {}
        params.pop("Action", None)
        params.pop("Version", None)
        call = rt.control.record(
            LoggedCall(time.time(), service, action, region, params, access_key=access_key, tls=environ.get("wsgi.url_scheme") == "https")
        )
        wait(rt.control.delay_for(action))
        fault = rt.control.fault_for(action, region)
        if fault is not None:
            call.status, call.error = fault.status, fault.code
            return _aws_error(start_response, service, fault)
        if service == "sts" and action == "DecodeAuthorizationMessage":
            call.status, body = decode_authorization_message(params.get("EncodedMessage", [""])[0])
            start_response(f"{call.status} {'OK' if call.status < 400 else 'Error'}",
                           [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
            return [body]
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        with rt.lock:
            rt.tick()
            chunks = list(self.moto_app(environ, capture))
        call.status = captured.get("status", 0)
        if call.status >= 400:
            found = ERROR_CODE_RE.search(b"".join(chunks))
            call.error = found.group(1).decode() if found else "error"
        elif service == "sts":
            answer = b"".join(chunks)
            for attr, pattern in ISSUED_RE.items():
                issued = pattern.search(answer)
                setattr(call, attr, issued.group(1).decode() if issued else "")
        return chunks

    # ----- control API ------------------------------------------------
    def control(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rt = runtime.get()
        method = environ["REQUEST_METHOD"]
        path = environ["PATH_INFO"][len("/_lab/") :].strip("/")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return _json_reply(start_response, 400, {"error": f"bad JSON: {exc}"})
        try:
            result = self.lab.handle_control(method, path, data, parse_qs(environ.get("QUERY_STRING", "")))
        except (KeyError, ValueError, TypeError, FileNotFoundError, blockdev.BlockDeviceError) as exc:
            return _json_reply(start_response, 400, {"error": str(exc)})
        if result is None:
            return _json_reply(start_response, 404, {"error": f"no control endpoint {method} /_lab/{path}"})
        del rt
        return _json_reply(start_response, 200, result)


class Lab:
    """Owns the servers of one lab daemon."""

    def __init__(self, rt: runtime.Runtime) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.rt = rt
        self.imds = Imds()
        self.app = LabApp(DomainDispatcherApplication(create_backend_app), self.imds, self)
        self.ec2_server: BaseWSGIServer | None = None
        self.imds_server: BaseWSGIServer | None = None
        self.imds_port = rt.config.imds_port
        self.https_server: BaseWSGIServer | None = None
        self.tls_cert: Path | None = None
        self.vault = FakeVault("hvs.ec2lab" + secrets.token_hex(12))
        self.vault_server: BaseWSGIServer | None = None
        self.vault_https_server: BaseWSGIServer | None = None
        self.done = threading.Event()

    # ----- servers ----------------------------------------------------
    def start(self) -> None:
        """Bind and serve both ports (in threads)."""
        cfg = self.rt.config
        self.ec2_server = make_server("127.0.0.1", cfg.ec2_port, self.app, threaded=True)
        cfg.ec2_port = self.ec2_server.server_port
        threading.Thread(target=self.ec2_server.serve_forever, daemon=True, name="ec2lab-ec2").start()
        if not cfg.imds_disabled:
            self._start_imds()
        elif not self.imds_port:
            # Reserve a port number for later enabling; nothing listens on it now.
            probe = make_server("127.0.0.1", 0, self.imds)
            self.imds_port = probe.server_port
            probe.server_close()
        cfg.imds_port = self.imds_port
        self.tls_cert, tls_key = write_self_signed_certificate(cfg.state_path / "tls")
        self.https_server = self._serve_https("https", cfg.https_port, self.app, self.tls_cert, tls_key)
        cfg.https_port = self.https_server.server_port
        self.vault_server = self._serve("vault", cfg.vault_port, self.vault)
        cfg.vault_port = self.vault_server.server_port
        self.vault_https_server = self._serve_https("vault-https", cfg.vault_https_port, self.vault, self.tls_cert, tls_key)
        cfg.vault_https_port = self.vault_https_server.server_port

    @staticmethod
    def _serve(what: str, port: int, app: Any, server: BaseWSGIServer | None = None) -> BaseWSGIServer:
        server = server or make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True, name=f"ec2lab-{what}").start()
        return server

    def _serve_https(self, what: str, port: int, app: Any, cert: Path, key: Path) -> BaseWSGIServer:
        """An app over TLS. werkzeug's own ssl_context= does each handshake in
        its accept loop, so one client that connects and stalls (or a lab stop
        meanwhile) would block every other; here the handshake happens on the
        connection's first read, in that connection's thread."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        server = make_server("127.0.0.1", port, app, threaded=True)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        # werkzeug derives wsgi.url_scheme ("https") from this attribute.
        server.ssl_context = context
        return self._serve(what, port, app, server)

    def _start_imds(self) -> None:
        self.imds_server = make_server("127.0.0.1", self.imds_port, self.imds, threaded=True)
        self.imds_port = self.imds_server.server_port
        threading.Thread(target=self.imds_server.serve_forever, daemon=True, name="ec2lab-imds").start()

    def _stop_imds(self) -> None:
        if self.imds_server is not None:
            self.imds_server.shutdown()
            self.imds_server.server_close()
            self.imds_server = None

    def set_imds(self, require_v2: bool | None, disabled: bool | None) -> dict[str, Any]:
        """Switch IMDS behaviour at run time (disabled = port closed)."""
        cfg = self.rt.config
        if require_v2 is not None:
            cfg.imds_require_v2 = bool(require_v2)
        if disabled is not None:
            cfg.imds_disabled = bool(disabled)
            if cfg.imds_disabled:
                self._stop_imds()
            elif self.imds_server is None:
                self._start_imds()
        return {"require_v2": cfg.imds_require_v2, "disabled": cfg.imds_disabled, "port": self.imds_port}

    def stop(self) -> list[str]:
        """Tear down devices and stop serving."""
        done = self.rt.shutdown()
        self._stop_imds()
        for attr in ("https_server", "vault_server", "vault_https_server"):
            server = getattr(self, attr)
            if server is not None:
                server.shutdown()
                server.server_close()
                setattr(self, attr, None)
        self.done.set()
        return done

    # ----- control endpoints ------------------------------------------
    def handle_control(self, method: str, path: str, data: dict[str, Any], query: dict[str, list[str]]) -> Any:
        """Dispatch /_lab/<path>; None means unknown endpoint."""
        rt = self.rt
        ctl = rt.control
        if method == "GET" and path == "health":
            return {"ready": True, "name": rt.config.name}
        if method == "GET" and path == "info":
            return self.info()
        if method == "GET" and path == "calls":
            calls = ctl.snapshot()["calls"]
            if "action" in query:
                calls = [c for c in calls if c["action"] in query["action"]]
            return calls
        if method == "GET" and path == "faults":
            snap = ctl.snapshot()
            return {"faults": snap["faults"], "delays": snap["delays"]}
        if method == "POST" and path == "faults":
            fault = Fault.from_request(data)
            ctl.add_fault(fault)
            return asdict(fault)
        if method == "POST" and path == "delays":
            ctl.set_delay(Delay(data["action"], float(data["seconds"])))
            return ctl.snapshot()["delays"]
        if method == "GET" and path == "vault":
            return self.vault.snapshot()
        if method == "POST" and path == "reset":
            ctl.reset()
            self.vault.reset()
            with rt.lock:
                rt.config.timings.device_withhold = False
            return {"reset": True}
        if method == "GET" and path == "timings":
            return asdict(rt.config.timings)
        if method == "POST" and path == "timings":
            with rt.lock:
                rt.config.timings.update(data)
            return asdict(rt.config.timings)
        if method == "POST" and path == "busy-detach":
            if data.get("mode") not in ("error", "hang"):
                raise ValueError("mode must be error or hang")
            rt.config.busy_detach = data["mode"]
            return {"mode": rt.config.busy_detach}
        if method == "POST" and path == "devices/show":
            return {"shown": rt.show_withheld()}
        if method == "POST" and path == "imds":
            return self.set_imds(data.get("require_v2"), data.get("disabled"))
        if method == "POST" and path == "snapshots/import":
            with rt.lock:
                snap = emulation.import_snapshot(data["path"], data.get("description", ""), data.get("region"))
            return {"SnapshotId": snap.id, "VolumeSize": snap.volume_size}
        if method == "GET" and path == "resources":
            with rt.lock:
                rt.tick()
                return self.resources()
        if method == "POST" and path == "shutdown":
            done = self.stop()
            return {"stopped": True, "done": done}
        return None

    def info(self) -> dict[str, Any]:
        """What labctl writes into the state file."""
        rt = self.rt
        return {
            "name": rt.config.name,
            "region": rt.config.region,
            "availability_zone": rt.availability_zone,
            "device_style": rt.config.device_style,
            "busy_detach": rt.config.busy_detach,
            "state_dir": rt.config.state_dir,
            "ec2_port": rt.config.ec2_port,
            "imds_port": self.imds_port,
            "https_port": rt.config.https_port,
            "tls_cert": str(self.tls_cert) if self.tls_cert else "",
            "vault_port": rt.config.vault_port,
            "vault_https_port": rt.config.vault_https_port,
            "vault_token": self.vault.token,
            "instance_id": rt.instance_id,
            "host_image_id": rt.host_image_id,
            "root_volume_id": rt.root_volume_id,
            "account_id": LAB_ACCOUNT,
        }

    def resources(self) -> dict[str, Any]:
        """Images, snapshots and volumes in every region, with files and devices."""
        from moto.ec2.models import ec2_backends

        rt = self.rt
        out: dict[str, list[dict[str, Any]]] = {"amis": [], "snapshots": [], "volumes": []}
        for region, backend in ec2_backends[LAB_ACCOUNT].items():
            for ami in backend.amis.values():
                if not isinstance(ami, emulation.LabAmi):
                    continue
                out["amis"].append(
                    {
                        "ImageId": ami.id,
                        "Region": region,
                        "Name": ami.name,
                        "State": ami.state,
                        "OwnerId": ami.owner_id,
                        "RootDeviceName": ami.root_device_name,
                        "BlockDeviceMappings": ami.lab_mappings,
                        "host": ami.id == rt.host_image_id,
                    }
                )
            for snap in backend.snapshots.values():
                out["snapshots"].append(
                    {
                        "SnapshotId": snap.id,
                        "Region": region,
                        "State": snap.status,
                        "Progress": snap.progress,
                        "VolumeSize": snap.volume_size,
                        "Encrypted": bool(snap.encrypted),
                        "Description": snap.description,
                        "File": str(rt.snapshot_file(snap.id)),
                    }
                )
            for vol in backend.volumes.values():
                host = rt.attached.get(vol.id)
                out["volumes"].append(
                    {
                        "VolumeId": vol.id,
                        "Region": region,
                        "State": vol.status,
                        "Size": vol.size,
                        "SnapshotId": vol.snapshot_id,
                        "Attachments": [{"InstanceId": a.instance.id, "Device": a.device, "State": a.status} for a in vol.attachments],
                        "File": str(rt.volume_file(vol.id)),
                        "HostDevice": (
                            {"loop": host.loop, "disk": f"/dev/{host.disk}", "visible": host.visible, "partitions": sorted(host.partitions)}
                            if host
                            else None
                        ),
                        "host_root": vol.id == rt.root_volume_id,
                    }
                )
        return out
