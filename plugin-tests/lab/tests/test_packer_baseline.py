"""Baseline: HashiCorp's own amazon-chroot builder (Debian's packer 1.6.6, the
builtin builder) runs full builds in the lab, and the AMIs it makes hold what
its provisioners wrote.

This proves the lab is faithful to a real client written by someone else, and
records upstream's behaviour for side-by-side comparison with ours: its EC2 and
IMDS call sequence (UPSTREAM_CALL_SEQUENCE), the AMI it registers, and what it
leaves in the image -- notably its copy_files cleanup deletes the image's
/etc/resolv.conf symlink (hashicorp/packer#4698), asserted here as upstream's
behaviour, which our builder fixes.

How upstream is run in the lab (facts found on these VMs):
  * Device discovery: upstream reads /sys/block, which lists only
    vda/loop*/zram* here, and fails "device prefix could not be detected".
    Two ways round it are used:
      - the JSON builds run Packer in a private mount namespace whose
        /sys/block is a tmpfs with a fake `xvda` entry, so upstream's own
        discovery picks /dev/xvdf.. and its default mount_path
        /mnt/packer-amazon-chroot-volumes/<dev> is used (those mounts exist
        only in that namespace and die with it);
      - the HCL2 and failure builds run in the host namespace with an explicit
        device_path (a free /dev/xvdX) and a mount_path in the test's own
        directory, so the lab sees every mount Packer makes.
    The Nitro build needs device_path plus nvme_device_path, upstream's only
    Nitro option, with the NVMe name guessed before attaching.
  * IMDS: with custom_endpoint_ec2 set, Packer's Go SDK sends its
    instance-metadata requests to the EC2 endpoint; the lab serves them there.
  * Credentials: the lab's static keys from `labctl env` (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY, Packer logs "EnvProvider"). skip_region_validation
    is NOT needed: the lab answers DescribeRegions.
  * Speed: AWS_POLL_DELAY_SECONDS=1 (an upstream knob) instead of 15 s waiter
    sleeps; a build takes about 5 s.
  * Packer takes /var/lock/packer-chroot/lock (shared by all builds on the
    machine); CHECKPOINT_DISABLE=1 and a private HOME keep it off the network
    and away from user plugins (the log must show the builtin plugin).
  * Every run is bounded (PACKER_TIMEOUT), interrupted with SIGINT to its
    process group on timeout, SIGKILLed after a grace period; leftover mounts
    below the test's directory are unmounted, and the lab (stopped by the
    fixture finalizer) removes its loop devices and nodes.

Needs root, /usr/bin/packer (Debian packer 1.6.6), busybox-static, and the lab's
Python requirements.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from baseline_support import (
    PACKER_CANCEL_GRACE,
    PACKER_DEFAULT_MOUNT_ROOT,
    Lab,
    PackerResult,
    action_sequence,
    free_xen_device,
    hcl_string,
    mounts_matching,
    next_nvme_disk,
    run_packer,
    run_packer_once_more_on_device_collision,
    running_lab,
    unmount_below,
    write_json_template,
)

SOURCE_FILTER_NAME = "lab-source-busybox-partitioned-*"
WHOLE_FILTER_NAME = "lab-source-busybox-whole-*"


#: What upstream asks of EC2 and IMDS in a successful build, in order (waiter
#: polls folded). IMDS requests arrive on the EC2 port because the Go SDK sends
#: them to custom_endpoint_ec2. The baseline for side-by-side comparisons.
UPSTREAM_CALL_SEQUENCE = [
    "DescribeRegions",  # StepPreValidate (region validation)
    "DescribeImages",  # StepPreValidate: is ami_name taken?
    "PUT /latest/api/token",  # StepInstanceInfo: IMDSv2 token ...
    "GET /latest/dynamic/instance-identity/document",  # ... and identity document
    "DescribeInstances",
    "DescribeImages",  # StepSourceAMIInfo (source_ami_filter)
    "CreateVolume",
    "DescribeVolumes",  # wait available
    "AttachVolume",
    "DescribeVolumes",  # wait attached
    "DetachVolume",  # StepEarlyCleanup
    "DescribeVolumes",  # wait detached
    "CreateSnapshot",
    "DescribeSnapshots",  # wait completed
    "RegisterImage",
    "DescribeImages",  # wait available
    "DeleteVolume",  # StepCreateVolume cleanup
]


def check_call_trace(calls: list[dict], source_ami: str, lab: Lab, device: str) -> None:
    """Upstream's API conversation with the lab, as recorded by the lab.

    `calls` may hold a first attempt that collided with another lab's device
    (see run_packer_once_more_on_device_collision): the checked build is the
    one from the last DescribeRegions, upstream's first call."""
    starts = [i for i, c in enumerate(calls) if c["action"] == "DescribeRegions"]
    assert starts, calls
    calls = calls[starts[-1]:]
    assert action_sequence(calls) == UPSTREAM_CALL_SEQUENCE, action_sequence(calls)
    assert all(c["error"] == "" for c in calls), [c for c in calls if c["error"]]
    by_action = {c["action"]: c["params"] for c in calls}
    source = lab.ec2().describe_images(ImageIds=[source_ami])["Images"][0]
    create = by_action["CreateVolume"]
    assert create["SnapshotId"] == [source["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]]
    assert create["Size"] == ["1"]
    assert create["AvailabilityZone"] == [lab.env.get("LAB_AVAILABILITY_ZONE", lab.region + "a")]
    # Upstream asks for /dev/sdX and uses /dev/xvdX locally.
    assert by_action["AttachVolume"]["Device"] == [device.replace("/dev/xvd", "/dev/sd")]
    register = by_action["RegisterImage"]
    assert register["RootDeviceName"] == ["/dev/xvda"]
    assert register["EnaSupport"] == ["true"]
    assert register["VirtualizationType"] == ["hvm"]


def shell_inline(token: str) -> list[str]:
    """Inline shell provisioner commands: busybox tools inside the chroot,
    a file written, the environment variable seen, resolv.conf's state seen."""
    return [
        "set -e",
        "echo shell-provisioner-ran > /etc/baseline-shell.txt",
        "echo token=$BASELINE_TOKEN >> /etc/baseline-shell.txt",
        "busybox | head -n 1 | cut -d' ' -f1 >> /etc/baseline-shell.txt",
        "grep -c ^root: /etc/passwd >> /etc/baseline-shell.txt",
        "mkdir -p /opt/baseline && cp /etc/os-release /opt/baseline/os-release.copy",
        (
            "if [ -L /etc/resolv.conf ]; then echo symlink; elif [ -f /etc/resolv.conf ]; then echo file; "
            "else echo absent; fi > /opt/baseline/resolv-during-build"
        ),
        "ls /tmp > /opt/baseline/tmp-listing",
    ]


def expected_shell_lines(token: str) -> list[str]:
    return ["shell-provisioner-ran", f"token={token}", "BusyBox", "1"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A Xen-style lab for this module (state in pytest's tmp dir, kept for debugging)."""
    with running_lab(f"baseline-{os.getpid()}", tmp_path_factory.mktemp("lab-xen"), "xen") as started:
        yield started


@pytest.fixture(scope="module")
def nitro_lab(tmp_path_factory):
    """A Nitro-style lab: attachments show up as /dev/nvmeNn1 + by-id links only."""
    with running_lab(f"baseline-nitro-{os.getpid()}", tmp_path_factory.mktemp("lab-nitro"), "nitro") as started:
        yield started


@pytest.fixture(scope="module")
def source_ami(lab: Lab) -> str:
    return lab.register_source_ami("partitioned")


@pytest.fixture
def workdir(tmp_path: Path):
    """The test's directory; anything still mounted below it is unmounted at the end."""
    yield tmp_path
    leftover = unmount_below(tmp_path)
    assert not leftover, f"packer left mounts behind below {tmp_path}: {leftover}"


def builder_common(lab: Lab, ami_name: str, filter_name: str) -> dict:
    return {
        "type": "amazon-chroot",
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "source_ami_filter": {"filters": {"name": filter_name}, "owners": ["self"], "most_recent": True},
        "ami_name": ami_name,
        "ena_support": True,
    }


def assert_build_succeeded(result: PackerResult) -> str:
    assert result.returncode == 0 and not result.timed_out, result.failure_report()
    log = result.log_path.read_text(errors="replace")
    # The builtin builder ran, not some plugin binary found on the way.
    assert '"/usr/bin/packer", "plugin", "packer-builder-amazon-chroot"' in log, result.failure_report()
    ids = result.artifact_ids()
    assert len(ids) == 1, f"unexpected artifact ids {ids}\n{result.failure_report()}"
    return next(iter(ids.values()))


def check_ami(lab: Lab, ami_id: str, ami_name: str, source_ami: str) -> str:
    """The registered AMI is what upstream registers from our source AMI.
    Returns its root snapshot id."""
    ec2 = lab.ec2()
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"]
    assert [i["ImageId"] for i in found] == [ami_id]
    image = found[0]
    source = ec2.describe_images(ImageIds=[source_ami])["Images"][0]
    source_snapshot = source["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert image["State"] == "available"
    assert image["RootDeviceName"] == "/dev/xvda"
    assert image["RootDeviceType"] == "ebs"
    assert image["VirtualizationType"] == "hvm"
    assert image["Architecture"] == "x86_64"
    assert image.get("EnaSupport") is True
    mappings = image["BlockDeviceMappings"]
    assert [m["DeviceName"] for m in mappings] == ["/dev/xvda"], mappings
    ebs = mappings[0]["Ebs"]
    # Upstream keeps the source mapping and swaps in the new snapshot.
    assert ebs["SnapshotId"] != source_snapshot
    assert ebs["VolumeSize"] == source["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
    assert ebs["DeleteOnTermination"] is True
    assert ebs.get("VolumeType") == "gp2"
    snapshot = ec2.describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"][0]
    assert snapshot["State"] == "completed"
    assert snapshot["Description"].startswith("Packer: "), snapshot["Description"]
    # The working volume (made from the source snapshot) was deleted.
    leftover = [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"] if v.get("SnapshotId") == source_snapshot]
    assert leftover == [], f"working volume(s) not deleted: {leftover}"
    return ebs["SnapshotId"]


def check_image_contents(root: Path, token: str, uploads: dict[str, str]) -> None:
    """What the provisioners wrote is inside the snapshot; resolv.conf is as upstream leaves it."""
    assert (root / "etc/lab-source-image").read_text().startswith("lab-source-image layout="), \
        "the AMI is not derived from the lab source image"
    assert (root / "etc/baseline-shell.txt").read_text().splitlines() == expected_shell_lines(token)
    assert (root / "opt/baseline/os-release.copy").read_text() == (root / "etc/os-release").read_text()
    for dest, content in uploads.items():
        assert (root / dest.lstrip("/")).read_text() == content, dest
    # During provisioning the chroot saw a regular file: upstream's copy_files
    # did `cp --remove-destination /etc/resolv.conf` over the symlink.
    assert (root / "opt/baseline/resolv-during-build").read_text().strip() == "file"
    # Upstream bug (hashicorp/packer#4698), kept here as the baseline: the
    # copy_files cleanup `rm -f`s the copy, so the AMI has NO /etc/resolv.conf
    # at all: neither the original symlink nor a file.
    assert not os.path.lexists(root / "etc/resolv.conf")
    # The shell provisioner's uploaded script was in /tmp while it ran ...
    assert any(n.startswith("script_") for n in (root / "opt/baseline/tmp-listing").read_text().split())
    # ... and upstream removed it afterwards.
    assert not [n for n in os.listdir(root / "tmp") if n.startswith("script_")]


def test_json_template_with_upstream_device_discovery(lab: Lab, source_ami: str, workdir: Path):
    token = uuid.uuid4().hex
    payload = f"file provisioner payload {token}\n"
    (workdir / "payload.txt").write_text(payload)
    ami_name = f"baseline-json-{token[:12]}"
    builder = builder_common(lab, ami_name, SOURCE_FILTER_NAME)
    write_json_template(workdir / "baseline.json", builder, [
        {"type": "shell", "environment_vars": [f"BASELINE_TOKEN={token}"], "inline": shell_inline(token)},
        {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"},
    ])

    calls_before = len(lab.calls())
    result = run_packer_once_more_on_device_collision(workdir / "baseline.json", workdir, lab.process_env(), True)

    ami_id = assert_build_succeeded(result)
    log = result.log_path.read_text(errors="replace")
    # Upstream's discovery chose a Xen name and its default mount root.
    device = re.search(r"plugin: Device: (/dev/xvd[a-z])\n", log)
    assert device, result.failure_report()
    assert f"{PACKER_DEFAULT_MOUNT_ROOT}/{os.path.basename(device.group(1))}" in log, result.failure_report()
    check_call_trace(lab.calls()[calls_before:], source_ami, lab, device.group(1))
    check_ami(lab, ami_id, ami_name, source_ami)
    clean, report = lab.leaks()
    assert clean, report
    with lab.mounted_ami(ami_id, workdir / "inspect") as root:
        check_image_contents(root, token, {"/root/payload.txt": payload})


def test_hcl2_template_with_device_path(lab: Lab, source_ami: str, workdir: Path):
    token = uuid.uuid4().hex
    payload = f"hcl2 file provisioner payload {token}\n"
    (workdir / "payload.txt").write_text(payload)
    (workdir / "tree/sub").mkdir(parents=True)
    (workdir / "tree/a.txt").write_text(f"a {token}\n")
    (workdir / "tree/sub/b.txt").write_text(f"b {token}\n")
    ami_name = f"baseline-hcl2-{token[:12]}"
    device = free_xen_device()
    mount_root = workdir / "chroot"
    inline = ",\n      ".join(hcl_string(line) for line in shell_inline(token))
    template = f"""
source "amazon-chroot" "baseline" {{
  region                 = {hcl_string(lab.region)}
  custom_endpoint_ec2    = {hcl_string(lab.ec2_endpoint)}
  ami_name               = {hcl_string(ami_name)}
  ena_support            = true
  device_path            = {hcl_string(device)}
  mount_path             = {hcl_string(str(mount_root) + "/{{.Device}}")}
  source_ami_filter {{
    filters     = {{ name = {hcl_string(SOURCE_FILTER_NAME)} }}
    owners      = ["self"]
    most_recent = true
  }}
}}

build {{
  sources = ["source.amazon-chroot.baseline"]

  provisioner "shell" {{
    environment_vars = [{hcl_string("BASELINE_TOKEN=" + token)}]
    inline = [
      {inline}
    ]
  }}

  provisioner "file" {{
    source      = "payload.txt"
    destination = "/root/payload.txt"
  }}

  provisioner "file" {{
    source      = "tree/"
    destination = "/opt/tree"
  }}
}}
"""
    (workdir / "baseline.pkr.hcl").write_text(template)

    calls_before = len(lab.calls())
    result = run_packer(workdir / "baseline.pkr.hcl", workdir, lab.process_env(), fake_sys_block=False)

    ami_id = assert_build_succeeded(result)
    check_call_trace(lab.calls()[calls_before:], source_ami, lab, device)
    log = result.log_path.read_text(errors="replace")
    assert f"{mount_root}/{os.path.basename(device)}" in log, result.failure_report()
    # Upstream unmounted everything it mounted, in the host namespace.
    assert not mounts_matching(str(mount_root)), mounts_matching(str(mount_root))
    check_ami(lab, ami_id, ami_name, source_ami)
    clean, report = lab.leaks()
    assert clean, report
    with lab.mounted_ami(ami_id, workdir / "inspect") as root:
        check_image_contents(root, token, {
            "/root/payload.txt": payload,
            "/opt/tree/a.txt": f"a {token}\n",
            "/opt/tree/sub/b.txt": f"b {token}\n",
        })
    shutil.rmtree(mount_root, ignore_errors=True)


def test_whole_device_source_with_mount_partition_zero(lab: Lab, workdir: Path):
    """Variant 2 of the source image: filesystem on the whole device."""
    whole_ami = lab.register_source_ami("whole")
    token = uuid.uuid4().hex
    payload = f"whole-device payload {token}\n"
    (workdir / "payload.txt").write_text(payload)
    ami_name = f"baseline-whole-{token[:12]}"
    builder = builder_common(lab, ami_name, WHOLE_FILTER_NAME)
    builder["mount_partition"] = "0"
    write_json_template(workdir / "whole.json", builder, [
        {"type": "shell", "environment_vars": [f"BASELINE_TOKEN={token}"], "inline": shell_inline(token)},
        {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"},
    ])

    result = run_packer_once_more_on_device_collision(workdir / "whole.json", workdir, lab.process_env(), True)

    ami_id = assert_build_succeeded(result)
    check_ami(lab, ami_id, ami_name, whole_ami)
    clean, report = lab.leaks()
    assert clean, report
    with lab.mounted_ami(ami_id, workdir / "inspect") as root:
        assert (root / "etc/lab-source-image").read_text().startswith("lab-source-image layout=whole")
        check_image_contents(root, token, {"/root/payload.txt": payload})


def test_failing_provisioner_cleans_up_and_registers_nothing(lab: Lab, source_ami: str, workdir: Path):
    """Upstream's cleanup path in the lab: a provisioner failure unmounts,
    detaches and deletes the working volume, and no AMI is registered. Runs in
    the host mount namespace (device_path) so the lab sees Packer's mounts."""
    token = uuid.uuid4().hex
    ami_name = f"baseline-fail-{token[:12]}"
    mount_root = workdir / "chroot"
    builder = builder_common(lab, ami_name, SOURCE_FILTER_NAME)
    builder["device_path"] = free_xen_device()
    builder["mount_path"] = str(mount_root) + "/{{.Device}}"
    write_json_template(workdir / "fail.json", builder, [
        {"type": "shell", "inline": ["echo partial > /etc/partial.txt", "exit 7"]},
    ])

    result = run_packer(workdir / "fail.json", workdir, lab.process_env(), fake_sys_block=False)

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    assert "Script exited with non-zero exit status: 7" in result.stdout, result.failure_report()
    assert result.artifact_ids() == {}
    # Upstream's step cleanups ran in reverse order.
    said = [line.split("==> amazon-chroot: ", 1)[1] for line in result.stdout.splitlines()
            if "ui,say,==> amazon-chroot: " in line]
    tail = said[said.index("Unmounting the root device..."):] if "Unmounting the root device..." in said else said
    assert tail == ["Unmounting the root device...", "Detaching EBS volume...", "Deleting the created EBS volume..."], \
        result.failure_report()
    assert not mounts_matching(str(mount_root))
    ec2 = lab.ec2()
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"] == []
    source_snapshot = ec2.describe_images(ImageIds=[source_ami])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"] if v.get("SnapshotId") == source_snapshot] == []
    clean, report = lab.leaks()
    assert clean, report


def test_nitro_host_needs_nvme_device_path_upstream(nitro_lab: Lab, workdir: Path):
    """On a Nitro-style host the requested /dev/sdX never appears. Upstream's
    only way through is device_path (for the API) plus nvme_device_path (the
    NVMe name, which must be guessed before attaching); with those it builds."""
    source = nitro_lab.register_source_ami("partitioned")
    token = uuid.uuid4().hex
    payload = f"nitro payload {token}\n"
    (workdir / "payload.txt").write_text(payload)
    ami_name = f"baseline-nitro-{token[:12]}"
    nvme_disk = next_nvme_disk()
    builder = builder_common(nitro_lab, ami_name, SOURCE_FILTER_NAME)
    builder["device_path"] = "/dev/sdf"
    builder["nvme_device_path"] = nvme_disk + "p"
    builder["mount_path"] = str(workdir / "chroot") + "/{{.Device}}"
    write_json_template(workdir / "nitro.json", builder, [
        {"type": "shell", "environment_vars": [f"BASELINE_TOKEN={token}"], "inline": shell_inline(token)},
        {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"},
    ])

    result = run_packer(workdir / "nitro.json", workdir, nitro_lab.process_env(), fake_sys_block=False)

    ami_id = assert_build_succeeded(result)
    log = result.log_path.read_text(errors="replace")
    assert f"mount  {nvme_disk}p1 " in log, result.failure_report()
    check_ami(nitro_lab, ami_id, ami_name, source)
    clean, report = nitro_lab.leaks()
    assert clean, report
    with nitro_lab.mounted_ami(ami_id, workdir / "inspect") as root:
        check_image_contents(root, token, {"/root/payload.txt": payload})


def test_build_past_its_deadline_is_interrupted_and_leaves_nothing(lab: Lab, source_ami: str, workdir: Path):
    """The harness's own guarantee: a hanging build is interrupted at its
    deadline (SIGINT to Packer's process group, so the chrooted command dies
    too), upstream's cleanup runs, and the lab is left clean."""
    token = uuid.uuid4().hex
    ami_name = f"baseline-hang-{token[:12]}"
    mount_root = workdir / "chroot"
    builder = builder_common(lab, ami_name, SOURCE_FILTER_NAME)
    builder["device_path"] = free_xen_device()
    builder["mount_path"] = str(mount_root) + "/{{.Device}}"
    write_json_template(workdir / "hang.json", builder, [
        {"type": "shell", "inline": ["echo started > /etc/hang-started", "sleep 600"]},
    ])

    started = time.monotonic()
    result = run_packer(workdir / "hang.json", workdir, lab.process_env(), fake_sys_block=False, timeout=20)

    assert result.timed_out
    assert time.monotonic() - started < 20 + PACKER_CANCEL_GRACE
    assert result.returncode != 0
    assert result.artifact_ids() == {}
    assert not mounts_matching(str(mount_root))
    ec2 = lab.ec2()
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"] == []
    clean, report = lab.leaks()
    assert clean, f"{report}\n{result.failure_report()}"
