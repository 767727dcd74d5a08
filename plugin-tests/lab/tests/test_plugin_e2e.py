"""End to end: Debian's packer 1.6.6 drives OUR plugin through full builds
in the EC2 lab (see plugin_e2e_support.py for how it is installed and run).

Each build is checked where it matters: the AMI in the EC2 API, its snapshot
mounted (what the provisioners wrote, /etc/resolv.conf exactly as in the
source), and the lab's leak report (no volume, snapshot or AMI of a failed
build; no mount, loop device, device node or held lock) after success,
failure and Ctrl-C.

Run by `cargo test --test e2e_lab` (tests/e2e_lab.rs), which passes the
plugin binary in PLUGIN_BIN.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from baseline_support import (
    PACKER,
    PACKER_CANCEL_GRACE,
    Lab,
    PackerResult,
    hcl_string,
    labctl,
    mounts_matching,
    run_packer,
    write_json_template,
)
from plugin_e2e_support import (  # noqa: F401  (fixtures are used by name)
    PLUGIN_NAME,
    PLUGIN_TYPE,
    SOURCE_FILTER_NAME,
    assert_clean,
    assert_our_plugin_built,
    check_ami,
    check_resolv_conf_intact,
    images_named,
    json_builder,
    lab,
    lab_client,
    lab_faults,
    own_snapshots,
    own_snapshots_by_region,
    running_lab,
    says,
    source_ami,
    workdir,
)


def test_hcl2_build_with_shell_file_and_shell_local(lab: Lab, source_ami: str, workdir: Path):
    token = uuid.uuid4().hex
    ami_name = f"e2e-hcl2-{token[:12]}"
    big = workdir / "big.bin"
    with open(big, "wb") as f:
        f.writelines(bytes([i]) * (1024 * 1024) for i in range(50))
    (workdir / "tree/sub").mkdir(parents=True)
    (workdir / "tree/a.txt").write_text(f"a {token}\n")
    (workdir / "tree/sub/b.txt").write_text(f"b {token}\n")
    (workdir / "script.sh").write_text("#!/bin/sh\nset -e\necho \"script $E2E_TOKEN\" > /etc/e2e-script.txt\n")
    template = f"""
source "{PLUGIN_TYPE}" "e2e" {{
  region                 = {hcl_string(lab.region)}
  custom_endpoint_ec2    = {hcl_string(lab.ec2_endpoint)}
  skip_region_validation = true
  ami_name               = {hcl_string(ami_name)}
  source_ami_filter {{
    filters     = {{ name = {hcl_string(SOURCE_FILTER_NAME)} }}
    owners      = ["self"]
    most_recent = true
  }}
}}

build {{
  sources = ["source.{PLUGIN_TYPE}.e2e"]

  provisioner "shell" {{
    environment_vars = [{hcl_string("E2E_TOKEN=" + token)}, "E2E_DEVICE=${{build.Device}}", "E2E_MOUNT=${{build.MountPath}}"]
    inline = [
      "set -e",
      "echo inline-ran > /etc/e2e-inline.txt",
      "echo token=$E2E_TOKEN >> /etc/e2e-inline.txt",
      "echo device=$E2E_DEVICE >> /etc/e2e-inline.txt",
      "echo mount=$E2E_MOUNT >> /etc/e2e-inline.txt",
      "if [ -L /etc/resolv.conf ]; then echo symlink; elif [ -f /etc/resolv.conf ]; then echo file; else echo absent; fi > /etc/e2e-resolv-during-build",
      "sleep 1000 > /dev/null 2>&1 &",
    ]
  }}

  provisioner "shell" {{
    environment_vars = [{hcl_string("E2E_TOKEN=" + token)}]
    script = "script.sh"
  }}

  provisioner "file" {{
    source      = "big.bin"
    destination = "/root/big.bin"
  }}

  provisioner "file" {{
    source      = "tree/"
    destination = "/opt/tree"
  }}

  provisioner "file" {{
    direction   = "download"
    source      = "/etc/e2e-inline.txt"
    destination = "downloaded.txt"
  }}

  provisioner "shell-local" {{
    inline = ["echo local-ran > local.txt"]
  }}
}}
"""
    (workdir / "e2e.pkr.hcl").write_text(template)

    result = run_packer(workdir / "e2e.pkr.hcl", workdir, lab.process_env(), fake_sys_block=False)

    ami_id = assert_our_plugin_built(result)
    said = says(result)
    assert any(s.startswith("Creating the root volume") for s in said), said
    assert any(s.startswith("Registering the AMI") for s in said), said
    assert any(s.startswith("Build finished in ") and s.endswith(f"AMIs: {lab.region}: {ami_id}") for s in said), said
    assert not mounts_matching("/mnt/packer-amazon-chroot-volumes/"), "mounts left behind"
    # The provisioner's background `sleep` kept the chroot busy: it was named and ended.
    terminated = [line for line in result.stdout.splitlines() if "Terminated processes still running" in line]
    assert terminated and "sleep" in terminated[0], result.failure_report()
    check_ami(lab, ami_id, ami_name, source_ami)
    assert_clean(lab, result)
    assert (workdir / "local.txt").read_text() == "local-ran\n"
    downloaded = (workdir / "downloaded.txt").read_text().splitlines()
    assert downloaded[:2] == ["inline-ran", f"token={token}"]
    device = downloaded[2].split("=", 1)[1]
    mount = downloaded[3].split("=", 1)[1]
    assert device.startswith("/dev/xvd"), downloaded
    assert mount == f"/mnt/packer-amazon-chroot-volumes/{os.path.basename(device)}", downloaded
    with lab.mounted_ami(ami_id, workdir / "inspect") as root:
        assert (root / "etc/lab-source-image").read_text().startswith("lab-source-image layout=")
        assert (root / "etc/e2e-inline.txt").read_text().splitlines()[:2] == ["inline-ran", f"token={token}"]
        assert (root / "etc/e2e-script.txt").read_text() == f"script {token}\n"
        # During provisioning the chroot saw the host's resolv.conf (a file) ...
        assert (root / "etc/e2e-resolv-during-build").read_text().strip() == "file"
        # ... and the image has its own symlink back, exactly.
        check_resolv_conf_intact(root)
        assert (root / "root/big.bin").stat().st_size == 50 * 1024 * 1024
        with open(root / "root/big.bin", "rb") as f:
            f.seek(49 * 1024 * 1024)
            assert f.read(4) == bytes([49]) * 4
        assert (root / "opt/tree/a.txt").read_text() == f"a {token}\n"
        assert (root / "opt/tree/sub/b.txt").read_text() == f"b {token}\n"


def test_json_build_with_tags_description_and_permissions(lab: Lab, source_ami: str, workdir: Path):
    token = uuid.uuid4().hex
    ami_name = f"e2e-json-{token[:12]}"
    escape_name = f"e2e-escape-{token[:12]}"
    payload = f"json payload {token}\n"
    (workdir / "payload.txt").write_text(payload)
    builder = {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "skip_region_validation": True,
        "source_ami": source_ami,
        "ami_name": ami_name,
        "ami_description": "built from {{ .SourceAMI }} in {{ .BuildRegion }}",
        "ami_users": ["123456789012"],
        "root_volume_size": 2,
        "tags": {"Name": "e2e {{ .SourceAMIName }}", "Token": token},
        "snapshot_tags": {"Kind": "root snapshot"},
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
        # Every host command, the chroot's included, goes through the wrapper.
        "command_wrapper": "env E2E_WRAPPED=yes {{.Command}}",
        # Single quotes: $E2E_WRAPPED is expanded by the wrapped shell, not the outer one.
        "pre_mount_commands": [f"sh -c 'echo pre {{{{.Device}}}} $E2E_WRAPPED' > {workdir}/pre-mount.txt"],
        "post_mount_commands": ["echo \"post {{.Device}} {{.MountPath}}\" > {{.MountPath}}/etc/e2e-post-mount.txt"],
    }
    write_json_template(workdir / "e2e.json", builder, [
        {"type": "shell", "inline": ["echo json-ran > /etc/e2e-json.txt", "echo \"wrapped=$E2E_WRAPPED\" > /etc/e2e-wrapped.txt"]},
        {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"},
        # A directory of the image that is an absolute symlink to /etc: the
        # upload lands in the image's /etc, never the host's.
        {"type": "shell", "inline": ["mkdir -p /opt && ln -s /etc /opt/etc-link"]},
        {"type": "file", "source": "payload.txt", "destination": f"/opt/etc-link/{escape_name}-symlink"},
    ])

    result = run_packer(workdir / "e2e.json", workdir, lab.process_env(), fake_sys_block=False)

    ami_id = assert_our_plugin_built(result)
    image = check_ami(lab, ami_id, ami_name, source_ami)
    assert_clean(lab, result)
    assert image.get("Description") == f"built from {source_ami} in {lab.region}"
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    source_name = lab.ec2().describe_images(ImageIds=[source_ami])["Images"][0]["Name"]
    assert tags == {"Name": f"e2e {source_name}", "Token": token}
    ebs = image["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["VolumeSize"] == 2
    snapshot = lab.ec2().describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"][0]
    snap_tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}
    assert snap_tags.get("Kind") == "root snapshot" and snap_tags.get("Token") == token, snap_tags
    perms = lab.ec2().describe_image_attribute(ImageId=ami_id, Attribute="launchPermission")["LaunchPermissions"]
    assert {"UserId": "123456789012"} in perms, perms
    with lab.mounted_ami(ami_id, workdir / "inspect") as root:
        assert (root / "etc/e2e-json.txt").read_text() == "json-ran\n"
        assert (root / "etc/e2e-wrapped.txt").read_text() == "wrapped=yes\n"
        assert (root / f"etc/{escape_name}-symlink").read_text() == payload
        post = (root / "etc/e2e-post-mount.txt").read_text().split()
        assert post[0] == "post" and post[1].startswith("/dev/xvd"), post
        assert post[2] == f"{workdir}/chroot/{os.path.basename(post[1])}", post
        assert (workdir / "pre-mount.txt").read_text() == f"pre {post[1]} yes\n"
        assert (root / "root/payload.txt").read_text() == payload
        check_resolv_conf_intact(root)
    assert not glob.glob(f"/etc/{escape_name}*"), "an upload escaped the chroot onto the host"


def test_upload_through_dotdot_is_refused_and_the_host_is_untouched(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-escape-{uuid.uuid4().hex[:12]}"
    target = f"{ami_name}-dotdot"
    (workdir / "payload.txt").write_text("must not reach the host\n")
    write_json_template(workdir / "escape.json", cancel_builder(lab, source_ami, workdir, ami_name), [
        {"type": "file", "source": "payload.txt", "destination": f"../../../../../../etc/{target}"},
    ])

    result = run_packer(workdir / "escape.json", workdir, lab.process_env(), fake_sys_block=False)

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    assert "leaves the chroot" in result.stdout, result.failure_report()
    assert not os.path.lexists(f"/etc/{target}"), "the upload escaped the chroot onto the host"
    assert_clean(lab, result)


def test_failing_provisioner_leaves_nothing_and_runs_the_error_cleanup_provisioner(
        lab: Lab, source_ami: str, workdir: Path):
    token = uuid.uuid4().hex
    ami_name = f"e2e-fail-{token[:12]}"
    mount_root = workdir / "chroot"
    builder = {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "skip_region_validation": True,
        "source_ami": source_ami,
        "ami_name": ami_name,
        "mount_path": str(mount_root) + "/{{.Device}}",
    }
    template = {
        "builders": [builder],
        "provisioners": [
            # A background process left running must not make the cleanup fail.
            {"type": "shell", "inline": ["sleep 1000 >/dev/null 2>&1 &", "echo partial > /etc/partial.txt", "exit 7"]},
        ],
        "error-cleanup-provisioner": {"type": "shell-local", "inline": ["echo cleanup-ran > error-cleanup.txt"]},
    }
    (workdir / "fail.json").write_text(json.dumps(template, indent=2))

    result = run_packer(workdir / "fail.json", workdir, lab.process_env(), fake_sys_block=False)

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    assert "Script exited with non-zero exit status: 7" in result.stdout, result.failure_report()
    assert result.artifact_ids() == {}
    assert (workdir / "error-cleanup.txt").read_text() == "cleanup-ran\n", result.failure_report()
    said = says(result)
    assert "Unmounting the root device..." in said and "Deleting the created EBS volume..." in said, said
    assert not mounts_matching(str(mount_root))
    assert not [p for p in glob.glob(str(mount_root) + "/*")], "mount directory left behind"
    ec2 = lab.ec2()
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"] == []
    assert_clean(lab, result)


def build_and_interrupt(lab: Lab, workdir: Path, template: str, started) -> PackerResult:
    """Run `packer build template`, and once `started()` is true send SIGINT
    to Packer's whole process group, as a terminal's Ctrl-C does."""
    env = lab.process_env(PACKER_LOG="1", PACKER_LOG_PATH=str(workdir / "packer.log"), CHECKPOINT_DISABLE="1",
                          HOME=str(workdir), PACKER_CACHE_DIR=str(workdir / "cache"), TMPDIR=str(workdir),
                          AWS_POLL_DELAY_SECONDS="1", AWS_MAX_ATTEMPTS="120")
    proc = subprocess.Popen([PACKER, "build", "-color=false", "-machine-readable", template], cwd=workdir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not started():
            assert proc.poll() is None, f"packer ended before the interrupt point: {proc.stdout.read()}"
            assert time.monotonic() < deadline, "the interrupt point was never reached"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=PACKER_CANCEL_GRACE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return PackerResult(proc.returncode, out, workdir / "packer.log", False)


def cancel_builder(lab: Lab, source_ami: str, workdir: Path, ami_name: str) -> dict:
    return {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "skip_region_validation": True,
        "source_ami": source_ami,
        "ami_name": ami_name,
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
    }


def assert_cancelled_cleanly(lab: Lab, workdir: Path, ami_name: str, result: PackerResult,
                             snapshots_before: set[str]) -> None:
    assert result.returncode != 0, result.failure_report()
    assert result.artifact_ids() == {}
    assert not mounts_matching(str(workdir / "chroot")), result.failure_report()
    ec2 = lab.ec2()
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"] == []
    assert own_snapshots(lab) == snapshots_before, "the build's snapshot was left behind"
    assert_clean(lab, result)


def test_ctrl_c_mid_provisioning_leaves_nothing(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-cancel-{uuid.uuid4().hex[:12]}"
    write_json_template(workdir / "hang.json", cancel_builder(lab, source_ami, workdir, ami_name), [
        {"type": "shell", "inline": ["echo started > /etc/hang-started", "sleep 600"]},
    ])
    snapshots_before = own_snapshots(lab)

    result = build_and_interrupt(lab, workdir, "hang.json",
                                 lambda: glob.glob(str(workdir / "chroot") + "/*/etc/hang-started"))

    assert_cancelled_cleanly(lab, workdir, ami_name, result, snapshots_before)
    # Nothing runs in the chroot any more.
    assert not subprocess.run(["pgrep", "-f", "sleep 600"], check=False, capture_output=True).stdout.strip()


def test_ctrl_c_while_the_snapshot_is_pending_deletes_snapshot_and_volume(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-cancel-snap-{uuid.uuid4().hex[:12]}"
    write_json_template(workdir / "snap.json", cancel_builder(lab, source_ami, workdir, ami_name),
                        [{"type": "shell", "inline": ["true"]}])
    snapshots_before = own_snapshots(lab)
    log = workdir / "packer.log"
    with lab_faults(lab):
        labctl("fault", "--name", lab.name, "timings", "snapshot=60")
        result = build_and_interrupt(lab, workdir, "snap.json",
                                     lambda: log.exists() and "Snapshot ID:" in log.read_text(errors="replace"))

    assert "Removing snapshot" in result.stdout, result.failure_report()
    assert_cancelled_cleanly(lab, workdir, ami_name, result, snapshots_before)


@pytest.fixture(scope="module")
def nitro_lab(tmp_path_factory):
    with running_lab(f"e2e-nitro-{os.getpid()}", tmp_path_factory.mktemp("lab-nitro"), "nitro") as started:
        yield started


def test_nitro_host_finds_the_volume_by_id_without_nvme_device_path(nitro_lab: Lab, workdir: Path):
    source = nitro_lab.register_source_ami("partitioned")
    token = uuid.uuid4().hex
    ami_name = f"e2e-nitro-{token[:12]}"
    builder = {
        "type": PLUGIN_TYPE,
        "custom_endpoint_ec2": nitro_lab.ec2_endpoint,
        "skip_region_validation": True,
        "source_ami": source,
        "ami_name": ami_name,
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
    }
    write_json_template(workdir / "nitro.json", builder, [
        {"type": "shell", "inline": [f"echo nitro {token} > /etc/e2e-nitro.txt"]},
    ])

    # No region anywhere (template, environment, profile): it comes from this
    # instance's identity document (upstream dropped that fallback in 2019).
    env = nitro_lab.process_env()
    env.pop("AWS_REGION", None)
    env.pop("AWS_DEFAULT_REGION", None)

    result = run_packer(workdir / "nitro.json", workdir, env, fake_sys_block=False)

    ami_id = assert_our_plugin_built(result)
    log = result.log_path.read_text(errors="replace")
    assert f"using AWS region {nitro_lab.region} (from this instance's metadata)" in log, result.failure_report()
    assert "by=ById" in log, result.failure_report()
    check_ami(nitro_lab, ami_id, ami_name, source)
    assert_clean(nitro_lab, result)
    with nitro_lab.mounted_ami(ami_id, workdir / "inspect") as root:
        assert (root / "etc/e2e-nitro.txt").read_text() == f"nitro {token}\n"
        check_resolv_conf_intact(root)


def test_failure_after_registration_deregisters_the_ami_and_deletes_its_snapshot(
        lab: Lab, source_ami: str, workdir: Path):
    """Upstream leaks an AMI registered before a later step fails; ours removes
    it and its snapshot. The lab makes CreateTags (after RegisterImage) fail."""
    token = uuid.uuid4().hex
    ami_name = f"e2e-late-fail-{token[:12]}"
    builder = {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "skip_region_validation": True,
        "source_ami": source_ami,
        "ami_name": ami_name,
        "tags": {"Token": token},
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
    }
    write_json_template(workdir / "late.json", builder, [{"type": "shell", "inline": ["true"]}])
    snapshots_before = own_snapshots(lab)
    labctl("fault", "--name", lab.name, "fail", "CreateTags", "--code", "InternalError", "--times", "0")
    try:
        result = run_packer(workdir / "late.json", workdir, lab.process_env(), fake_sys_block=False)
    finally:
        labctl("fault", "--name", lab.name, "reset")

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    assert "CreateTags" in result.stdout, result.failure_report()
    said = says(result)
    assert any(s.startswith("Registering the AMI") for s in said), said
    assert any(s.startswith("Deregistering the AMI") for s in said), said
    ec2 = lab.ec2()
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"] == []
    assert own_snapshots(lab) == snapshots_before, "the build's snapshot was left behind"
    assert_clean(lab, result)


def test_region_copy_encryption_deprecation_protection_and_force_deregister(
        lab: Lab, source_ami: str, workdir: Path):
    token = uuid.uuid4().hex
    ami_name = f"e2e-options-{token[:12]}"
    deprecate_year = time.gmtime().tm_year + 1
    deprecate_at = f"{deprecate_year}-01-01T00:00:00Z"
    copy_region = "us-west-2"
    builder = {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "ami_name": ami_name,
        "source_ami": source_ami,
        "ami_regions": [copy_region],
        "root_volume_encrypt_boot": True,
        "deprecate_at": deprecate_at,
        "deregistration_protection": {"enabled": True},
        "tags": {"Token": token},
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
    }
    write_json_template(workdir / "options.json", builder, [{"type": "shell", "inline": ["echo one > /etc/build-number"]}])

    result = run_packer(workdir / "options.json", workdir, lab.process_env(), fake_sys_block=False)

    assert result.returncode == 0 and not result.timed_out, result.failure_report()
    ids = result.artifact_ids()
    assert set(ids) == {lab.region, copy_region}, ids
    assert_clean(lab, result)
    for region, ami in ids.items():
        ec2 = lab.ec2() if region == lab.region else lab_client(lab, region)
        image = ec2.describe_images(ImageIds=[ami])["Images"][0]
        assert image["Name"] == ami_name
        assert image.get("DeprecationTime", "").startswith(f"{deprecate_year}-01-01"), image
        assert {t["Key"]: t["Value"] for t in image.get("Tags", [])}.get("Token") == token, (region, image)
        ebs = image["BlockDeviceMappings"][0]["Ebs"]
        snapshot = ec2.describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"][0]
        assert snapshot["Encrypted"] is True, (region, snapshot)
        protection = ec2.describe_image_attribute(ImageId=ami, Attribute="deregistrationProtection")
        assert protection["DeregistrationProtection"]["Value"] == "enabled", protection

    # Same name again with -force semantics: the old AMIs (protection lifted
    # first by the user) are deregistered and their snapshots deleted.
    old_snapshots = {}
    for region, ami in ids.items():
        ec2 = lab.ec2() if region == lab.region else lab_client(lab, region)
        ec2.disable_image_deregistration_protection(ImageId=ami)
        old_snapshots[region] = ec2.describe_images(ImageIds=[ami])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    builder.update({"force_deregister": True, "force_delete_snapshot": True})
    builder.pop("deregistration_protection")
    write_json_template(workdir / "again.json", builder, [{"type": "shell", "inline": ["echo two > /etc/build-number"]}])

    again = run_packer(workdir / "again.json", workdir, lab.process_env(), fake_sys_block=False)

    assert again.returncode == 0 and not again.timed_out, again.failure_report()
    new_ids = again.artifact_ids()
    assert set(new_ids) == {lab.region, copy_region}, new_ids
    assert_clean(lab, again)
    for region, ami in new_ids.items():
        ec2 = lab.ec2() if region == lab.region else lab_client(lab, region)
        named = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"]
        assert [i["ImageId"] for i in named] == [ami], (region, named)
        assert ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [old_snapshots[region]]}])["Snapshots"] == []
    with lab.mounted_ami(new_ids[lab.region], workdir / "inspect") as root:
        assert (root / "etc/build-number").read_text() == "two\n"
        check_resolv_conf_intact(root)


@pytest.fixture
def source_ami_without_ena(lab: Lab, source_ami: str):
    """The lab source's root snapshot registered without ENA (the lab source
    has it), so an image with ENA proves that ena_support set it."""
    ec2 = lab.ec2()
    source = ec2.describe_images(ImageIds=[source_ami])["Images"][0]
    root = source["BlockDeviceMappings"][0]
    image_id = ec2.register_image(
        Name=f"e2e-source-no-ena-{uuid.uuid4().hex[:12]}",
        Architecture=source["Architecture"],
        VirtualizationType="hvm",
        RootDeviceName=source["RootDeviceName"],
        BlockDeviceMappings=[{"DeviceName": root["DeviceName"], "Ebs": {
            "SnapshotId": root["Ebs"]["SnapshotId"], "VolumeSize": root["Ebs"]["VolumeSize"],
            "VolumeType": "gp2", "DeleteOnTermination": True}}],
    )["ImageId"]
    try:
        ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        assert not ec2.describe_images(ImageIds=[image_id])["Images"][0].get("EnaSupport")
        yield image_id
    finally:
        ec2.deregister_image(ImageId=image_id)


def test_sharing_product_codes_imds_uefi_and_networking_options_reach_the_image(
        lab: Lab, source_ami_without_ena: str, workdir: Path):
    """One build with every option that changes the AMI's or its snapshot's
    attributes and is not checked elsewhere; each is read back from EC2."""
    source_ami = source_ami_without_ena
    token = uuid.uuid4().hex
    ami_name = f"e2e-attrs-{token[:12]}"
    org_arn = "arn:aws:organizations::123456789012:organization/o-abcdefghij"
    ou_arn = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-cdefgh34"
    product_code = "abcdefghijklmnopqrstuvwxy"
    uefi_data = "QU1aTlVFRkkAAAAAbGFiIHVlZmkgdmFyaWFibGUgc3RvcmU="
    builder = {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "source_ami": source_ami,
        "ami_name": ami_name,
        "ami_groups": ["all"],
        "ami_org_arns": [org_arn],
        "ami_ou_arns": [ou_arn],
        "ami_product_codes": [product_code],
        "snapshot_users": ["123456789012"],
        "snapshot_groups": ["all"],
        "imds_support": "v2.0",
        # A valid combination: TPM needs a UEFI boot mode, uefi_data too.
        "boot_mode": "uefi",
        "tpm_support": "v2.0",
        "uefi_data": uefi_data,
        "sriov_support": True,
        "ena_support": True,
        "tags": {"Token": token},
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
    }
    write_json_template(workdir / "attrs.json", builder, [{"type": "shell", "inline": ["echo attrs > /etc/e2e-attrs.txt"]}])

    result = run_packer(workdir / "attrs.json", workdir, lab.process_env(), fake_sys_block=False)

    ami_id = assert_our_plugin_built(result)
    assert_clean(lab, result)
    ec2 = lab.ec2()
    image = ec2.describe_images(ImageIds=[ami_id])["Images"][0]
    assert image["Name"] == ami_name and image["State"] == "available", image
    assert image.get("ImdsSupport") == "v2.0", image
    assert image.get("BootMode") == "uefi", image
    assert image.get("TpmSupport") == "v2.0", image
    assert image.get("SriovNetSupport") == "simple", image
    assert image.get("EnaSupport") is True, image
    assert image.get("ProductCodes") == [{"ProductCodeId": product_code, "ProductCodeType": "marketplace"}], image

    def attribute(name: str) -> dict:
        return ec2.describe_image_attribute(ImageId=ami_id, Attribute=name)

    perms = attribute("launchPermission")["LaunchPermissions"]
    for perm in ({"Group": "all"}, {"OrganizationArn": org_arn}, {"OrganizationalUnitArn": ou_arn}):
        assert perm in perms, perms
    assert not [p for p in perms if "UserId" in p], perms
    assert attribute("productCodes")["ProductCodes"] == [
        {"ProductCodeId": product_code, "ProductCodeType": "marketplace"}]
    assert attribute("imdsSupport")["ImdsSupport"] == {"Value": "v2.0"}
    assert attribute("bootMode")["BootMode"] == {"Value": "uefi"}
    assert attribute("tpmSupport")["TpmSupport"] == {"Value": "v2.0"}
    assert attribute("uefiData")["UefiData"] == {"Value": uefi_data}
    assert attribute("sriovNetSupport")["SriovNetSupport"] == {"Value": "simple"}

    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    volume_perms = ec2.describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission")["CreateVolumePermissions"]
    assert sorted(volume_perms, key=json.dumps) == sorted(
        [{"UserId": "123456789012"}, {"Group": "all"}], key=json.dumps), volume_perms


def test_unreachable_imds_fails_with_the_real_cause_and_creates_nothing(lab: Lab, source_ami: str, workdir: Path):
    """Upstream printed only "Error retrieving the ID of the instance..." and
    dropped why; ours names the endpoint and the cause."""
    builder = {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "skip_region_validation": True,
        "source_ami": source_ami,
        "ami_name": f"e2e-noimds-{uuid.uuid4().hex[:12]}",
    }
    write_json_template(workdir / "noimds.json", builder, [{"type": "shell", "inline": ["true"]}])
    labctl("fault", "--name", lab.name, "imds", "off")
    try:
        result = run_packer(workdir / "noimds.json", workdir, lab.process_env(), fake_sys_block=False, timeout=180)
    finally:
        labctl("fault", "--name", lab.name, "imds", "on")

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    errors = [line for line in result.stdout.splitlines() if ",error," in line]
    text = "\n".join(errors)
    assert "Error retrieving the ID of the instance Packer is running on" in text, result.failure_report()
    imds_endpoint = lab.env["LAB_IMDS_ENDPOINT"]
    assert imds_endpoint.split("//", 1)[1] in text, text
    assert "refused" in text.lower() or "connect" in text.lower(), text
    assert not any("Creating the root volume" in s for s in says(result))
    assert_clean(lab, result)


def test_two_builds_in_parallel_on_one_host_use_different_devices(lab: Lab, source_ami: str, workdir: Path):
    """Upstream's parallel builds collided ("Attachment point /dev/sdf is
    already in use"); the device lock is held until the attached volume is
    visible and free letters are checked in EC2 too."""
    token = uuid.uuid4().hex[:12]
    sources = []
    for n in ("one", "two"):
        sources.append(f"""
source "{PLUGIN_TYPE}" "{n}" {{
  region                 = {hcl_string(lab.region)}
  custom_endpoint_ec2    = {hcl_string(lab.ec2_endpoint)}
  skip_region_validation = true
  source_ami             = {hcl_string(source_ami)}
  ami_name               = {hcl_string(f"e2e-parallel-{n}-{token}")}
  mount_path             = {hcl_string(str(workdir / "chroot") + "/{{.Device}}")}
}}
""")
    template = "\n".join(sources) + f"""
build {{
  sources = ["source.{PLUGIN_TYPE}.one", "source.{PLUGIN_TYPE}.two"]
  provisioner "shell" {{
    inline = ["echo ${{source.name}} > /etc/e2e-parallel.txt", "sleep 2"]
  }}
}}
"""
    (workdir / "parallel.pkr.hcl").write_text(template)

    result = run_packer(workdir / "parallel.pkr.hcl", workdir, lab.process_env(), fake_sys_block=False)

    assert result.returncode == 0 and not result.timed_out, result.failure_report()
    devices = sorted({line.split("Device: ", 1)[1].split()[0] for line in result.stdout.splitlines() if "Device: /dev/" in line})
    assert len(devices) == 2, (devices, result.failure_report())
    ec2 = lab.ec2()
    for n in ("one", "two"):
        images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [f"e2e-parallel-{n}-{token}"]}])["Images"]
        assert len(images) == 1, (n, images)
        with lab.mounted_ami(images[0]["ImageId"], workdir / f"inspect-{n}") as root:
            assert (root / "etc/e2e-parallel.txt").read_text() == f"{n}\n"
    assert_clean(lab, result)


ROOT_MAPPING = {"device_name": "/dev/xvda", "volume_type": "gp3", "delete_on_termination": True}


def scratch_builder(lab: Lab, workdir: Path, ami_name: str, **options) -> dict:
    """A from_scratch build: a 1 GiB volume formatted by pre_mount_commands
    and given busybox as its shell by post_mount_commands."""
    return json_builder(lab, workdir, ami_name, **{
        "from_scratch": True,
        "root_volume_size": 1,
        "root_device_name": "/dev/xvda",
        "ami_virtualization_type": "hvm",
        "mount_partition": "0",
        "pre_mount_commands": ["mkfs.ext4 -q -F {{.Device}}"],
        "post_mount_commands": [
            "mkdir -p {{.MountPath}}/bin {{.MountPath}}/etc {{.MountPath}}/tmp",
            "cp /bin/busybox {{.MountPath}}/bin/busybox",
            "ln -s busybox {{.MountPath}}/bin/sh",
        ],
        "ami_block_device_mappings": [ROOT_MAPPING],
        **options,
    })


def test_from_scratch_build_registers_the_template_mappings(lab: Lab, workdir: Path):
    """An empty volume, formatted by pre_mount_commands, given a shell by
    post_mount_commands, provisioned and registered with the template's
    mappings (no source AMI at all)."""
    token = uuid.uuid4().hex[:12]
    ami_name = f"e2e-scratch-{token}"
    builder = scratch_builder(lab, workdir, ami_name)
    write_json_template(workdir / "scratch.json", builder, [
        {"type": "shell", "inline": [f"echo scratch {token} > /etc/e2e-scratch.txt"]},
    ])

    result = run_packer(workdir / "scratch.json", workdir, lab.process_env(), fake_sys_block=False)

    ami_id = assert_our_plugin_built(result)
    image = lab.ec2().describe_images(ImageIds=[ami_id])["Images"][0]
    assert image["RootDeviceName"] == "/dev/xvda"
    assert image["Architecture"] == "x86_64"
    ebs = image["BlockDeviceMappings"][0]["Ebs"]
    assert (ebs["VolumeSize"], ebs["VolumeType"], ebs["DeleteOnTermination"]) == (1, "gp3", True), ebs
    assert_clean(lab, result)
    with lab.mounted_ami(ami_id, workdir / "inspect") as root:
        assert (root / "etc/e2e-scratch.txt").read_text() == f"scratch {token}\n"


def test_from_scratch_arm64_encrypted_with_extra_mappings(lab: Lab, workdir: Path):
    """from_scratch honours the root volume's encryption options, the
    architecture and every kind of extra mapping (EBS, instance store, none)."""
    token = uuid.uuid4().hex[:12]
    ami_name = f"e2e-scratch-arm-{token}"
    kms = lab_client(lab, lab.region, "kms")
    key = kms.create_key(Description=f"e2e scratch {token}")["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/e2e-scratch-{token}", TargetKeyId=key["KeyId"])
    builder = scratch_builder(
        lab, workdir, ami_name,
        ami_architecture="arm64",
        boot_mode="uefi",
        root_volume_type="gp3",
        root_volume_encrypt_boot=True,
        root_volume_kms_key_id=f"alias/e2e-scratch-{token}",
        root_volume_tags={"Scratch": token},
        ami_block_device_mappings=[
            ROOT_MAPPING,
            {"device_name": "/dev/xvdb", "volume_type": "gp3", "volume_size": 5, "iops": 4000, "throughput": 250},
            {"device_name": "/dev/xvdc", "virtual_name": "ephemeral0"},
            {"device_name": "/dev/xvdd", "no_device": True},
        ],
    )
    write_json_template(workdir / "scratch-arm.json", builder, [
        {"type": "shell", "inline": [f"echo scratch {token} > /etc/e2e-scratch.txt"]},
    ])

    result = run_packer(workdir / "scratch-arm.json", workdir, lab.process_env(), fake_sys_block=False)

    ami_id = assert_our_plugin_built(result)
    assert_clean(lab, result)
    ec2 = lab.ec2()
    image = ec2.describe_images(ImageIds=[ami_id])["Images"][0]
    assert (image["Architecture"], image["BootMode"], image["VirtualizationType"]) == ("arm64", "uefi", "hvm"), image
    mappings = {m["DeviceName"]: m for m in image["BlockDeviceMappings"]}
    assert set(mappings) == {"/dev/xvda", "/dev/xvdb", "/dev/xvdc", "/dev/xvdd"}, mappings
    root = mappings["/dev/xvda"]["Ebs"]
    assert (root["VolumeSize"], root["VolumeType"], root["Encrypted"]) == (1, "gp3", True), root
    snapshot = ec2.describe_snapshots(SnapshotIds=[root["SnapshotId"]])["Snapshots"][0]
    assert snapshot["Encrypted"] is True and snapshot["KmsKeyId"] == key["Arn"], snapshot
    data = mappings["/dev/xvdb"]["Ebs"]
    assert (data["VolumeSize"], data["VolumeType"], data["Iops"], data["Throughput"]) == (5, "gp3", 4000, 250), data
    assert mappings["/dev/xvdc"]["VirtualName"] == "ephemeral0"
    assert "NoDevice" in mappings["/dev/xvdd"], mappings["/dev/xvdd"]
    with lab.mounted_ami(ami_id, workdir / "inspect") as mounted:
        assert (mounted / "etc/e2e-scratch.txt").read_text() == f"scratch {token}\n"


def test_post_processor_not_keeping_the_input_destroys_the_amis_in_every_region(lab: Lab, source_ami: str, workdir: Path):
    """Packer destroys a builder artifact a post-processor does not keep:
    Artifact.Destroy deregisters the AMI in every region and deletes its
    snapshots."""
    ami_name = f"e2e-destroy-{uuid.uuid4().hex[:12]}"
    regions = [lab.region, "us-west-2"]
    snapshots_before = own_snapshots_by_region(lab, regions)
    template = {
        "builders": [json_builder(lab, workdir, ami_name, source_ami=source_ami, ami_regions=["us-west-2"])],
        "provisioners": [{"type": "shell", "inline": ["true"]}],
        # artifice replaces the artifact with local files; the AMIs are not kept.
        "post-processors": [{"type": "artifice", "files": ["pp.txt"], "keep_input_artifact": False}],
    }
    (workdir / "destroy.json").write_text(json.dumps(template, indent=2))
    (workdir / "pp.txt").write_text("post-processed\n")

    result = run_packer(workdir / "destroy.json", workdir, lab.process_env(), fake_sys_block=False)

    assert result.returncode == 0 and not result.timed_out, result.failure_report()
    log = result.log_path.read_text(errors="replace")
    assert "Deleting original artifact" in log and "rpc served Artifact.Destroy" in log, result.failure_report()
    # The AMI was registered and copied, and Packer's final artifact is artifice's.
    said = says(result)
    assert any(s.startswith("Registering the AMI") for s in said), said
    assert re.search(r"Copying ami-\w+ to us-west-2\.\.\.", result.stdout), result.failure_report()
    assert "packer.post-processor.artifice" in result.stdout
    for region in regions:
        assert images_named(lab, region, ami_name) == [], region
    assert own_snapshots_by_region(lab, regions) == snapshots_before
    assert_clean(lab, result)


def test_from_scratch_partitions_and_formats_the_empty_volume_in_pre_mount_commands(lab: Lab, workdir: Path):
    """As packer-examples/from_scratch does: a partition table written by
    pre_mount_commands, its first partition formatted and mounted (the lab
    adds the partition's device node as udev would; the commands wait for it)."""
    token = uuid.uuid4().hex[:12]
    ami_name = f"e2e-scratch-parts-{token}"
    builder = scratch_builder(
        lab, workdir, ami_name,
        mount_partition="1",
        pre_mount_commands=[
            "printf 'label: dos\\nstart=2048, type=83\\n' | sfdisk --quiet {{.Device}}",
            "i=0; while [ ! -b {{.Device}}1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; test -b {{.Device}}1",
            "mkfs.ext4 -q -F {{.Device}}1",
        ],
    )
    write_json_template(workdir / "scratch-parts.json", builder, [
        {"type": "shell", "inline": [f"echo partitioned {token} > /etc/e2e-scratch.txt"]},
    ])

    result = run_packer(workdir / "scratch-parts.json", workdir, lab.process_env(), fake_sys_block=False)

    ami_id = assert_our_plugin_built(result)
    assert_clean(lab, result)
    assert "Mounting the root device /dev/xvd" in result.stdout and "1 at " in result.stdout, result.failure_report()
    with lab.mounted_ami(ami_id, workdir / "inspect") as root:
        assert (root / "etc/e2e-scratch.txt").read_text() == f"partitioned {token}\n"
