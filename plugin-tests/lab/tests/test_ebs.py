"""EBS with real block devices: files, loop devices, device nodes, pending states."""

from __future__ import annotations

import os
import stat
import struct
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import Lab, released, sh, wait_for

from ec2lab import blockdev

GIB = 1024**3


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def free_device() -> str:
    """A /dev/sdX whose Xen node and lab claim are free, from z downwards
    (builders running in parallel pick from f upwards)."""
    for letter in "zyxwvutsrqponmlkjihgf":
        if not os.path.exists(f"/dev/xvd{letter}") and not (blockdev.CLAIMS_DIR / f"xvd{letter}").exists():
            return f"/dev/sd{letter}"
    raise AssertionError("no free device letter")


def new_volume(lab: Lab, **params) -> str:
    ec2 = lab.client()
    params.setdefault("Size", 1)
    vol = ec2.create_volume(AvailabilityZone=lab.az, **params)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return vol


def attach(lab: Lab, vol: str, device: str | None = None) -> str:
    ec2 = lab.client()
    for _ in range(3):
        chosen = device or free_device()
        try:
            assert ec2.attach_volume(VolumeId=vol, InstanceId=lab.instance_id, Device=chosen)["State"] == "attaching"
            break
        except ClientError as exc:
            # A parallel run may claim the name between our check and the call; pick again.
            if device or "already in use" not in str(exc):
                raise
    device = chosen
    ec2.get_waiter("volume_in_use").wait(
        VolumeIds=[vol], Filters=[{"Name": "attachment.status", "Values": ["attached"]}], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
    )
    return device


def detach(lab: Lab, vol: str) -> None:
    ec2 = lab.client()
    ec2.detach_volume(VolumeId=vol)
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})


def node_paths(lab: Lab, vol: str, requested: str) -> tuple[str, str]:
    """(disk, partition-1) paths a builder would use on this lab."""
    if lab.info["device_style"] == "xen":
        disk = "/dev/xvd" + requested[len("/dev/sd") :] if requested.startswith("/dev/sd") else requested
        return disk, disk + "1"
    link = f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{vol.replace('-', '')}"
    return link, link + "-part1"


def write_mbr(disk: str) -> None:
    """Write a one-partition msdos table straight to the device, without
    telling the kernel (as a raw tool would): the lab must notice by itself."""
    fd = os.open(disk, os.O_RDWR)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        sectors = size // 512 - 2048
        entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, sectors)
        mbr = bytearray(512)
        mbr[446:462] = entry
        mbr[510:512] = b"\x55\xaa"
        os.pwrite(fd, bytes(mbr), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_path(path: str) -> str:
    """What is at `path` (for failure messages)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "nothing"
    kind = "block" if stat.S_ISBLK(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} mtime {st.st_mtime} claims {os.listdir(blockdev.CLAIMS_DIR)}"


def is_block(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def test_volume_is_a_sparse_file_and_creating_then_available(lab: Lab) -> None:
    lab.timings(volume_create=1.0)
    ec2 = lab.client()
    vol = ec2.create_volume(AvailabilityZone=lab.az, Size=3, VolumeType="gp3")
    assert vol["State"] == "creating"
    assert ec2.describe_volumes(VolumeIds=[vol["VolumeId"]])["Volumes"][0]["State"] == "creating"
    f = lab.state_dir / "volumes" / f"{vol['VolumeId']}.img"
    assert f.stat().st_size == 3 * GIB and f.stat().st_blocks == 0
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=vol["VolumeId"], InstanceId=lab.instance_id, Device="/dev/sdf")
    assert error_code(exc) == "IncorrectState"
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol["VolumeId"]], WaiterConfig={"Delay": 0.3, "MaxAttempts": 20})
    ec2.delete_volume(VolumeId=vol["VolumeId"])
    assert not f.exists()


def test_attach_partition_mount_busy_detach_and_cleanup(any_lab: Lab, mounts_cleanup: list[str], tmp_path: Path) -> None:
    lab = any_lab
    ec2 = lab.client()
    vol = new_volume(lab)
    dev = attach(lab, vol)
    disk, part = node_paths(lab, vol, dev)
    assert is_block(disk)
    if lab.info["device_style"] == "nitro":
        assert not os.path.exists(dev) and not os.path.exists(dev.replace("/sd", "/xvd"))
        assert os.path.realpath(disk).startswith("/dev/nvme") and os.path.realpath(disk).endswith("n1")
    # Attachment is visible on the host instance.
    inst = ec2.describe_instances(InstanceIds=[lab.instance_id])["Reservations"][0]["Instances"][0]
    mapped = {m["DeviceName"]: m["Ebs"] for m in inst["BlockDeviceMappings"]}
    assert mapped[dev]["VolumeId"] == vol and mapped[dev]["Status"] == "attached"
    # A builder's pre_mount_commands partition the empty volume: the partition node follows.
    assert not os.path.exists(part)
    write_mbr(disk)
    wait_for(lambda: is_block(part), 5, f"{part} to appear")
    sh(f"mkfs.ext4 -q {part}")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh(f"mount {part} {mnt}")
    mounts_cleanup.append(str(mnt))
    (mnt / "hello").write_text("from the lab\n")
    with pytest.raises(ClientError) as exc:
        ec2.detach_volume(VolumeId=vol)
    assert error_code(exc) == "IncorrectState" and "busy" in str(exc.value)
    assert ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"][0]["State"] == "attached"
    with pytest.raises(ClientError) as exc:
        ec2.delete_volume(VolumeId=vol)
    assert error_code(exc) == "VolumeInUse"
    sh(f"umount {mnt}")
    loop = lab.control("GET", "resources")
    loop_dev = next(v for v in loop["volumes"] if v["VolumeId"] == vol)["HostDevice"]["loop"]
    # DetachVolume without InstanceId (what the builder sends).
    assert ec2.detach_volume(VolumeId=vol)["State"] == "detaching"
    assert released(disk, lab) and released(part, lab)
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    assert ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"] == []
    inst = ec2.describe_instances(InstanceIds=[lab.instance_id])["Reservations"][0]["Instances"][0]
    assert all(m["DeviceName"] != dev for m in inst["BlockDeviceMappings"])
    # (The loop device itself may already serve another lab: check its backing file.)
    assert [f for _, f in blockdev.loops_backed_by(lab.state_dir) if vol in f] == []
    assert loop_dev.startswith("/dev/loop")
    ec2.delete_volume(VolumeId=vol)


def test_snapshot_and_volume_from_snapshot_carry_the_data(any_lab: Lab, mounts_cleanup: list[str], tmp_path: Path) -> None:
    lab = any_lab
    lab.timings(snapshot=1.0)
    ec2 = lab.client()
    vol = new_volume(lab)
    dev = attach(lab, vol)
    disk, _ = node_paths(lab, vol, dev)
    sh(f"mkfs.ext4 -q {disk}")  # whole-device filesystem
    mnt = tmp_path / "a"
    mnt.mkdir()
    sh(f"mount {disk} {mnt}")
    mounts_cleanup.append(str(mnt))
    (mnt / "proof.txt").write_text("written before the snapshot\n")
    sh(f"umount {mnt}")
    detach(lab, vol)
    snap = ec2.create_snapshot(VolumeId=vol, Description="proof")
    assert snap["State"] == "pending"
    progress = [int(ec2.describe_snapshots(SnapshotIds=[snap["SnapshotId"]])["Snapshots"][0]["Progress"].rstrip("%"))]
    time.sleep(0.4)
    progress.append(int(ec2.describe_snapshots(SnapshotIds=[snap["SnapshotId"]])["Snapshots"][0]["Progress"].rstrip("%")))
    assert progress[0] < progress[1] < 100
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap["SnapshotId"]], WaiterConfig={"Delay": 0.3, "MaxAttempts": 20})
    done = ec2.describe_snapshots(SnapshotIds=[snap["SnapshotId"]])["Snapshots"][0]
    assert done["Progress"] == "100%" and done["VolumeSize"] == 1 and done["VolumeId"] == vol
    ec2.delete_volume(VolumeId=vol)  # the snapshot is its own file
    with pytest.raises(ClientError) as exc:
        ec2.create_volume(AvailabilityZone=lab.az, SnapshotId=snap["SnapshotId"], Size=1, VolumeType="gp2", Iops=100)
    assert error_code(exc) == "InvalidParameterDependency"
    copy = new_volume(lab, SnapshotId=snap["SnapshotId"], Size=2)
    f = lab.state_dir / "volumes" / f"{copy}.img"
    assert f.stat().st_size == 2 * GIB
    dev = attach(lab, copy)
    disk, _ = node_paths(lab, copy, dev)
    mnt2 = tmp_path / "b"
    mnt2.mkdir()
    sh(f"mount -o ro {disk} {mnt2}")
    mounts_cleanup.append(str(mnt2))
    assert (mnt2 / "proof.txt").read_text() == "written before the snapshot\n"
    sh(f"umount {mnt2}")
    detach(lab, copy)
    ec2.delete_volume(VolumeId=copy)


def test_create_volume_rejects_smaller_than_snapshot(lab: Lab) -> None:
    ec2 = lab.client()
    vol = new_volume(lab, Size=2)
    snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 0.3, "MaxAttempts": 20})
    with pytest.raises(ClientError) as exc:
        ec2.create_volume(AvailabilityZone=lab.az, SnapshotId=snap, Size=1)
    assert error_code(exc) == "InvalidParameterValue"
    ec2.delete_volume(VolumeId=vol)


def test_attach_validates_like_ec2(lab: Lab) -> None:
    ec2 = lab.client()
    vol = new_volume(lab)
    other_az = ec2.create_volume(AvailabilityZone=lab.info["region"] + "b", Size=1)["VolumeId"]
    for device, code in (("/dev/vda", "InvalidParameterValue"), ("sdf", "InvalidParameterValue")):
        with pytest.raises(ClientError) as exc:
            ec2.attach_volume(VolumeId=vol, InstanceId=lab.instance_id, Device=device)
        assert error_code(exc) == code
    time.sleep(0.5)
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=other_az, InstanceId=lab.instance_id, Device=free_device())
    assert error_code(exc) == "InvalidVolume.ZoneMismatch"
    dev = attach(lab, vol)
    second = new_volume(lab)
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=second, InstanceId=lab.instance_id, Device=dev)
    assert error_code(exc) == "InvalidParameterValue" and "already in use" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        ec2.detach_volume(VolumeId=second)
    assert error_code(exc) == "IncorrectState"
    detach(lab, vol)
    for v in (vol, second, other_az):
        ec2.delete_volume(VolumeId=v)


def test_attach_and_detach_are_held_in_transition(lab: Lab) -> None:
    lab.timings(attach=1.0, detach=1.0)
    ec2 = lab.client()
    vol = new_volume(lab)
    dev = free_device()
    ec2.attach_volume(VolumeId=vol, InstanceId=lab.instance_id, Device=dev)
    att = ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"][0]
    assert att["State"] == "attaching"
    inst = ec2.describe_instances(InstanceIds=[lab.instance_id])["Reservations"][0]["Instances"][0]
    assert [m["Ebs"]["Status"] for m in inst["BlockDeviceMappings"] if m["DeviceName"] == dev] == ["attaching"]
    wait_for(lambda: ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"][0]["State"] == "attached", 5, "attached")
    ec2.detach_volume(VolumeId=vol, InstanceId=lab.instance_id)
    vol_state = ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]
    assert vol_state["State"] == "in-use" and vol_state["Attachments"][0]["State"] == "detaching"
    wait_for(lambda: ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"] == [], 5, "detached")
    ec2.delete_volume(VolumeId=vol)


def test_device_node_delay_and_withhold(lab: Lab) -> None:
    ec2 = lab.client()
    lab.timings(device_appear=1.0)
    vol = new_volume(lab)
    dev = attach(lab, vol)
    node = dev.replace("/dev/sd", "/dev/xvd")
    assert not os.path.exists(node)
    wait_for(lambda: is_block(node), 5, f"{node} after the delay")
    detach(lab, vol)
    lab.timings(device_appear=0, device_withhold=True)
    dev = attach(lab, vol)
    node = dev.replace("/dev/sd", "/dev/xvd")
    time.sleep(0.6)
    assert not os.path.exists(node)
    assert lab.control("POST", "devices/show", {})["shown"] == [os.path.basename(node)]
    assert is_block(node)
    detach(lab, vol)
    assert released(node, lab), f"{node} left after detach: {describe_path(node)}"
    ec2.delete_volume(VolumeId=vol)


def test_snapshot_attributes_and_tags(lab: Lab) -> None:
    ec2 = lab.client()
    vol = new_volume(lab)
    snap = ec2.create_snapshot(VolumeId=vol, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "a", "Value": "1"}]}])[
        "SnapshotId"
    ]
    # The form the Go SDK sends for snapshot_users / snapshot_groups.
    ec2.modify_snapshot_attribute(SnapshotId=snap, CreateVolumePermission={"Add": [{"UserId": "210987654321"}, {"Group": "all"}]})
    ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", UserIds=["111122223333"])
    perms = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")["CreateVolumePermissions"]
    assert {"UserId": "210987654321"} in perms and {"UserId": "111122223333"} in perms and {"Group": "all"} in perms
    ec2.modify_snapshot_attribute(SnapshotId=snap, CreateVolumePermission={"Remove": [{"Group": "all"}]})
    perms = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")["CreateVolumePermissions"]
    assert {"Group": "all"} not in perms
    ec2.create_tags(Resources=[snap, vol], Tags=[{"Key": "b", "Value": "2"}])
    tags = {t["Key"]: t["Value"] for t in ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["Tags"]}
    assert tags == {"a": "1", "b": "2"}
    assert {"Key": "b", "Value": "2"} in ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Tags"]
    ec2.delete_volume(VolumeId=vol)


def test_busy_detach_hang_mode_waits_for_unmount(lab: Lab, mounts_cleanup: list[str], tmp_path: Path) -> None:
    ec2 = lab.client()
    lab.control("POST", "busy-detach", {"mode": "hang"})
    try:
        vol = new_volume(lab)
        dev = attach(lab, vol)
        disk, _ = node_paths(lab, vol, dev)
        sh(f"mkfs.ext4 -q {disk}")
        mnt = tmp_path / "m"
        mnt.mkdir()
        sh(f"mount {disk} {mnt}")
        mounts_cleanup.append(str(mnt))
        assert ec2.detach_volume(VolumeId=vol)["State"] == "busy"
        time.sleep(0.6)
        desc = ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]
        assert desc["State"] == "in-use" and desc["Attachments"][0]["State"] == "busy"
        assert is_block(disk)
        sh(f"umount {mnt}")
        ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        assert released(disk, lab)
        ec2.delete_volume(VolumeId=vol)
    finally:
        lab.control("POST", "busy-detach", {"mode": "error"})


def test_force_detach_unmounts(lab: Lab, tmp_path: Path, mounts_cleanup: list[str]) -> None:
    ec2 = lab.client()
    vol = new_volume(lab)
    dev = attach(lab, vol)
    disk, _ = node_paths(lab, vol, dev)
    sh(f"mkfs.ext4 -q {disk}")
    mnt = tmp_path / "m"
    mnt.mkdir()
    sh(f"mount {disk} {mnt}")
    mounts_cleanup.append(str(mnt))
    assert ec2.detach_volume(VolumeId=vol, Force=True)["State"] == "detaching"
    assert str(mnt) not in [m.mount_point for m in blockdev.mounts()]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    ec2.delete_volume(VolumeId=vol)


def test_snapshot_of_the_host_root_volume_is_an_empty_disk(lab: Lab) -> None:
    ec2 = lab.client()
    snap = ec2.create_snapshot(VolumeId=lab.info["root_volume_id"])["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 0.3, "MaxAttempts": 20})
    f = lab.state_dir / "snapshots" / f"{snap}.img"
    assert f.stat().st_size == 8 * GIB and f.stat().st_blocks == 0
    ec2.delete_snapshot(SnapshotId=snap)
    assert not f.exists()
