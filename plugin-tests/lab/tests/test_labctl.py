"""labctl: env, ls, import-snapshot, mount-ami, fault, leaks, stop (also after a crash), parallel labs."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import Lab, labctl, released, sh, wait_for

from ec2lab import blockdev


def disk_with_files(path: Path, tmp: Path, partitioned: bool) -> Path:
    """A 64 MiB disk image: msdos table + one ext4 partition, or ext4 on the whole disk."""
    content = tmp / f"content-{uuid.uuid4().hex[:6]}"
    (content / "etc").mkdir(parents=True)
    (content / "etc" / "lab-release").write_text("lab image\n")
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    if partitioned:
        sectors = 64 * 2048 - 2048
        mbr = bytearray(512)
        mbr[446:462] = bytes([0x80, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, sectors)
        mbr[510:512] = b"\x55\xaa"
        with open(path, "r+b") as f:
            f.write(mbr)
        sh(f"mkfs.ext4 -q -F -E offset={2048 * 512} -d {content} {path} {sectors // 2}k")
    else:
        sh(f"mkfs.ext4 -q -F -d {content} {path}")
    return path


def env_of(lab: Lab) -> dict[str, str]:
    lines = labctl("env", name=lab.name).stdout.splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def test_env_lines_configure_an_sdk_client(lab: Lab) -> None:
    env = env_of(lab)
    assert env["AWS_ENDPOINT_URL_EC2"] == lab.endpoint and env["AWS_REGION"] == lab.info["region"]
    assert env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == f"http://127.0.0.1:{lab.info['imds_port']}/"
    assert env["LAB_INSTANCE_ID"] == lab.instance_id
    out = subprocess.run(
        ["python3", "-c", "import boto3; print(boto3.client('ec2').describe_instances()['Reservations'][0]['Instances'][0]['InstanceId'])"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == lab.instance_id


@pytest.mark.parametrize("partitioned", [True, False])
def test_import_snapshot_register_ls_and_mount_ami(lab: Lab, tmp_path: Path, partitioned: bool) -> None:
    disk = disk_with_files(tmp_path / "disk.img", tmp_path, partitioned)
    snap = labctl("import-snapshot", str(disk), "--description", "imported", name=lab.name).stdout.strip()
    assert snap.startswith("snap-")
    ec2 = lab.client()
    s = ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]
    assert s["State"] == "completed" and s["Progress"] == "100%" and s["VolumeSize"] == 1 and s["OwnerId"] == lab.info["account_id"]
    ami = ec2.register_image(
        Name=f"mount-me-{uuid.uuid4().hex[:6]}",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    assert ami in labctl("ls", "amis", name=lab.name).stdout
    assert snap in labctl("ls", "snapshots", name=lab.name).stdout
    mnt = tmp_path / "look"
    try:
        out = labctl("mount-ami", ami, str(mnt), name=lab.name).stdout
        assert "read-only" in out
        assert (mnt / "etc" / "lab-release").read_text() == "lab image\n"
        with pytest.raises(OSError):
            (mnt / "new-file").write_text("x")
    finally:
        labctl("umount", str(mnt), name=lab.name, check=False)
    assert str(mnt) not in [m.mount_point for m in blockdev.mounts()]
    assert blockdev.loops_backed_by(lab.state_dir) == []


def test_fault_cli_and_calls(lab: Lab) -> None:
    labctl("fault", "fail", "DescribeSnapshots", "--code", "Throttling", "--status", "400", name=lab.name)
    ec2 = boto3.client(
        "ec2",
        region_name=lab.info["region"],
        endpoint_url=lab.endpoint,
        aws_access_key_id="AKIALABLABLABLAB0000",
        aws_secret_access_key="x",
        config=__import__("botocore.config").config.Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as exc:
        ec2.describe_snapshots()
    assert exc.value.response["Error"]["Code"] == "Throttling"
    ec2.describe_snapshots()
    calls = labctl("calls", name=lab.name).stdout
    assert "DescribeSnapshots\t400\tThrottling" in calls and "DescribeSnapshots\t200" in calls
    labctl("fault", "timings", "snapshot=2.5", name=lab.name)
    assert lab.control("GET", "timings")["snapshot"] == 2.5
    labctl("fault", "reset", name=lab.name)
    assert lab.control("GET", "faults") == {"faults": [], "delays": {}}


def free_device() -> str:
    for letter in "zyxwvutsrqponmlkjihgf":
        if not os.path.exists(f"/dev/xvd{letter}") and not (blockdev.CLAIMS_DIR / f"xvd{letter}").exists():
            return f"/dev/sd{letter}"
    raise AssertionError("no free device letter")


def attach_new_volume(lab: Lab, device: str) -> str:
    ec2 = lab.client()
    vol = ec2.create_volume(AvailabilityZone=lab.az, Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    ec2.attach_volume(VolumeId=vol, InstanceId=lab.instance_id, Device=device)
    wait_for(lambda: ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"][0]["State"] == "attached", 5, "attached")
    return vol


def test_leak_report_lists_a_deliberate_leak_then_clean(start_lab) -> None:
    lab = start_lab()
    device = free_device()
    vol = attach_new_volume(lab, device)
    node = device.replace("/dev/sd", "/dev/xvd")
    mnt = lab.state_dir / "mnt"
    mnt.mkdir()
    sh(f"mkfs.ext4 -q {node} && mount {node} {mnt}")
    try:
        report = labctl("leaks", name=lab.name, check=False)
        assert report.returncode == 1
        out = report.stdout
        assert f"volume {vol}" in out and "attached" in out
        assert "loop device /dev/loop" in out and f"mount {node} on {mnt}" in out
        assert f"device claim {node}" in out and f"device node {node}" in out
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
    ec2 = lab.client()
    ec2.detach_volume(VolumeId=vol)
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    ec2.delete_volume(VolumeId=vol)
    report = labctl("leaks", name=lab.name, check=False)
    assert report.returncode == 0, report.stdout


def hold_packer_lock(lab_name: str) -> subprocess.Popen:
    """A process with LAB_NAME=lab_name in its environment holding the
    packer-chroot lock, as a build of that lab does, until killed."""
    blockdev.PACKER_CHROOT_LOCK.parent.mkdir(parents=True, exist_ok=True)
    holder = "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", holder, str(blockdev.PACKER_CHROOT_LOCK)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "LAB_NAME": lab_name})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_leak_report_blames_the_lock_only_on_the_lab_whose_build_holds_it(lab: Lab) -> None:
    for holder_lab, blamed in ((f"other-{uuid.uuid4().hex[:6]}", False), (lab.name, True)):
        proc = hold_packer_lock(holder_lab)
        try:
            assert proc.pid in blockdev.lock_holders()
            assert blockdev.lab_of_process(proc.pid) == holder_lab
            report = labctl("leaks", name=lab.name, check=False)
            everything = labctl("leaks", "--all", check=False)
        finally:
            proc.kill()
            proc.wait()
        lock_line = f"lock {blockdev.PACKER_CHROOT_LOCK} is held (pid {proc.pid}"
        assert (lock_line in report.stdout) == blamed, report.stdout
        assert (report.returncode == 1) == blamed, report.stdout
        # Without a name every holder is reported.
        assert lock_line in everything.stdout, everything.stdout


def test_stop_cleans_up_attached_and_mounted_volumes(start_lab, tmp_path: Path) -> None:
    lab = start_lab("--device-style", "nitro")
    vol = attach_new_volume(lab, "/dev/sdf")
    link = Path(f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{vol.replace('-', '')}")
    assert link.exists()
    mnt = tmp_path / "m"
    mnt.mkdir()
    sh(f"mkfs.ext4 -q {link} && mount {link} {mnt} && mkdir -p {mnt}/proc && mount -t proc proc {mnt}/proc")
    out = labctl("stop", name=lab.name).stdout
    assert f"unmounted {mnt}" in out
    assert str(mnt) not in sh("cat /proc/mounts")
    assert not link.exists() and not os.path.exists(os.path.realpath(link))
    assert blockdev.loops_backed_by(lab.state_dir) == []


def test_stop_after_daemon_crash_sweeps_devices(start_lab) -> None:
    lab = start_lab()
    device = free_device()
    attach_new_volume(lab, device)
    node = device.replace("/dev/sd", "/dev/xvd")
    assert os.path.exists(node)
    os.kill(lab.info["pid"], signal.SIGKILL)
    time.sleep(0.3)
    out = labctl("stop", name=lab.name).stdout
    assert "detached /dev/loop" in out
    assert released(node, lab)
    claim = blockdev.CLAIMS_DIR / os.path.basename(node)
    assert not claim.exists() or claim.read_text() != lab.name
    assert blockdev.loops_backed_by(lab.state_dir) == []


def test_two_labs_run_side_by_side_and_share_dev_safely(start_lab) -> None:
    a = start_lab()
    b = start_lab("--region", "eu-west-1")
    assert a.info["ec2_port"] != b.info["ec2_port"] and a.info["imds_port"] != b.info["imds_port"]
    assert a.instance_id != b.instance_id and a.state_dir != b.state_dir
    assert b.client().describe_instances()["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"] == "eu-west-1a"
    device = free_device()
    vol_a = attach_new_volume(a, device)
    # /dev is global: the same Xen name in the other lab is refused, as if the
    # attachment point were taken, instead of clobbering lab a's node.
    ec2b = b.client()
    vol_b = ec2b.create_volume(AvailabilityZone=b.az, Size=1)["VolumeId"]
    ec2b.get_waiter("volume_available").wait(VolumeIds=[vol_b], WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    with pytest.raises(ClientError) as exc:
        ec2b.attach_volume(VolumeId=vol_b, InstanceId=b.instance_id, Device=device)
    assert exc.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert vol_a in a.control("GET", "resources")["volumes"].__repr__()
    assert vol_a not in b.control("GET", "resources")["volumes"].__repr__()


def test_start_refuses_a_running_name(lab: Lab) -> None:
    again = labctl("start", "--name", lab.name, check=False)
    assert again.returncode == 1 and "already runs" in again.stderr


def test_run_gives_the_command_a_lab_and_fails_on_leaks(tmp_path: Path) -> None:
    name = f"run{os.getpid()}"
    leaky = "import boto3, os; boto3.client('ec2').create_volume(AvailabilityZone=os.environ['LAB_AVAILABILITY_ZONE'], Size=1)"
    proc = labctl(
        "run", "--name", name, "--state-dir", str(tmp_path / "s"), "--fail-on-leaks", "--", sys.executable, "-c", leaky, check=False
    )
    assert proc.returncode == 3, proc.stderr
    assert "leak: volume vol-" in proc.stderr
    clean = labctl("run", "--name", name, "--state-dir", str(tmp_path / "s"), "--fail-on-leaks", "--", "true", check=False)
    assert clean.returncode == 0, clean.stderr
    assert labctl("run", "--name", name, "--", "false", check=False).returncode == 1
    assert not (blockdev.CLAIMS_DIR.parent / "labs" / f"{name}.json").exists()


def test_start_on_given_ports(start_lab) -> None:
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    lab = start_lab("--ec2-port", str(ports[0]), "--imds-port", str(ports[1]))
    assert (lab.info["ec2_port"], lab.info["imds_port"]) == tuple(ports)
    assert lab.client().describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"] == lab.instance_id
    env = env_of(lab)
    assert env["AWS_ENDPOINT_URL_EC2"] == f"http://127.0.0.1:{ports[0]}"
    assert env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == f"http://127.0.0.1:{ports[1]}/"
