"""CopyImage (also cross-region and encrypted), KMS keys and DescribeRegions."""

from __future__ import annotations

import filecmp
import uuid

import pytest
from botocore.exceptions import ClientError
from conftest import Lab, labctl, sparse_disk, wait_for


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture
def source_ami(lab: Lab, tmp_path) -> tuple[str, str]:
    disk = sparse_disk(tmp_path / "root.img")
    with open(disk, "r+b") as f:
        f.seek(4096)
        f.write(b"payload that must survive the copy")
    snap = lab.import_snapshot(disk)
    ec2 = lab.client()
    ami = ec2.register_image(
        Name=f"copy-src-{uuid.uuid4().hex[:8]}",
        RootDeviceName="/dev/xvda",
        Architecture="arm64",
        VirtualizationType="hvm",
        EnaSupport=True,
        BootMode="uefi",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap, "VolumeSize": 3, "VolumeType": "gp3"}}],
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "origin", "Value": "lab"}]}],
    )["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig={"Delay": 0.3, "MaxAttempts": 20})
    return ami, snap


def test_copy_image_cross_region_encrypted_with_kms_key(lab: Lab, source_ami: tuple[str, str]) -> None:
    ami, snap = source_ami
    west = lab.client(region="us-west-2")
    kms = lab.client("kms", region="us-west-2")
    key = kms.create_key(Description="lab key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/lab-copy", TargetKeyId=key["KeyId"])
    assert kms.describe_key(KeyId="alias/lab-copy")["KeyMetadata"]["Arn"] == key["Arn"]
    lab.timings(copy_image=1.0)
    copy = west.copy_image(
        SourceRegion=lab.info["region"], SourceImageId=ami, Name="copied", Encrypted=True, KmsKeyId="alias/lab-copy", CopyImageTags=True
    )["ImageId"]
    img = west.describe_images(ImageIds=[copy])["Images"][0]
    assert img["State"] == "pending"
    west.get_waiter("image_available").wait(ImageIds=[copy], WaiterConfig={"Delay": 0.3, "MaxAttempts": 20})
    img = west.describe_images(ImageIds=[copy])["Images"][0]
    assert img["Name"] == "copied" and img["Architecture"] == "arm64" and img["EnaSupport"] is True and img["BootMode"] == "uefi"
    assert {"Key": "origin", "Value": "lab"} in img["Tags"]
    ebs = img["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["SnapshotId"] != snap and ebs["Encrypted"] is True and ebs["KmsKeyId"] == key["Arn"]
    assert ebs["VolumeSize"] == 3 and ebs["VolumeType"] == "gp3"
    new_snap = west.describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"][0]
    assert new_snap["Encrypted"] is True and new_snap["KmsKeyId"] == key["Arn"] and new_snap["State"] == "completed"
    src_file = lab.state_dir / "snapshots" / f"{snap}.img"
    new_file = lab.state_dir / "snapshots" / f"{ebs['SnapshotId']}.img"
    assert new_file.exists() and filecmp.cmp(src_file, new_file, shallow=False)
    # The copy lives in us-west-2 only.
    with pytest.raises(ClientError):
        lab.client().describe_images(ImageIds=[copy])
    # Its snapshot is in use in its own region, the source's in the source region.
    with pytest.raises(ClientError) as exc:
        west.delete_snapshot(SnapshotId=ebs["SnapshotId"])
    assert error_code(exc) == "InvalidSnapshot.InUse"
    west.deregister_image(ImageId=copy)
    west.delete_snapshot(SnapshotId=ebs["SnapshotId"])
    assert not new_file.exists() and src_file.exists()


def test_copy_image_same_region_unencrypted_and_default_key(lab: Lab, source_ami: tuple[str, str]) -> None:
    ami, snap = source_ami
    ec2 = lab.client()
    plain = ec2.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name=f"plain-{uuid.uuid4().hex[:6]}")["ImageId"]
    ebs = ec2.describe_images(ImageIds=[plain])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["Encrypted"] is False and ebs["SnapshotId"] != snap
    default = ec2.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name=f"enc-{uuid.uuid4().hex[:6]}", Encrypted=True)[
        "ImageId"
    ]
    ebs = ec2.describe_images(ImageIds=[default])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]
    kms = lab.client("kms")
    assert ebs["Encrypted"] is True and ebs["KmsKeyId"] == kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]


def test_copy_image_rejects_unknown_key_and_key_without_encrypt(lab: Lab, source_ami: tuple[str, str]) -> None:
    ami, _ = source_ami
    west = lab.client(region="eu-west-1")
    with pytest.raises(ClientError) as exc:
        west.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name="nokey", Encrypted=True, KmsKeyId="alias/does-not-exist")
    assert error_code(exc) == "InvalidParameterValue"
    with pytest.raises(ClientError) as exc:
        west.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name="nokey", KmsKeyId="alias/aws/ebs")
    assert error_code(exc) == "InvalidParameterDependency"
    with pytest.raises(ClientError) as exc:
        west.copy_image(SourceRegion=lab.info["region"], SourceImageId="ami-0123456789abcdef0", Name="missing")
    assert error_code(exc) == "InvalidAMIID.NotFound"


def test_describe_regions_lists_build_and_copy_regions(lab: Lab) -> None:
    names = {r["RegionName"] for r in lab.client().describe_regions()["Regions"]}
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= names
    only = lab.client().describe_regions(RegionNames=["eu-west-1"])["Regions"]
    assert [r["RegionName"] for r in only] == ["eu-west-1"]


def test_kms_keys_and_aliases(lab: Lab) -> None:
    kms = lab.client("kms")
    key = kms.create_key(Description="build key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/build", TargetKeyId=key["KeyId"])
    assert kms.describe_key(KeyId=key["Arn"])["KeyMetadata"]["Description"] == "build key"
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases["alias/build"] == key["KeyId"]
    with pytest.raises(ClientError) as exc:
        kms.describe_key(KeyId="alias/nope")
    assert error_code(exc) == "NotFoundException"


def test_time_based_copy_shows_its_completion_duration_on_the_copied_snapshot(lab: Lab, source_ami: tuple[str, str]) -> None:
    ami, _ = source_ami
    west = lab.client(region="us-west-2")
    lab.timings(copy_image=2.0)
    timed = west.copy_image(
        SourceRegion=lab.info["region"], SourceImageId=ami, Name=f"timed-{uuid.uuid4().hex[:6]}", SnapshotCopyCompletionDurationMinutes=15
    )["ImageId"]
    plain = west.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name=f"plain-{uuid.uuid4().hex[:6]}")["ImageId"]
    [sent] = [c for c in lab.calls("CopyImage") if c["region"] == "us-west-2" and c["params"].get("SnapshotCopyCompletionDurationMinutes")]
    assert sent["params"]["SnapshotCopyCompletionDurationMinutes"] == ["15"]

    def copied_snapshot(image_id: str) -> dict:
        ebs = west.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]
        return west.describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"][0]

    pending = copied_snapshot(timed)
    assert pending["State"] == "pending" and "CompletionTime" not in pending, pending
    assert pending["TransferType"] == "time-based" and pending["CompletionDurationMinutes"] == 15, pending
    west.get_waiter("image_available").wait(ImageIds=[timed, plain], WaiterConfig={"Delay": 0.3, "MaxAttempts": 30})
    snap = copied_snapshot(timed)
    assert snap["State"] == "completed"
    assert snap["TransferType"] == "time-based" and snap["CompletionDurationMinutes"] == 15, snap
    assert snap["StartTime"] <= snap["CompletionTime"], snap
    snap = copied_snapshot(plain)
    assert snap["TransferType"] == "standard" and "CompletionDurationMinutes" not in snap, snap
    assert "CompletionTime" in snap
    # A snapshot that is no copy says nothing about transfers.
    source_snap = lab.client().describe_snapshots(SnapshotIds=[source_ami[1]])["Snapshots"][0]
    assert "TransferType" not in source_snap and "CompletionDurationMinutes" not in source_snap, source_snap


@pytest.mark.parametrize("minutes", [20, 2895])
def test_time_based_copy_refuses_a_duration_ec2_refuses(lab: Lab, source_ami: tuple[str, str], minutes: int) -> None:
    ami, _ = source_ami
    west = lab.client(region="us-west-2")
    before = {i["ImageId"] for i in west.describe_images(Owners=["self"])["Images"]}
    with pytest.raises(ClientError) as exc:
        west.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name="bad-duration", SnapshotCopyCompletionDurationMinutes=minutes)
    assert error_code(exc) == "InvalidParameterValue"
    assert {i["ImageId"] for i in west.describe_images(Owners=["self"])["Images"]} == before


def test_copy_image_fault_scoped_to_one_region_fails_only_the_copy_into_it(lab: Lab, source_ami: tuple[str, str]) -> None:
    ami, _ = source_ami
    # Status 400: SDKs retry a 5xx, so each copy would count several calls.
    labctl("fault", "fail", "CopyImage", "--region", "eu-west-1", "--code", "InsufficientCapacity", "--status", "400", "--times", "0",
           name=lab.name)
    west, eu = lab.client(region="us-west-2"), lab.client(region="eu-west-1")
    copied = west.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name=f"ok-{uuid.uuid4().hex[:6]}")["ImageId"]
    assert west.describe_images(ImageIds=[copied])["Images"]
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            eu.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name="never")
        assert error_code(exc) == "InsufficientCapacity"
    assert eu.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["never"]}])["Images"] == []
    [fault] = lab.control("GET", "faults")["faults"]
    assert (fault["region"], fault["seen"], fault["fired"]) == ("eu-west-1", 2, 2), fault


def test_fault_with_an_unknown_field_is_refused(lab: Lab) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as exc:
        lab.control("POST", "faults", {"action": "CopyImage", "regoin": "eu-west-1"})
    assert exc.value.code == 400
    assert lab.control("GET", "faults")["faults"] == []


def test_copy_fails_after_it_was_accepted_with_the_fault_as_state_reason(lab: Lab, source_ami: tuple[str, str]) -> None:
    ami, _ = source_ami
    lab.control("POST", "faults", {"action": "CopyImageFails", "region": "us-west-2", "code": "Client.KMSKeyDisabled",
                                   "message": "the key is disabled"})
    west, eu = lab.client(region="us-west-2"), lab.client(region="eu-west-1")
    doomed = west.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name=f"doomed-{uuid.uuid4().hex[:6]}")["ImageId"]
    fine = eu.copy_image(SourceRegion=lab.info["region"], SourceImageId=ami, Name=f"fine-{uuid.uuid4().hex[:6]}")["ImageId"]
    assert west.describe_images(ImageIds=[doomed])["Images"][0]["State"] == "pending"
    eu.get_waiter("image_available").wait(ImageIds=[fine], WaiterConfig={"Delay": 0.3, "MaxAttempts": 20})

    def finished() -> dict | None:
        image = west.describe_images(ImageIds=[doomed])["Images"][0]
        return image if image["State"] != "pending" else None

    image = wait_for(finished, what="the doomed copy to finish")
    assert image["State"] == "failed", image
    assert image["StateReason"] == {"Code": "Client.KMSKeyDisabled", "Message": "the key is disabled"}
    assert "StateReason" not in eu.describe_images(ImageIds=[fine])["Images"][0]
    # What is left of a failed copy can be removed as usual.
    snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    west.deregister_image(ImageId=doomed)
    west.delete_snapshot(SnapshotId=snapshot)
    [fault] = lab.control("GET", "faults")["faults"]
    assert (fault["seen"], fault["fired"]) == (1, 1), fault
