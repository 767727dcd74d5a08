"""The lab's credential-related faces: the access key id of every signed call
in the call log, the credentials STS handed out, EC2 over HTTPS with a
self-signed certificate, and the fake Vault's AWS secrets engine."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from conftest import Lab, labctl, stop_and_check

from ec2lab.config import LAB_ACCESS_KEY, LAB_ACCOUNT, LAB_INSTANCE_ROLE, LAB_ROLE_ACCESS_KEY
from ec2lab.server import encode_authorization_message


def ec2_as(lab: Lab, key: str, secret: str, token: str | None = None, endpoint: str | None = None, verify: Any = None,
           config: botocore.config.Config | None = None) -> Any:
    return boto3.client(
        "ec2",
        region_name=lab.info["region"],
        endpoint_url=endpoint or lab.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        verify=verify,
        config=config,
    )


def vault(lab: Lab, method: str, path: str, token: str | None, body: Any = None, https: bool = False) -> tuple[int, dict[str, Any]]:
    headers = {"X-Vault-Request": "true"}
    if token is not None:
        headers["X-Vault-Token"] = token
    data = json.dumps(body).encode() if body is not None else None
    address = f"https://127.0.0.1:{lab.info['vault_https_port']}" if https else f"http://127.0.0.1:{lab.info['vault_port']}"
    req = urllib.request.Request(f"{address}{path}", data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=lab.info["tls_cert"]) if https else None
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_call_log_records_the_access_key_of_each_signature(lab: Lab):
    ec2_as(lab, "AKIAFIRSTFIRSTFIRST1", "one").describe_regions()
    ec2_as(lab, "ASIASECONDSECONDSEC2", "two", token="tok").describe_availability_zones()

    calls = lab.calls()
    assert [(c["action"], c["access_key"], c["tls"]) for c in calls] == [
        ("DescribeRegions", "AKIAFIRSTFIRSTFIRST1", False),
        ("DescribeAvailabilityZones", "ASIASECONDSECONDSEC2", False),
    ]


def test_call_log_records_what_assume_role_handed_out(lab: Lab):
    sts = lab.client("sts")
    out = sts.assume_role(RoleArn=f"arn:aws:iam::{LAB_ACCOUNT}:role/lab-test", RoleSessionName="lab-session",
                          ExternalId="ext-id", SerialNumber=f"arn:aws:iam::{LAB_ACCOUNT}:mfa/me", TokenCode="123456")["Credentials"]
    session = ec2_as(lab, out["AccessKeyId"], out["SecretAccessKey"], out["SessionToken"])
    session.describe_instances()

    assume, describe = lab.calls()
    assert assume["service"] == "sts" and assume["action"] == "AssumeRole"
    assert assume["access_key"] == LAB_ACCESS_KEY
    assert (assume["issued_access_key"], assume["issued_secret_key"], assume["issued_session_token"]) == (
        out["AccessKeyId"], out["SecretAccessKey"], out["SessionToken"])
    assert assume["params"]["SerialNumber"] == [f"arn:aws:iam::{LAB_ACCOUNT}:mfa/me"]
    assert assume["params"]["TokenCode"] == ["123456"]
    assert describe["action"] == "DescribeInstances" and describe["access_key"] == out["AccessKeyId"]
    assert describe["issued_access_key"] == ""
    # moto maps the session to the lab's account, so it sees the lab's host instance.
    ids = [i["InstanceId"] for r in session.describe_instances()["Reservations"] for i in r["Instances"]]
    assert lab.instance_id in ids


def test_sts_decodes_the_labs_encoded_authorization_messages(lab: Lab):
    sts = lab.client("sts")
    reason = {"allowed": False, "context": {"action": "ec2:CreateVolume"}}
    decoded = sts.decode_authorization_message(EncodedMessage=encode_authorization_message(reason))["DecodedMessage"]
    assert json.loads(decoded) == reason
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        sts.decode_authorization_message(EncodedMessage="not base64 json!")
    assert refused.value.response["Error"]["Code"] == "InvalidAuthorizationMessageException"


def test_imds_hands_out_the_instance_roles_credentials(lab: Lab):
    base = f"http://127.0.0.1:{lab.info['imds_port']}"
    with urllib.request.urlopen(f"{base}/latest/meta-data/iam/security-credentials/", timeout=10) as resp:
        assert resp.read().decode().split() == [LAB_INSTANCE_ROLE]
    with urllib.request.urlopen(f"{base}/latest/meta-data/iam/security-credentials/{LAB_INSTANCE_ROLE}", timeout=10) as resp:
        credentials = json.load(resp)
    assert credentials["Code"] == "Success" and credentials["AccessKeyId"] == LAB_ROLE_ACCESS_KEY
    assert credentials["SecretAccessKey"] and credentials["Token"] and credentials["Expiration"].endswith("Z")


def test_https_port_serves_ec2_with_the_lab_certificate(lab: Lab):
    https = f"https://127.0.0.1:{lab.info['https_port']}"
    ec2 = ec2_as(lab, LAB_ACCESS_KEY, "secret", endpoint=https, verify=lab.info["tls_cert"])

    ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]

    assert ids == [lab.instance_id]
    assert [(c["action"], c["tls"]) for c in lab.calls()] == [("DescribeInstances", True)]


def test_a_stalled_https_client_does_not_block_others(lab: Lab):
    https = f"https://127.0.0.1:{lab.info['https_port']}"
    with socket.create_connection(("127.0.0.1", lab.info["https_port"]), timeout=10):
        # Connected, never says hello: another client is served all the same.
        patient = botocore.config.Config(connect_timeout=10, read_timeout=10, retries={"total_max_attempts": 1})
        ec2 = ec2_as(lab, LAB_ACCESS_KEY, "secret", endpoint=https, verify=lab.info["tls_cert"], config=patient)
        assert ec2.describe_regions()["Regions"]


def test_https_port_certificate_is_not_trusted_by_default(lab: Lab):
    https = f"https://127.0.0.1:{lab.info['https_port']}"
    ec2 = ec2_as(lab, LAB_ACCESS_KEY, "secret", endpoint=https)
    with pytest.raises(botocore.exceptions.SSLError, match="certificate verify failed"):
        ec2.describe_regions()
    assert lab.calls() == []
    # The certificate is self-signed for 127.0.0.1: its own file is the only trust it needs.
    context = ssl.create_default_context(cafile=lab.info["tls_cert"])
    with (
        socket.create_connection(("127.0.0.1", lab.info["https_port"]), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        subject = dict(x[0] for x in tls.getpeercert()["subject"])
    assert subject["commonName"].startswith("ec2lab")


def test_vault_creds_answers_like_vaults_aws_engine_with_keys_ec2_accepts(lab: Lab):
    status, answer = vault(lab, "GET", "/v1/aws/creds/builder", lab.info["vault_token"])

    assert status == 200, answer
    data = answer["data"]
    assert answer["lease_id"].startswith("aws/creds/builder/") and answer["lease_duration"] > 0
    assert data["access_key"].startswith("AKIA") and len(data["access_key"]) == 20
    assert data["secret_key"] and data["security_token"] is None
    ec2_as(lab, data["access_key"], data["secret_key"]).describe_regions()
    assert [c["access_key"] for c in lab.calls()] == [data["access_key"]]
    recorded = lab.control("GET", "vault")
    assert [(r["method"], r["path"], r["token_ok"], r["status"], r["access_key"], r["secret_key"]) for r in recorded] == [
        ("GET", "/v1/aws/creds/builder", True, 200, data["access_key"], data["secret_key"])]
    assert recorded[0]["headers"]["X-Vault-Request"] == "true"
    assert lab.info["vault_token"] not in json.dumps(recorded), "the Vault token must not be recorded"


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_vault_sts_write_takes_role_arn_and_ttl_and_returns_a_session(lab: Lab, method: str):
    role_arn = f"arn:aws:iam::{LAB_ACCOUNT}:role/deploy"

    status, answer = vault(lab, method, "/v1/aws-lab/sts/deployer", lab.info["vault_token"], {"role_arn": role_arn, "ttl": "900s"})

    assert status == 200, answer
    data = answer["data"]
    assert answer["lease_id"].startswith("aws-lab/sts/deployer/") and answer["lease_duration"] == 900
    assert data["access_key"].startswith("ASIA") and data["secret_key"] and data["security_token"]
    assert data["arn"].endswith(":assumed-role/deploy/vault-deployer")
    recorded = lab.control("GET", "vault")
    assert [(r["method"], r["path"], r["body"], r["security_token"]) for r in recorded] == [
        (method, "/v1/aws-lab/sts/deployer", {"role_arn": role_arn, "ttl": "900s"}, data["security_token"])]


def test_vault_https_port_serves_the_same_vault_with_the_lab_certificate(lab: Lab):
    status, answer = vault(lab, "GET", "/v1/aws/creds/builder", lab.info["vault_token"], https=True)

    assert status == 200 and answer["data"]["access_key"].startswith("AKIAVAULT"), answer
    assert [r["path"] for r in lab.control("GET", "vault")] == ["/v1/aws/creds/builder"]
    untrusting = ssl.create_default_context()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://127.0.0.1:{lab.info['vault_https_port']}/v1/sys/health", timeout=10, context=untrusting)


@pytest.mark.parametrize("token", [None, "hvs.wrong", ""])
def test_vault_refuses_a_missing_or_wrong_token(lab: Lab, token: str | None):
    status, answer = vault(lab, "GET", "/v1/aws/creds/builder", token)

    assert (status, answer) == (403, {"errors": ["permission denied"]})
    recorded = lab.control("GET", "vault")
    assert [(r["token_ok"], r["token_sent"], r["status"], r["access_key"]) for r in recorded] == [(False, token is not None, 403, "")]


def test_vault_answers_unknown_routes_and_methods_as_vault_does(lab: Lab):
    token = lab.info["vault_token"]
    assert vault(lab, "GET", "/v1/aws/roles/builder", token)[0] == 404
    assert vault(lab, "POST", "/v1/aws/creds/builder", token, {})[0] == 405
    status, health = vault(lab, "GET", "/v1/sys/health", None)  # unauthenticated, as in Vault
    assert status == 200 and health["sealed"] is False and health["initialized"] is True, health
    lab.control("POST", "reset", {})
    assert lab.control("GET", "vault") == []


def test_labctl_env_exports_the_https_endpoint_certificate_and_vault(lab: Lab):
    env = dict(line.removeprefix("export ").split("=", 1) for line in labctl("env", name=lab.name).stdout.splitlines())

    assert env["LAB_EC2_HTTPS_ENDPOINT"] == f"https://127.0.0.1:{lab.info['https_port']}"
    assert env["LAB_TLS_CERT"] == lab.info["tls_cert"] and env["LAB_TLS_CERT"].startswith(str(lab.state_dir))
    assert env["LAB_VAULT_ADDR"] == f"http://127.0.0.1:{lab.info['vault_port']}"
    assert env["LAB_VAULT_TOKEN"] == lab.info["vault_token"]
    assert env["LAB_VAULT_HTTPS_ADDR"] == f"https://127.0.0.1:{lab.info['vault_https_port']}"
    ports = ("ec2_port", "imds_port", "https_port", "vault_port", "vault_https_port")
    assert len({lab.info[p] for p in ports}) == len(ports), lab.info


def test_stop_closes_the_https_and_vault_ports(start_lab):
    own = start_lab()
    ports = (own.info["https_port"], own.info["vault_port"], own.info["vault_https_port"])
    for port in ports:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    stop_and_check(own)

    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
