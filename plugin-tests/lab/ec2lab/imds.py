"""Instance metadata service (IMDSv1 and IMDSv2) for the lab's host instance."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import runtime
from .config import LAB_ACCOUNT, LAB_INSTANCE_ROLE, LAB_ROLE_ACCESS_KEY, LAB_ROLE_SECRET_KEY, LAB_ROLE_TOKEN

TOKEN_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN"
TTL_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS"

StartResponse = Callable[..., Any]


class Imds:
    """WSGI app answering /latest/... like the EC2 metadata service."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def _documents(self) -> dict[str, str]:
        rt = runtime.get()
        cfg = rt.config
        identity = {
            "accountId": LAB_ACCOUNT,
            "architecture": cfg.architecture,
            "availabilityZone": rt.availability_zone,
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": rt.host_image_id,
            "instanceId": rt.instance_id,
            "instanceType": cfg.instance_type,
            "kernelId": None,
            "pendingTime": rt.started_at,
            "privateIp": rt.private_ip,
            "ramdiskId": None,
            "region": cfg.region,
            "version": "2017-09-30",
        }
        now = time.time()
        updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        # Temporary credentials of the instance's role, valid 6 hours as EC2's.
        role_credentials = {
            "Code": "Success",
            "LastUpdated": updated,
            "Type": "AWS-HMAC",
            "AccessKeyId": LAB_ROLE_ACCESS_KEY,
            "SecretAccessKey": LAB_ROLE_SECRET_KEY,
            "Token": LAB_ROLE_TOKEN,
            "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 6 * 3600)),
        }
        iam_info = {
            "Code": "Success",
            "LastUpdated": updated,
            "InstanceProfileArn": f"arn:aws:iam::{LAB_ACCOUNT}:instance-profile/{LAB_INSTANCE_ROLE}",
            "InstanceProfileId": "AIPALABINSTANCEPROFILE",
        }
        return {
            "meta-data/iam/info": json.dumps(iam_info, indent=2),
            f"meta-data/iam/security-credentials/{LAB_INSTANCE_ROLE}": json.dumps(role_credentials, indent=2),
            "meta-data/instance-id": rt.instance_id,
            "meta-data/instance-type": cfg.instance_type,
            "meta-data/ami-id": rt.host_image_id,
            "meta-data/local-ipv4": rt.private_ip,
            "meta-data/placement/availability-zone": rt.availability_zone,
            "meta-data/placement/region": cfg.region,
            "dynamic/instance-identity/document": json.dumps(identity, indent=2),
        }

    def _listing(self, path: str) -> str | None:
        prefix = path.rstrip("/") + "/" if path else ""
        children = set()
        for key in self._documents():
            if key.startswith(prefix):
                head = key[len(prefix) :].split("/", 1)
                children.add(head[0] + ("/" if len(head) > 1 else ""))
        return "\n".join(sorted(children)) if children else None

    def _valid_token(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.time()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rt = runtime.get()
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")

        def reply(status: str, body: str, headers: list[tuple[str, str]] | None = None) -> list[bytes]:
            data = body.encode()
            start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))] + (headers or []))
            return [data]

        rt.control.record_imds(method, path)
        if path == "/latest/api/token":
            if method != "PUT":
                return reply("405 Method Not Allowed", "")
            try:
                ttl = int(environ.get(TTL_HEADER, ""))
            except ValueError:
                return reply("400 Bad Request", "missing or invalid X-aws-ec2-metadata-token-ttl-seconds")
            if not 1 <= ttl <= 21600:
                return reply("400 Bad Request", "token TTL must be between 1 and 21600")
            token = secrets.token_urlsafe(32)
            with self._lock:
                self._tokens[token] = time.time() + ttl
            return reply("200 OK", token, [("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))])
        token = environ.get(TOKEN_HEADER)
        if token is not None and not self._valid_token(token):
            return reply("401 Unauthorized", "")
        if token is None and rt.config.imds_require_v2:
            return reply("401 Unauthorized", "")
        if method not in ("GET", "HEAD"):
            return reply("405 Method Not Allowed", "")
        if not path.startswith("/latest/"):
            return reply("404 Not Found", "")
        key = path[len("/latest/") :]
        docs = self._documents()
        if key.rstrip("/") in docs:
            # Like EC2, a leaf answers with or without a trailing slash.
            return reply("200 OK", docs[key.rstrip("/")])
        listing = self._listing(key.rstrip("/"))
        if listing is not None:
            return reply("200 OK", listing)
        return reply("404 Not Found", "")
