"""Instance metadata (v1/v2, on both ports), fault injection and the call log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import InstanceMetadataRegionFetcher
from conftest import Lab


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def imds_url(lab: Lab) -> str:
    return f"http://127.0.0.1:{lab.info['imds_port']}"


@pytest.mark.parametrize("port", ["imds", "ec2"])
def test_imds_v2_token_flow_and_documents(lab: Lab, port: str) -> None:
    base = imds_url(lab) if port == "imds" else lab.endpoint
    status, token = http(f"{base}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200 and token
    hdr = {"X-aws-ec2-metadata-token": token}
    assert http(f"{base}/latest/meta-data/instance-id", headers=hdr) == (200, lab.instance_id)
    assert http(f"{base}/latest/meta-data/placement/availability-zone", headers=hdr) == (200, lab.az)
    assert http(f"{base}/latest/meta-data/placement/region", headers=hdr) == (200, lab.info["region"])
    status, doc = http(f"{base}/latest/dynamic/instance-identity/document", headers=hdr)
    ident = json.loads(doc)
    assert status == 200
    assert ident["instanceId"] == lab.instance_id and ident["region"] == lab.info["region"]
    assert ident["availabilityZone"] == lab.az and ident["accountId"] == lab.info["account_id"]
    assert ident["imageId"] == lab.info["host_image_id"] and ident["architecture"] == "x86_64"
    assert ident["instanceType"] == "t3.micro" and ident["privateIp"]
    # The identity document matches what EC2 says about the instance.
    inst = lab.client().describe_instances(InstanceIds=[lab.instance_id])["Reservations"][0]["Instances"][0]
    assert inst["Placement"]["AvailabilityZone"] == ident["availabilityZone"]
    assert inst["PrivateIpAddress"] == ident["privateIp"] and inst["ImageId"] == ident["imageId"]
    assert http(f"{base}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": "bogus"})[0] == 401
    assert "instance-id" in http(f"{base}/latest/meta-data/", headers=hdr)[1].split("\n")
    assert http(f"{base}/latest/api/token", "PUT")[0] == 400  # TTL header is required


def test_imds_v1_allowed_then_required_v2(lab: Lab) -> None:
    assert http(f"{imds_url(lab)}/latest/meta-data/instance-id") == (200, lab.instance_id)
    lab.control("POST", "imds", {"require_v2": True})
    try:
        assert http(f"{imds_url(lab)}/latest/meta-data/instance-id")[0] == 401
        assert http(f"{lab.endpoint}/latest/meta-data/instance-id")[0] == 401
        _, token = http(f"{imds_url(lab)}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "10"})
        assert http(f"{imds_url(lab)}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}) == (200, lab.instance_id)
    finally:
        lab.control("POST", "imds", {"require_v2": False})


def test_imds_token_expires(lab: Lab) -> None:
    _, token = http(f"{imds_url(lab)}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "1"})
    time.sleep(1.2)
    assert http(f"{imds_url(lab)}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})[0] == 401


def test_imds_unreachable_when_disabled(lab: Lab) -> None:
    lab.control("POST", "imds", {"disabled": True})
    try:
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{imds_url(lab)}/latest/meta-data/instance-id", timeout=2)
        assert http(f"{lab.endpoint}/latest/meta-data/instance-id")[0] == 404
    finally:
        lab.control("POST", "imds", {"disabled": False})
    assert http(f"{imds_url(lab)}/latest/meta-data/instance-id") == (200, lab.instance_id)


def test_sdk_finds_region_through_metadata_endpoint(lab: Lab) -> None:
    fetcher = InstanceMetadataRegionFetcher(timeout=2, num_attempts=1, config={"ec2_metadata_service_endpoint": imds_url(lab) + "/"})
    assert fetcher.retrieve_region() == lab.info["region"]


def test_imds_started_v2_only_and_without_imds(start_lab) -> None:
    strict = start_lab("--imds-v2-only")
    assert http(f"{imds_url(strict)}/latest/meta-data/instance-id")[0] == 401
    off = start_lab("--no-imds")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{imds_url(off)}/latest/meta-data/instance-id", timeout=2)


def client_without_retries(lab: Lab, service: str = "ec2"):
    import boto3

    return boto3.client(
        service,
        region_name=lab.info["region"],
        endpoint_url=lab.endpoint,
        aws_access_key_id="AKIALABLABLABLAB0000",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def test_nth_call_fails_with_given_code_and_status(lab: Lab) -> None:
    ec2 = client_without_retries(lab)
    lab.control(
        "POST",
        "faults",
        {"action": "DescribeRegions", "code": "RequestLimitExceeded", "message": "slow down", "status": 503, "nth": 2, "times": 2},
    )
    ec2.describe_regions()
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            ec2.describe_regions()
        assert exc.value.response["Error"]["Code"] == "RequestLimitExceeded"
        assert exc.value.response["Error"]["Message"] == "slow down"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    ec2.describe_regions()
    calls = lab.calls("DescribeRegions")
    assert [(c["status"], c["error"]) for c in calls] == [
        (200, ""),
        (503, "RequestLimitExceeded"),
        (503, "RequestLimitExceeded"),
        (200, ""),
    ]
    faults = lab.control("GET", "faults")["faults"]
    assert faults[0]["fired"] == 2 and faults[0]["seen"] == 4


def test_fault_on_kms_and_forever(lab: Lab) -> None:
    kms = client_without_retries(lab, "kms")
    lab.control("POST", "faults", {"action": "CreateKey", "code": "KMSInternalException", "status": 500, "times": 0})
    for _ in range(3):
        with pytest.raises(ClientError) as exc:
            kms.create_key()
        assert exc.value.response["Error"]["Code"] == "KMSInternalException"
    lab.control("POST", "reset", {})
    assert kms.create_key()["KeyMetadata"]["KeyId"]


def test_action_delay(lab: Lab) -> None:
    ec2 = lab.client()
    lab.control("POST", "delays", {"action": "DescribeVolumes", "seconds": 1.0})
    start = time.time()
    ec2.describe_volumes()
    assert time.time() - start >= 1.0
    lab.control("POST", "delays", {"action": "DescribeVolumes", "seconds": 0})
    start = time.time()
    ec2.describe_volumes()
    assert time.time() - start < 1.0


def test_call_log_records_actions_params_and_regions(lab: Lab) -> None:
    lab.client(region="eu-west-1").describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["x*"]}])
    call = lab.calls("DescribeImages")[-1]
    assert call["service"] == "ec2" and call["region"] == "eu-west-1" and call["status"] == 200
    assert call["params"]["Owner.1"] == ["self"] and call["params"]["Filter.1.Name"] == ["name"]
    with pytest.raises(ClientError):
        lab.client().describe_volumes(VolumeIds=["vol-0000000000000000f"])
    assert lab.calls("DescribeVolumes")[-1]["error"] == "InvalidVolume.NotFound"
