"""What the end-to-end builds of OUR plugin in the EC2 lab share: the
plugin installed under its legacy name, the lab and source-AMI fixtures,
and the checks every scenario makes (the build succeeded with our plugin,
the AMI in the API, the lab's leak report clean).

Debian's packer 1.6.6 drives our plugin binary (PLUGIN_BIN, passed by
`cargo test --test e2e_lab`), installed next to the template as
`packer-builder-amazon-chroot-rs`, so the template type is
`amazon-chroot-rs` and never 1.6.6's builtin. Needs root, /usr/bin/packer,
busybox-static and the lab's Python packages (requirements.txt).

Test modules import the fixtures they use by name (`lab`, `source_ami`,
`workdir`); each module then gets its own lab.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest
from baseline_support import (
    Lab,
    PackerResult,
    labctl,
    settled_leaks,
    unmount_below,
)
from baseline_support import running_lab as baseline_running_lab
from conftest import DEFAULT_TIMINGS

PLUGIN_TYPE = "amazon-chroot-rs"
PLUGIN_NAME = f"packer-builder-{PLUGIN_TYPE}"
SOURCE_FILTER_NAME = "lab-source-busybox-partitioned-*"
#: What the lab's source image has at /etc/resolv.conf (see images/make-source-image).
SOURCE_RESOLV_TARGET = "../run/systemd/resolve/stub-resolv.conf"


def plugin_binary() -> Path:
    path = os.environ.get("PLUGIN_BIN")
    if not path:
        pytest.fail("PLUGIN_BIN is not set: run these tests through `cargo test --test e2e_lab`")
    if not os.path.exists(path):
        pytest.fail(f"PLUGIN_BIN={path} does not exist")
    return Path(path)


#: How long a leak report may take to become clean (see settled_leaks):
#: other labs and builds run on this host at the same time.
LEAK_SETTLE_SECONDS = 60


def running_lab(name: str, state_dir: Path, device_style: str):
    """A started lab, stopped at the end with a clean leak report."""
    return baseline_running_lab(name, state_dir, device_style, LEAK_SETTLE_SECONDS)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(f"e2e-{os.getpid()}", tmp_path_factory.mktemp("lab-xen"), "xen") as started:
        yield started


@pytest.fixture(scope="module")
def source_ami(lab: Lab) -> str:
    return lab.register_source_ami("partitioned")


@pytest.fixture
def workdir(tmp_path: Path):
    """The test's directory with our plugin installed; anything still mounted
    below it is unmounted at the end (and that is a failure)."""
    shutil.copy(plugin_binary(), tmp_path / PLUGIN_NAME)
    yield tmp_path
    leftover = unmount_below(tmp_path)
    assert not leftover, f"the build left mounts behind below {tmp_path}: {leftover}"




def json_builder(lab: Lab, workdir: Path, ami_name: str, **options) -> dict:
    """The builder section of a JSON template for our plugin in this lab,
    mounting below the test's directory; `options` add to it or replace."""
    return {
        "type": PLUGIN_TYPE,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "skip_region_validation": True,
        "ami_name": ami_name,
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
        **options,
    }


def assert_clean(lab: Lab, result: PackerResult | None = None) -> None:
    clean, report = settled_leaks(lab, LEAK_SETTLE_SECONDS)
    assert clean, report + ("\n" + result.failure_report() if result else "")


def assert_our_plugin_built_amis(result: PackerResult) -> dict[str, str]:
    """The build succeeded with our plugin; its artifact's region -> AMI id."""
    assert result.returncode == 0 and not result.timed_out, result.failure_report()
    log = result.log_path.read_text(errors="replace")
    assert PLUGIN_NAME in log, "packer did not start our plugin\n" + result.failure_report()
    ids = result.artifact_ids()
    assert ids and lab_region_ok(ids), f"unexpected artifact ids {ids}\n{result.failure_report()}"
    return ids


def assert_our_plugin_built(result: PackerResult) -> str:
    """The build succeeded with our plugin and made one AMI; its id."""
    ids = assert_our_plugin_built_amis(result)
    assert len(ids) == 1, f"unexpected artifact ids {ids}\n{result.failure_report()}"
    return next(iter(ids.values()))


def lab_region_ok(ids: dict[str, str]) -> bool:
    return all(v.startswith("ami-") for v in ids.values())


def says(result: PackerResult) -> list[str]:
    """The `==> name: text` lines of a machine-readable run, text only."""
    out = []
    for line in result.stdout.splitlines():
        fields = line.split(",", 4)
        if len(fields) == 5 and fields[2] == "ui" and fields[3] == "say":
            text = fields[4].replace("%!(PACKER_COMMA)", ",")
            if ": " in text:
                out.append(text.split(": ", 1)[1])
    return out


def check_ami(lab: Lab, ami_id: str, ami_name: str, source_ami: str) -> dict:
    ec2 = lab.ec2()
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"]
    assert [i["ImageId"] for i in found] == [ami_id]
    image = found[0]
    source = ec2.describe_images(ImageIds=[source_ami])["Images"][0]
    assert image["State"] == "available"
    assert image["RootDeviceName"] == "/dev/xvda"
    assert image["VirtualizationType"] == "hvm"
    assert image["Architecture"] == "x86_64"
    # Inherited from the source (EnaSupport=True there), not set by the template.
    assert image.get("EnaSupport") is True
    mappings = image["BlockDeviceMappings"]
    assert [m["DeviceName"] for m in mappings] == ["/dev/xvda"], mappings
    ebs = mappings[0]["Ebs"]
    assert ebs["SnapshotId"] != source["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snapshot = ec2.describe_snapshots(SnapshotIds=[ebs["SnapshotId"]])["Snapshots"][0]
    assert snapshot["State"] == "completed"
    assert snapshot["Description"].startswith("Packer: ")
    return image


def check_resolv_conf_intact(root: Path) -> None:
    """The image's /etc/resolv.conf is exactly the source's dangling symlink."""
    path = root / "etc/resolv.conf"
    assert path.is_symlink(), "the /etc/resolv.conf symlink is gone"
    assert os.readlink(path) == SOURCE_RESOLV_TARGET
    assert not [n for n in os.listdir(root / "etc") if "resolv.conf" in n and n != "resolv.conf"], \
        os.listdir(root / "etc")


def own_snapshots(lab: Lab) -> set[str]:
    return {s["SnapshotId"] for s in lab.ec2().describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def lab_client(lab: Lab, region: str, service: str = "ec2"):
    """A boto3 client of the lab's `service` in `region`."""
    import boto3

    return boto3.client(service, endpoint_url=lab.ec2_endpoint, region_name=region,
                        aws_access_key_id=lab.env.get("AWS_ACCESS_KEY_ID"),
                        aws_secret_access_key=lab.env.get("AWS_SECRET_ACCESS_KEY"))


@contextlib.contextmanager
def lab_faults(lab: Lab):
    """For faults and timings a test sets: the lab's defaults are back afterwards."""
    try:
        yield
    finally:
        labctl("fault", "--name", lab.name, "reset")
        labctl("fault", "--name", lab.name, "timings", *[f"{k}={v}" for k, v in DEFAULT_TIMINGS.items()])


def calls_since(lab: Lab, since: float, action: str) -> list[dict]:
    """The lab's log entries of `action` received after `since` (time.time()).
    Read it before `lab_faults` ends: resetting the faults clears the log."""
    return [c for c in lab.calls() if c["action"] == action and c["time"] >= since]


def images_named(lab: Lab, region: str, name: str) -> list[str]:
    """Ids of this account's AMIs in `region` whose name matches `name` (EC2 wildcards)."""
    found = lab_client(lab, region).describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])
    return sorted(i["ImageId"] for i in found["Images"])


def own_snapshots_by_region(lab: Lab, regions: list[str]) -> dict[str, set[str]]:
    """This account's snapshot ids in each region."""
    return {r: {s["SnapshotId"] for s in lab_client(lab, r).describe_snapshots(OwnerIds=["self"])["Snapshots"]}
            for r in regions}


def tags_of(resource: dict) -> dict[str, str]:
    """An EC2 resource's tags as a dict."""
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
