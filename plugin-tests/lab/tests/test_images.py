"""AMI actions moto lacks or gets wrong, as patched by the lab."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from botocore.exceptions import ClientError, WaiterError
from conftest import Lab, sparse_disk


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture
def snap(lab: Lab, tmp_path) -> str:
    return lab.import_snapshot(sparse_disk(tmp_path / "root.img"), "source root")


def register(lab: Lab, snap: str, name: str | None = None, **extra) -> str:
    params = {
        "Name": name or f"lab-test-{uuid.uuid4().hex[:12]}",
        "RootDeviceName": "/dev/xvda",
        "Architecture": "x86_64",
        "VirtualizationType": "hvm",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap, "DeleteOnTermination": True}}],
    }
    params.update(extra)
    return lab.client().register_image(**params)["ImageId"]


def test_register_image_honours_every_field(lab: Lab, snap: str, tmp_path) -> None:
    ec2 = lab.client()
    data_snap = lab.import_snapshot(sparse_disk(tmp_path / "data.img"))
    ami = register(
        lab,
        snap,
        name="lab-test-ami",
        Description="all fields",
        EnaSupport=True,
        SriovNetSupport="simple",
        BootMode="uefi",
        TpmSupport="v2.0",
        UefiData="dWVmaQ==",
        ImdsSupport="v2.0",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap, "VolumeSize": 4, "VolumeType": "gp3", "DeleteOnTermination": True}},
            {"DeviceName": "/dev/sdb", "Ebs": {"SnapshotId": data_snap, "VolumeType": "io1", "Iops": 500, "DeleteOnTermination": False}},
            {"DeviceName": "/dev/sdc", "Ebs": {"VolumeSize": 10, "VolumeType": "gp2"}},
            {"DeviceName": "/dev/sdd", "VirtualName": "ephemeral0"},
            {"DeviceName": "/dev/sde", "NoDevice": ""},
        ],
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}],
    )
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert img["Name"] == "lab-test-ami"
    assert img["Description"] == "all fields"
    assert img["RootDeviceName"] == "/dev/xvda" and img["RootDeviceType"] == "ebs"
    assert img["Architecture"] == "x86_64" and img["VirtualizationType"] == "hvm"
    assert img["EnaSupport"] is True and img["SriovNetSupport"] == "simple"
    assert img["BootMode"] == "uefi" and img["TpmSupport"] == "v2.0" and img["ImdsSupport"] == "v2.0"
    assert img["OwnerId"] == lab.info["account_id"] and img["ImageLocation"].endswith("/lab-test-ami")
    assert {"Key": "k", "Value": "v"} in img["Tags"]
    bdm = {m["DeviceName"]: m for m in img["BlockDeviceMappings"]}
    assert bdm["/dev/xvda"]["Ebs"] == {
        "SnapshotId": snap,
        "VolumeSize": 4,
        "VolumeType": "gp3",
        "DeleteOnTermination": True,
        "Encrypted": False,
        "Iops": 3000,
        "Throughput": 125,
    }
    assert bdm["/dev/sdb"]["Ebs"]["VolumeSize"] == 1  # defaults to the snapshot size
    assert bdm["/dev/sdb"]["Ebs"]["Iops"] == 500 and bdm["/dev/sdb"]["Ebs"]["DeleteOnTermination"] is False
    assert bdm["/dev/sdc"]["Ebs"]["VolumeSize"] == 10 and "SnapshotId" not in bdm["/dev/sdc"]["Ebs"]
    assert bdm["/dev/sdd"] == {"DeviceName": "/dev/sdd", "VirtualName": "ephemeral0"}
    assert bdm["/dev/sde"] == {"DeviceName": "/dev/sde", "NoDevice": ""}
    uefi = ec2.describe_image_attribute(ImageId=ami, Attribute="uefiData")
    assert uefi["UefiData"]["Value"] == "dWVmaQ=="


def test_register_image_defaults_match_ec2(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = ec2.register_image(
        Name="defaults",
        RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert img["Architecture"] == "i386" and img["VirtualizationType"] == "paravirtual"
    assert "EnaSupport" not in img and "BootMode" not in img
    assert img["BlockDeviceMappings"][0]["Ebs"]["VolumeType"] == "gp2"
    assert img["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is True


def test_register_paravirtual_keeps_kernel_and_ramdisk(lab: Lab, snap: str) -> None:
    ami = register(lab, snap, VirtualizationType="paravirtual", KernelId="aki-12345678", RamdiskId="ari-12345678")
    ec2 = lab.client()
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert img["KernelId"] == "aki-12345678" and img["RamdiskId"] == "ari-12345678"
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="kernel")["KernelId"]["Value"] == "aki-12345678"
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="ramdisk")["RamdiskId"]["Value"] == "ari-12345678"


@pytest.mark.parametrize(
    "extra, code",
    [
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0000000000000000f"}}]},
            "InvalidSnapshot.NotFound",
        ),
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "SNAP", "Encrypted": False}}]},
            "InvalidParameterCombination",
        ),
        (
            {"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "SNAP", "VolumeSize": 0}}]},
            "InvalidBlockDeviceMapping",
        ),
        ({"RootDeviceName": "/dev/sda1"}, "InvalidBlockDeviceMapping"),
        ({"TpmSupport": "v2.0", "BootMode": "legacy-bios"}, "InvalidParameterCombination"),
        ({"EnaSupport": True, "VirtualizationType": "paravirtual"}, "InvalidParameterCombination"),
        ({"Name": "bad*name!"}, "InvalidAMIName.Malformed"),
    ],
)
def test_register_image_rejects_what_ec2_rejects(lab: Lab, snap: str, extra: dict, code: str) -> None:
    for m in extra.get("BlockDeviceMappings", []):
        if m["Ebs"].get("SnapshotId") == "SNAP":
            m["Ebs"]["SnapshotId"] = snap
    with pytest.raises(ClientError) as exc:
        register(lab, snap, **extra)
    assert error_code(exc) == code


def test_register_image_rejects_duplicate_name(lab: Lab, snap: str) -> None:
    first = register(lab, snap, name="dup-name")
    with pytest.raises(ClientError) as exc:
        register(lab, snap, name="dup-name")
    assert error_code(exc) == "InvalidAMIName.Duplicate"
    assert first in str(exc.value)


def test_image_is_pending_then_available(lab: Lab, snap: str) -> None:
    lab.timings(image=1.5)
    ec2 = lab.client()
    ami = register(lab, snap)
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["State"] == "pending"
    with pytest.raises(WaiterError):
        ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig={"Delay": 0.2, "MaxAttempts": 2})
    ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig={"Delay": 0.5, "MaxAttempts": 10})
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["State"] == "available"


def test_describe_images_filters_and_owners(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap, name="filter-me")
    self_images = [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]]
    assert ami in self_images and lab.info["host_image_id"] not in self_images  # the host AMI is owned by "amazon"
    filters = [
        {"Name": "name", "Values": ["filter-*"]},
        {"Name": "root-device-type", "Values": ["ebs"]},
        {"Name": "virtualization-type", "Values": ["hvm"]},
        {"Name": "architecture", "Values": ["x86_64"]},
        {"Name": "block-device-mapping.snapshot-id", "Values": [snap]},
        {"Name": "state", "Values": ["pending", "available"]},
    ]
    assert [i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=filters)["Images"]] == [ami]
    wrong = [{"Name": "name", "Values": ["filter-me"]}, {"Name": "virtualization-type", "Values": ["paravirtual"]}]
    assert ec2.describe_images(Owners=["self"], Filters=wrong)["Images"] == []
    host = ec2.describe_images(Owners=["amazon"])["Images"]
    assert [i["ImageId"] for i in host] == [lab.info["host_image_id"]]


def test_image_deprecation_enable_disable(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap)
    when = dt.datetime(2031, 5, 6, 7, 8, 40, tzinfo=dt.UTC)
    assert ec2.enable_image_deprecation(ImageId=ami, DeprecateAt=when)["Return"] is True
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert img["DeprecationTime"] == "2031-05-06T07:09:00.000Z"  # rounded to the minute
    ec2.disable_image_deprecation(ImageId=ami)
    assert "DeprecationTime" not in ec2.describe_images(ImageIds=[ami])["Images"][0]


def test_deregistration_protection_blocks_deregister(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap)
    assert ec2.enable_image_deregistration_protection(ImageId=ami)["Return"] == "enabled"
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["DeregistrationProtection"] == "enabled"
    with pytest.raises(ClientError) as exc:
        ec2.deregister_image(ImageId=ami)
    assert error_code(exc) == "OperationNotPermitted"
    ec2.disable_image_deregistration_protection(ImageId=ami)
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["DeregistrationProtection"] == "disabled"
    ec2.deregister_image(ImageId=ami)
    assert ami not in [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]]


def test_deregistration_protection_with_cooldown(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap)
    ec2.enable_image_deregistration_protection(ImageId=ami, WithCooldown=True)
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["DeregistrationProtection"] == "enabled-with-cooldown"
    ec2.disable_image_deregistration_protection(ImageId=ami)
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["DeregistrationProtection"].startswith("disabled-until-")
    with pytest.raises(ClientError) as exc:
        ec2.deregister_image(ImageId=ami)
    assert error_code(exc) == "OperationNotPermitted"


def test_delete_snapshot_refused_while_image_uses_it(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap)
    with pytest.raises(ClientError) as exc:
        ec2.delete_snapshot(SnapshotId=snap)
    assert error_code(exc) == "InvalidSnapshot.InUse"
    assert (lab.state_dir / "snapshots" / f"{snap}.img").exists()
    ec2.deregister_image(ImageId=ami)
    ec2.delete_snapshot(SnapshotId=snap)
    assert not (lab.state_dir / "snapshots" / f"{snap}.img").exists()
    with pytest.raises(ClientError) as exc:
        ec2.describe_snapshots(SnapshotIds=[snap])
    assert error_code(exc) == "InvalidSnapshot.NotFound"


def test_modify_and_describe_image_attributes(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap)
    org = "arn:aws:organizations::123456789012:organization/o-abc"
    ou = "arn:aws:organizations::123456789012:ou/o-abc/ou-xyz"
    # The forms the Go SDK sends for Packer's StepModifyAMIAttributes.
    ec2.modify_image_attribute(ImageId=ami, Description={"Value": "new description"})
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "210987654321"}]})
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"OrganizationArn": org}]})
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"OrganizationalUnitArn": ou}]})
    ec2.modify_image_attribute(ImageId=ami, ProductCodes=["abcdefghijklmnop"])
    ec2.modify_image_attribute(ImageId=ami, ImdsSupport={"Value": "v2.0"})
    # The OperationType form.
    ec2.modify_image_attribute(ImageId=ami, Attribute="launchPermission", OperationType="add", UserIds=["111122223333"])
    perms = ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
    assert {"Group": "all"} in perms and {"UserId": "210987654321"} in perms and {"UserId": "111122223333"} in perms
    assert {"OrganizationArn": org} in perms and {"OrganizationalUnitArn": ou} in perms
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="description")["Description"]["Value"] == "new description"
    codes = ec2.describe_image_attribute(ImageId=ami, Attribute="productCodes")["ProductCodes"]
    assert codes == [{"ProductCodeId": "abcdefghijklmnop", "ProductCodeType": "marketplace"}]
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="imdsSupport")["ImdsSupport"]["Value"] == "v2.0"
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert img["Public"] is True and img["Description"] == "new description"
    assert img["ProductCodes"] == codes
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Remove": [{"Group": "all"}]})
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["Public"] is False
    with pytest.raises(ClientError) as exc:
        ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "not-an-account"}]})
    assert error_code(exc) == "InvalidAMIAttributeItemValue"


def test_create_tags_on_image_and_snapshot(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap)
    ec2.create_tags(Resources=[ami, snap], Tags=[{"Key": "Name", "Value": "built"}])
    assert {"Key": "Name", "Value": "built"} in ec2.describe_images(ImageIds=[ami])["Images"][0]["Tags"]
    assert {"Key": "Name", "Value": "built"} in ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["Tags"]


def test_deprecated_images_of_others_are_hidden_unless_asked(lab: Lab) -> None:
    ec2 = lab.client()
    host = lab.info["host_image_id"]  # owned by "amazon", not by the caller
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ec2.enable_image_deprecation(ImageId=host, DeprecateAt=past)
    try:
        assert ec2.describe_images(Owners=["amazon"])["Images"] == []
        assert [i["ImageId"] for i in ec2.describe_images(Owners=["amazon"], IncludeDeprecated=True)["Images"]] == [host]
        assert [i["ImageId"] for i in ec2.describe_images(ImageIds=[host])["Images"]] == [host]
    finally:
        ec2.disable_image_deprecation(ImageId=host)
    assert [i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]] == [host]


def test_modify_image_attribute_attribute_value_form(lab: Lab, snap: str) -> None:
    ec2 = lab.client()
    ami = register(lab, snap)
    ec2.modify_image_attribute(ImageId=ami, Attribute="description", Value="via Attribute/Value")
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="description")["Description"]["Value"] == "via Attribute/Value"
    ec2.modify_image_attribute(ImageId=ami, Attribute="launchPermission", OperationType="remove", UserIds=["111122223333"])
    with pytest.raises(ClientError) as exc:
        ec2.modify_image_attribute(ImageId=ami)
    assert error_code(exc) == "MissingParameter"
