"""End to end: Packer's interactive flags with our plugin, answered on
Packer's stdin as a user at a terminal would (Packer asks nothing in
-machine-readable mode, so these runs use its human output).

* `-debug` pauses after every step and before every cleanup, and the build
  then finishes normally.
* `-on-error=ask`: "c" cleans up as usual; "a" (and `-on-error=abort`)
  leaves the volume attached and mounted for inspection, as Packer
  documents; the lab's stop then removes it.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from baseline_support import Lab, check_prerequisites, loops_backed_below, mounts_matching, run_packer, write_json_template
from plugin_e2e_support import (  # noqa: F401  (fixtures are used by name)
    assert_clean,
    json_builder,
    lab,
    source_ami,
    workdir,
)

#: Steps every build from a source AMI runs, in order (see src/builder/steps).
STEPS = ["SourceAmiInfo", "CreateVolume", "AttachVolume", "MountDevice", "CopyFiles", "Provision", "Snapshot",
         "RegisterAmi"]
#: The Enter key: Packer reads answers from its terminal in raw mode.
ENTER = "\r"
ASK_ON_ERROR = "[c] Clean up and exit, [a] abort without cleanup, or [r] retry step"
FAILING = [{"type": "shell", "inline": ["echo about to fail", "exit 3"]}]


def amis_created(stdout: str) -> dict[str, str]:
    """region -> AMI from Packer's human summary (`us-east-1: ami-…`)."""
    return dict(re.findall(r"^([a-z]{2}-[a-z]+-\d): (ami-[0-9a-f]+)$", stdout, re.MULTILINE))


def test_debug_pauses_after_each_step_and_before_each_cleanup(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-debug-{uuid.uuid4().hex[:12]}"
    write_json_template(workdir / "debug.json", json_builder(lab, workdir, ami_name, source_ami=source_ami),
                        [{"type": "shell", "inline": ["echo debugged > /etc/e2e-debug.txt"]}])

    result = run_packer(workdir / "debug.json", workdir, lab.process_env(), fake_sys_block=False, timeout=180,
                        build_args=("-debug",), answers={"Press enter to continue.": ENTER})

    assert result.returncode == 0 and not result.timed_out, result.failure_report()
    after = re.findall(r"Pausing after run of step '(\w+)'", result.stdout)
    before_cleanup = re.findall(r"Pausing before cleanup of step '(\w+)'", result.stdout)
    assert [s for s in after if s in STEPS] == STEPS, after
    assert [s for s in before_cleanup if s in STEPS] == list(reversed(STEPS)), before_cleanup
    amis = amis_created(result.stdout)
    assert list(amis) == [lab.region], result.failure_report()
    assert lab.ec2().describe_images(ImageIds=[amis[lab.region]])["Images"][0]["Name"] == ami_name
    assert_clean(lab, result)


def test_on_error_ask_clean_up_leaves_nothing(lab: Lab, source_ami: str, workdir: Path):
    ami_name = f"e2e-ask-c-{uuid.uuid4().hex[:12]}"
    write_json_template(workdir / "ask.json", json_builder(lab, workdir, ami_name, source_ami=source_ami), FAILING)

    result = run_packer(workdir / "ask.json", workdir, lab.process_env(), fake_sys_block=False, timeout=180,
                        build_args=("-on-error=ask",), answers={ASK_ON_ERROR: "c" + ENTER})

    assert result.returncode != 0 and not result.timed_out, result.failure_report()
    assert ASK_ON_ERROR in result.stdout, result.failure_report()
    assert "Step 'Provision' failed" in result.stdout, result.failure_report()
    assert_clean(lab, result)


@pytest.fixture
def lab_left_dirty(tmp_path_factory):
    """A lab of its own, expected to have leaks; stopping it must remove them all."""
    check_prerequisites()
    state_dir = tmp_path_factory.mktemp("lab-abort")
    started = Lab.start(f"e2e-abort-{os.getpid()}", state_dir, "xen")
    try:
        yield started
    finally:
        started.stop()
        assert loops_backed_below(state_dir) == [], "loop devices left after labctl stop"


@pytest.mark.parametrize(("build_args", "answers"), [(("-on-error=ask",), {ASK_ON_ERROR: "a" + ENTER}), (("-on-error=abort",), None)],
                         ids=["ask-abort", "abort"])
def test_abort_leaves_the_volume_mounted_for_inspection(lab_left_dirty: Lab, workdir: Path, build_args, answers):
    lab = lab_left_dirty
    source = lab.register_source_ami("partitioned")
    ami_name = f"e2e-abort-{uuid.uuid4().hex[:12]}"
    mount_root = workdir / "chroot"
    write_json_template(workdir / "abort.json", json_builder(lab, workdir, ami_name, source_ami=source), FAILING)

    result = run_packer(workdir / "abort.json", workdir, lab.process_env(), fake_sys_block=False, timeout=180,
                        build_args=build_args, answers=answers)

    assert result.returncode != 0 and not result.timed_out, result.failure_report()
    assert "about to fail" in result.stdout, result.failure_report()
    clean, report = lab.leaks()
    assert not clean, report
    volumes = [line for line in report.splitlines() if line.startswith("volume ") and "attached" in line]
    assert len(volumes) == 1, report
    mounted = mounts_matching(str(mount_root))
    assert mounted, f"nothing mounted below {mount_root}:\n{result.failure_report()}"
    # What the provisioner saw is still there to look at.
    points = [line.split()[1] for line in mounted]
    assert (Path(points[0]) / "etc/lab-source-image").is_file(), points
    labctl_stop_output = lab.stop()
    assert not mounts_matching(str(mount_root)), labctl_stop_output
