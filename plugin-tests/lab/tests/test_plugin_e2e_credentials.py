"""End to end: every way our plugin gets AWS credentials and reaches EC2,
each proven by a full `packer build` (Debian's packer 1.6.6) in the EC2 lab.

The proof is which credentials signed the build's EC2 calls: the lab records
the access key id of every SigV4 signature, and what STS (moto's AssumeRole)
and the lab's fake Vault handed out. Each build must also register its AMI,
leave the lab's leak report clean, and never show a secret (secret keys,
session tokens, the MFA code, the Vault token, what Vault handed out) in
packer's output or its PACKER_LOG=1 log, which includes everything the plugin
writes to stderr; the plugin runs at debug level there (see
log_plugin_at_debug_level), so the SDK's debug lines are checked too.

Run by `cargo test --test e2e_lab` (PLUGIN_BIN is our plugin binary).
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from baseline_support import Lab, PackerResult, labctl, run_packer, write_json_template
from plugin_e2e_support import (  # noqa: F401  (fixtures are used by name)
    PLUGIN_NAME,
    PLUGIN_TYPE,
    assert_clean,
    assert_our_plugin_built,
    check_ami,
    json_builder,
    lab,
    lab_faults,
    says,
    source_ami,
    workdir,
)

from ec2lab.config import LAB_INSTANCE_ROLE, LAB_ROLE_ACCESS_KEY, LAB_ROLE_SECRET_KEY, LAB_ROLE_TOKEN
from ec2lab.server import encode_authorization_message

#: The EC2 calls every build from a source AMI makes; each must carry the expected key.
BUILD_ACTIONS = ("DescribeImages", "CreateVolume", "AttachVolume", "DetachVolume", "CreateSnapshot", "RegisterImage", "DeleteVolume")
#: Environment through which the SDK would find credentials on its own; removed
#: wherever a scenario must prove that only its own source was used.
AMBIENT_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def lab_role_arn(lab: Lab, name: str) -> str:
    """A role in the lab's own account, so the assumed session sees the lab's instance and AMIs."""
    return f"arn:aws:iam::{lab.env['LAB_ACCOUNT_ID']}:role/{name}"


def fresh_key(prefix: str) -> str:
    """An access key id of AWS's shape that no other scenario uses."""
    return (prefix + secrets.token_hex(10).upper())[:20]


def env_without_ambient_credentials(lab: Lab, **extra: str) -> dict[str, str]:
    env = lab.process_env(**extra)
    for name in AMBIENT_CREDENTIALS:
        env.pop(name, None)
    return env


def log_plugin_at_debug_level(workdir: Path) -> None:
    """Packer 1.6.6 clears PACKER_LOG for its plugins, so ours logs only its own
    crate at debug level; a wrapper sets it, so the secrets checks also cover
    every debug line of the dependencies (the SDK's included)."""
    real = workdir / "plugin.real"
    (workdir / PLUGIN_NAME).rename(real)
    wrapper = workdir / PLUGIN_NAME
    wrapper.write_text(f'#!/bin/sh\nPACKER_LOG=1 exec {real} "$@"\n')
    wrapper.chmod(0o755)


def build(lab: Lab, workdir: Path, builder_config: dict, env: dict[str, str]) -> tuple[PackerResult, list[dict]]:
    """Runs the build (our plugin logging at debug level); returns the result
    and the lab's call log of the build only."""
    log_plugin_at_debug_level(workdir)
    write_json_template(workdir / "creds.json", builder_config, [{"type": "shell", "inline": ["echo creds > /etc/e2e-creds.txt"]}])
    started = time.time()
    result = run_packer(workdir / "creds.json", workdir, env, fake_sys_block=False)
    ended = time.time()
    return result, [c for c in lab.calls() if started <= c["time"] <= ended]


def ec2_signers(calls: list[dict]) -> dict[str, set[str]]:
    """EC2 action -> the access key ids that signed its calls."""
    signers: dict[str, set[str]] = {}
    for call in calls:
        if call["service"] == "ec2":
            signers.setdefault(call["action"], set()).add(call["access_key"])
    return signers


def assert_ec2_signed_only_by(calls: list[dict], access_key: str, result: PackerResult) -> None:
    """Every EC2 call of the build, the whole build's worth of them, carried `access_key`."""
    signers = ec2_signers(calls)
    missing = [a for a in BUILD_ACTIONS if a not in signers]
    assert not missing, f"the build made no {missing} calls: {sorted(signers)}\n{result.failure_report()}"
    wrong = {action: keys for action, keys in signers.items() if keys != {access_key}}
    assert not wrong, f"EC2 calls not (only) signed with {access_key}: {wrong}"


def sts_calls(calls: list[dict], action: str) -> list[dict]:
    return [c for c in calls if c["service"] == "sts" and c["action"] == action]


def assert_caller_identity_checked_with(calls: list[dict], access_key: str) -> None:
    """The credentials were validated up front (skip_credential_validation unset), with the build's key."""
    identity = sts_calls(calls, "GetCallerIdentity")
    assert identity and {c["access_key"] for c in identity} == {access_key}, identity


def assert_never_shown(result: PackerResult, **secret_values: str) -> None:
    """None of the secrets appears in packer's output or its debug log (plugin stderr included)."""
    log = result.log_path.read_text(errors="replace")
    assert f"{PLUGIN_NAME} plugin: DEBUG " in log, "the plugin did not log at debug level"
    for what, value in secret_values.items():
        assert value, f"{what} is empty: the test lost track of it"
        # Standalone only for short digit strings (an MFA code): longer numbers
        # (timestamps, sizes) may contain any 6 digits.
        pattern = re.compile(rf"(?<!\d){re.escape(value)}(?!\d)" if value.isdigit() else re.escape(value))
        for name, text in (("stdout", result.stdout), ("PACKER_LOG", log)):
            found = pattern.search(text)
            assert not found, f"{what} shown in {name}: …{text[max(0, found.start() - 200):found.end() + 50]}…"


def check_built(lab: Lab, result: PackerResult, ami_name: str, source_ami: str) -> str:
    ami_id = assert_our_plugin_built(result)
    check_ami(lab, ami_id, ami_name, source_ami)
    assert_clean(lab, result)
    return ami_id


def vault_requests(lab: Lab, since: float) -> list[dict]:
    with urllib.request.urlopen(f"{lab.env['LAB_EC2_ENDPOINT']}/_lab/vault", timeout=30) as resp:
        return [r for r in json.load(resp) if r["time"] >= since]


def write_credentials_file(path: Path, profiles: dict[str, tuple[str, str]]) -> Path:
    path.write_text("".join(
        f"[{name}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n" for name, (key, secret) in profiles.items()))
    return path


# ----- scenarios ------------------------------------------------------------


def test_profile_from_a_shared_credentials_file_signs_the_build(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-profile-{uuid.uuid4().hex[:12]}"
    key, secret = fresh_key("AKIAPROFILE"), "profile-secret-" + secrets.token_hex(16)
    credentials = write_credentials_file(workdir / "credentials", {
        # The default profile must not be what is used when `profile` names another.
        "default": (fresh_key("AKIADEFAULT"), "default-secret-" + secrets.token_hex(16)),
        "e2e-build": (key, secret),
    })
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, profile="e2e-build", shared_credentials_file=str(credentials))

    result, calls = build(lab, workdir, config, env_without_ambient_credentials(lab))

    check_built(lab, result, ami_name, source_ami)
    assert_ec2_signed_only_by(calls, key, result)
    assert_caller_identity_checked_with(calls, key)
    assert_never_shown(result, secret_key=secret)


def test_assume_role_passes_every_field_and_the_build_signs_with_the_session(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-assume-{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex[:8]
    role = {
        "role_arn": lab_role_arn(lab, "e2e-build"),
        "external_id": f"ext-{token}-secret",
        "session_name": f"e2e-session-{token}",
        "duration_seconds": 1800,
        "policy": json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}),
        "policy_arns": ["arn:aws:iam::aws:policy/AmazonEC2FullAccess", "arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "tags": {"Team": "images", "Token": token},
        "transitive_tag_keys": ["Team"],
    }
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, assume_role=role)

    # The base credentials are the lab's environment keys (the default chain).
    result, calls = build(lab, workdir, config, lab.process_env())

    check_built(lab, result, ami_name, source_ami)
    assumed = sts_calls(calls, "AssumeRole")
    assert len(assumed) == 1, assumed
    call = assumed[0]
    assert call["access_key"] == lab.env["AWS_ACCESS_KEY_ID"], call
    params = {k: v[0] for k, v in call["params"].items()}
    tags = {params[f"Tags.member.{n}.Key"]: params[f"Tags.member.{n}.Value"] for n in (1, 2)}
    assert tags == role["tags"], params
    assert {
        "RoleArn": params["RoleArn"],
        "ExternalId": params["ExternalId"],
        "RoleSessionName": params["RoleSessionName"],
        "DurationSeconds": params["DurationSeconds"],
        "Policy": params["Policy"],
        "PolicyArns": [params["PolicyArns.member.1.arn"], params["PolicyArns.member.2.arn"]],
        "TransitiveTagKeys": [v for k, v in params.items() if k.startswith("TransitiveTagKeys.member.")],
    } == {
        "RoleArn": role["role_arn"],
        "ExternalId": role["external_id"],
        "RoleSessionName": role["session_name"],
        "DurationSeconds": "1800",
        "Policy": role["policy"],
        "PolicyArns": role["policy_arns"],
        "TransitiveTagKeys": ["Team"],
    }
    assert "SerialNumber" not in params and "TokenCode" not in params, params
    session_key = call["issued_access_key"]
    assert session_key.startswith("ASIA"), call
    assert_ec2_signed_only_by(calls, session_key, result)
    assert_caller_identity_checked_with(calls, session_key)
    assert_never_shown(result, session_secret=call["issued_secret_key"], session_token=call["issued_session_token"],
                       base_secret=lab.env["AWS_SECRET_ACCESS_KEY"], external_id=role["external_id"])


def test_mfa_code_assumes_the_profile_role_from_its_source_profile(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-mfa-{uuid.uuid4().hex[:12]}"
    source_key, source_secret = fresh_key("AKIASOURCE"), "source-secret-" + secrets.token_hex(16)
    credentials = write_credentials_file(workdir / "credentials", {"e2e-source": (source_key, source_secret)})
    role_arn = lab_role_arn(lab, "e2e-mfa")
    serial = f"arn:aws:iam::{lab.env['LAB_ACCOUNT_ID']}:mfa/e2e-user"
    session_name = f"e2e-mfa-{uuid.uuid4().hex[:8]}"
    (workdir / "config").write_text(
        "[profile e2e-mfa]\n"
        f"role_arn = {role_arn}\n"
        f"mfa_serial = {serial}\n"
        "source_profile = e2e-source\n"
        f"role_session_name = {session_name}\n"
        "duration_seconds = 1200\n"
    )
    mfa_code = f"{secrets.randbelow(900000) + 100000}"
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, profile="e2e-mfa", mfa_code=mfa_code, shared_credentials_file=str(credentials))

    result, calls = build(lab, workdir, config, env_without_ambient_credentials(lab, AWS_CONFIG_FILE=str(workdir / "config")))

    check_built(lab, result, ami_name, source_ami)
    assumed = sts_calls(calls, "AssumeRole")
    assert len(assumed) == 1, assumed
    call = assumed[0]
    assert call["access_key"] == source_key, call
    params = {k: v[0] for k, v in call["params"].items()}
    assert params == {
        "RoleArn": role_arn,
        "RoleSessionName": session_name,
        "DurationSeconds": "1200",
        "SerialNumber": serial,
        "TokenCode": mfa_code,
    }, params
    session_key = call["issued_access_key"]
    assert session_key.startswith("ASIA"), call
    assert_ec2_signed_only_by(calls, session_key, result)
    assert_caller_identity_checked_with(calls, session_key)
    assert_never_shown(result, mfa_code=mfa_code, source_secret=source_secret,
                       session_secret=call["issued_secret_key"], session_token=call["issued_session_token"])


def test_vault_creds_of_the_default_engine_sign_the_build(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-vault-{uuid.uuid4().hex[:12]}"
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, vault_aws_engine={"name": "e2e-iam-user"})
    vault_token = lab.env["LAB_VAULT_TOKEN"]
    env = env_without_ambient_credentials(lab, VAULT_ADDR=lab.env["LAB_VAULT_ADDR"], VAULT_TOKEN=vault_token)
    started = time.time()

    result, calls = build(lab, workdir, config, env)

    check_built(lab, result, ami_name, source_ami)
    asked = vault_requests(lab, started)
    assert [(r["method"], r["path"], r["token_ok"], r["status"]) for r in asked] == [("GET", "/v1/aws/creds/e2e-iam-user", True, 200)], asked
    issued = asked[0]
    assert issued["headers"].get("X-Vault-Request") == "true", issued["headers"]
    assert_ec2_signed_only_by(calls, issued["access_key"], result)
    assert_caller_identity_checked_with(calls, issued["access_key"])
    assert_never_shown(result, vault_token=vault_token, vault_secret=issued["secret_key"])


def test_vault_sts_with_role_arn_ttl_and_engine_name_signs_the_build(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-vault-sts-{uuid.uuid4().hex[:12]}"
    role_arn = lab_role_arn(lab, "e2e-vault")
    engine = {"name": "e2e-assumed", "engine_name": "aws-e2e", "role_arn": role_arn, "ttl": "900s"}
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, vault_aws_engine=engine)
    vault_token = lab.env["LAB_VAULT_TOKEN"]
    env = env_without_ambient_credentials(lab, VAULT_ADDR=lab.env["LAB_VAULT_ADDR"], VAULT_TOKEN=vault_token)
    started = time.time()

    result, calls = build(lab, workdir, config, env)

    check_built(lab, result, ami_name, source_ami)
    asked = vault_requests(lab, started)
    assert [(r["path"], r["token_ok"], r["status"], r["body"]) for r in asked] == [
        ("/v1/aws-e2e/sts/e2e-assumed", True, 200, {"role_arn": role_arn, "ttl": "900s"})], asked
    assert asked[0]["method"] in ("POST", "PUT"), asked
    issued = asked[0]
    assert issued["access_key"].startswith("ASIA") and issued["security_token"], issued
    assert_ec2_signed_only_by(calls, issued["access_key"], result)
    assert_caller_identity_checked_with(calls, issued["access_key"])
    assert_never_shown(result, vault_token=vault_token, vault_secret=issued["secret_key"], vault_session_token=issued["security_token"])


def test_vault_over_https_is_trusted_through_vault_cacert(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-vault-tls-{uuid.uuid4().hex[:12]}"
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, vault_aws_engine={"name": "e2e-tls"})
    vault_token = lab.env["LAB_VAULT_TOKEN"]
    env = env_without_ambient_credentials(lab, VAULT_ADDR=lab.env["LAB_VAULT_HTTPS_ADDR"], VAULT_TOKEN=vault_token,
                                          VAULT_CACERT=lab.env["LAB_TLS_CERT"])
    started = time.time()

    result, calls = build(lab, workdir, config, env)

    check_built(lab, result, ami_name, source_ami)
    asked = vault_requests(lab, started)
    assert [(r["path"], r["token_ok"], r["status"]) for r in asked] == [("/v1/aws/creds/e2e-tls", True, 200)], asked
    assert_ec2_signed_only_by(calls, asked[0]["access_key"], result)
    assert_never_shown(result, vault_token=vault_token, vault_secret=asked[0]["secret_key"])


def test_vault_over_https_with_an_untrusted_certificate_fails_naming_vault_and_creates_nothing(
        lab: Lab, source_ami: str, workdir: Path):
    address = lab.env["LAB_VAULT_HTTPS_ADDR"]
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=f"e2e-vault-refused-{uuid.uuid4().hex[:12]}", vault_aws_engine={"name": "e2e-tls"})
    vault_token = lab.env["LAB_VAULT_TOKEN"]
    env = env_without_ambient_credentials(lab, VAULT_ADDR=address, VAULT_TOKEN=vault_token)
    started = time.time()

    result, calls = build(lab, workdir, config, env)

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    errors = "\n".join(line for line in result.stdout.splitlines() if ",error," in line)
    assert "aws/creds/e2e-tls" in errors and address in errors, result.failure_report()
    assert "certificate" in errors.lower() and "set VAULT_CACERT" in errors, errors
    # The handshake failed: Vault got no request, EC2 none either.
    assert vault_requests(lab, started) == []
    assert not [c for c in calls if c["service"] == "ec2"], calls
    assert_clean(lab, result)
    assert_never_shown(result, vault_token=vault_token)


def test_static_keys_and_token_in_the_template_sign_the_build(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-static-{uuid.uuid4().hex[:12]}"
    key, secret, token = fresh_key("ASIASTATIC"), "static-secret-" + secrets.token_hex(16), "static-token-" + secrets.token_hex(24)
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, access_key=key, secret_key=secret, token=token)

    # The lab's environment keys stay set: the template's must win over them.
    result, calls = build(lab, workdir, config, lab.process_env())

    check_built(lab, result, ami_name, source_ami)
    assert_ec2_signed_only_by(calls, key, result)
    assert_caller_identity_checked_with(calls, key)
    assert_never_shown(result, secret_key=secret, session_token=token)


def test_insecure_skip_tls_verify_reaches_a_self_signed_https_endpoint(lab: Lab, source_ami: str, workdir: Path):
    """Also the plain environment-credentials path: nothing in the template
    names credentials, so the lab's AWS_ACCESS_KEY_ID signs."""
    ami_name = f"e2e-tls-{uuid.uuid4().hex[:12]}"
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, custom_endpoint_ec2=lab.env["LAB_EC2_HTTPS_ENDPOINT"], insecure_skip_tls_verify=True)

    result, calls = build(lab, workdir, config, lab.process_env())

    check_built(lab, result, ami_name, source_ami)
    ec2 = [c for c in calls if c["service"] == "ec2"]
    assert ec2 and all(c["tls"] for c in ec2), [(c["action"], c["tls"]) for c in ec2]
    assert_ec2_signed_only_by(calls, lab.env["AWS_ACCESS_KEY_ID"], result)
    assert_never_shown(result, secret_key=lab.env["AWS_SECRET_ACCESS_KEY"])


def test_self_signed_https_endpoint_without_skip_fails_naming_it_and_creates_nothing(lab: Lab, source_ami: str, workdir: Path):
    endpoint = lab.env["LAB_EC2_HTTPS_ENDPOINT"]
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=f"e2e-tls-refused-{uuid.uuid4().hex[:12]}", custom_endpoint_ec2=endpoint)

    result, calls = build(lab, workdir, config, lab.process_env())

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    errors = "\n".join(line for line in result.stdout.splitlines() if ",error," in line)
    assert endpoint.split("//", 1)[1] in errors, result.failure_report()
    assert "certificate" in errors.lower(), errors
    # The TLS handshake failed, so no EC2 request ever reached the lab.
    assert not [c for c in calls if c["service"] == "ec2"], calls
    assert not any("Creating the root volume" in s for s in says(result))
    assert_clean(lab, result)
    assert_never_shown(result, secret_key=lab.env["AWS_SECRET_ACCESS_KEY"])


def imds_paths(calls: list[dict]) -> list[str]:
    """The paths the build asked the lab's IMDS for."""
    return [c["action"].split(" ", 1)[1] for c in calls if c["service"] == "imds"]


def test_instance_role_from_imds_signs_the_build(lab: Lab, source_ami: str, workdir: Path):
    """No credentials anywhere but the instance: the role's temporary
    credentials from IMDS sign every call."""
    ami_name = f"e2e-role-{uuid.uuid4().hex[:12]}"

    result, calls = build(lab, workdir, json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name), env_without_ambient_credentials(lab))

    check_built(lab, result, ami_name, source_ami)
    assert f"/latest/meta-data/iam/security-credentials/{LAB_INSTANCE_ROLE}" in imds_paths(calls), imds_paths(calls)
    assert_ec2_signed_only_by(calls, LAB_ROLE_ACCESS_KEY, result)
    assert_caller_identity_checked_with(calls, LAB_ROLE_ACCESS_KEY)
    assert_never_shown(result, secret_key=LAB_ROLE_SECRET_KEY, session_token=LAB_ROLE_TOKEN)


def test_skip_metadata_api_check_never_asks_imds_for_credentials(lab: Lab, source_ami: str, workdir: Path):
    """With only the instance role available, skip_metadata_api_check leaves
    no credentials: the build stops before touching EC2 and says why."""
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=f"e2e-no-role-{uuid.uuid4().hex[:12]}", skip_metadata_api_check=True)

    result, calls = build(lab, workdir, config, env_without_ambient_credentials(lab))

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    assert "could not load AWS credentials" in result.stdout and "without the instance role" in result.stdout, \
        result.failure_report()
    assert not [p for p in imds_paths(calls) if "/iam/" in p], imds_paths(calls)
    assert not [c for c in calls if c["service"] in ("ec2", "sts")], calls
    assert_clean(lab, result)


def test_skip_credential_validation_builds_without_asking_sts(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-no-sts-{uuid.uuid4().hex[:12]}"
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=ami_name, skip_credential_validation=True)

    result, calls = build(lab, workdir, config, lab.process_env())

    check_built(lab, result, ami_name, source_ami)
    assert sts_calls(calls, "GetCallerIdentity") == [], calls
    assert_ec2_signed_only_by(calls, lab.env["AWS_ACCESS_KEY_ID"], result)


@pytest.mark.parametrize("decode", [True, False], ids=["decoded", "not-asked"])
def test_an_encoded_authorization_failure_is_decoded_when_asked(lab: Lab, source_ami: str, workdir: Path, decode: bool):
    """CreateVolume refused with an encoded reason (as EC2 does for IAM
    denials): decode_authorization_messages has STS decode it into the
    error; without it the error says how to see it."""
    reason = {"allowed": False, "explicitDeny": True, "context": {"action": "ec2:CreateVolume", "principal": {"id": "e2e"}}}
    encoded = encode_authorization_message(reason)
    config = json_builder(lab, workdir, source_ami=source_ami, ami_name=f"e2e-denied-{uuid.uuid4().hex[:12]}", decode_authorization_messages=decode)
    with lab_faults(lab):
        labctl("fault", "--name", lab.name, "fail", "CreateVolume", "--code", "UnauthorizedOperation", "--status", "403",
               "--times", "0", "--message",
               f"You are not authorized to perform this operation. Encoded authorization failure message: {encoded}")
        result, calls = build(lab, workdir, config, lab.process_env())

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    errors = "\n".join(line for line in result.stdout.splitlines() if ",error," in line)
    assert "CreateVolume" in errors and "UnauthorizedOperation" in errors, result.failure_report()
    decodes = sts_calls(calls, "DecodeAuthorizationMessage")
    if decode:
        assert [c["params"]["EncodedMessage"] for c in decodes] == [[encoded]], decodes
        assert '"action": "ec2:CreateVolume"' in errors and '"explicitDeny": true' in errors, errors
    else:
        assert decodes == [], decodes
        assert "decode_authorization_messages = true" in errors, errors
    assert_clean(lab, result)
