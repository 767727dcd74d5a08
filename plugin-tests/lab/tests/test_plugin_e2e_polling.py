"""End to end: how long our plugin waits on AWS and how often it retries,
as the template and the environment say (aws_polling, AWS_POLL_DELAY_SECONDS,
AWS_MAX_ATTEMPTS, max_retries), proven by full builds in the EC2 lab and the
lab's log of the calls it received.

Precedence, as upstream: `aws_polling` in the template, then
AWS_POLL_DELAY_SECONDS / AWS_MAX_ATTEMPTS, then AWS_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from baseline_support import Lab, labctl, run_packer, write_json_template
from plugin_e2e_support import (  # noqa: F401  (fixtures are used by name)
    assert_clean,
    assert_our_plugin_built,
    calls_since,
    json_builder,
    lab,
    lab_faults,
    own_snapshots,
    source_ami,
    workdir,
)

#: The polling variables run_packer sets for upstream's builder, removed so
#: only what a test sets applies.
NO_POLLING_ENV = {"AWS_POLL_DELAY_SECONDS": None, "AWS_MAX_ATTEMPTS": None, "AWS_TIMEOUT_SECONDS": None}


@pytest.mark.parametrize(("options", "env", "attempts"), [
    # The template's block wins over the environment's (much larger) limit.
    ({"aws_polling": {"delay_seconds": 1, "max_attempts": 3}}, {"AWS_MAX_ATTEMPTS": "500", "AWS_POLL_DELAY_SECONDS": "1"}, 3),
    ({}, {"AWS_MAX_ATTEMPTS": "4", "AWS_POLL_DELAY_SECONDS": "1"}, 4),
], ids=["aws_polling-block", "AWS_MAX_ATTEMPTS"])
def test_polling_limits_bound_the_snapshot_wait(lab: Lab, source_ami: str, workdir: Path, options, env, attempts):
    ami_name = f"e2e-polling-{uuid.uuid4().hex[:12]}"
    write_json_template(workdir / "polling.json", json_builder(lab, workdir, ami_name, source_ami=source_ami, **options),
                        [{"type": "shell", "inline": ["true"]}])
    snapshots_before = own_snapshots(lab)
    since = time.time()
    with lab_faults(lab):
        labctl("fault", "--name", lab.name, "timings", "snapshot=600")
        result = run_packer(workdir / "polling.json", workdir, lab.process_env(), fake_sys_block=False,
                            overrides={**NO_POLLING_ENV, **env})
        polls = calls_since(lab, since, "DescribeSnapshots")
    assert result.returncode != 0 and not result.timed_out, result.failure_report()
    assert f"after {attempts} polls" in result.stdout, result.failure_report()
    # One DescribeSnapshots per poll, plus at most one by the cleanup.
    assert attempts <= len(polls) <= attempts + 1, polls
    assert own_snapshots(lab) == snapshots_before, "the pending snapshot was left behind"
    assert_clean(lab, result)


def test_throttled_calls_are_retried_up_to_max_retries(lab: Lab, source_ami: str, workdir: Path):
    """Two throttled CreateVolume calls: the default retries ride them out;
    max_retries = 1 gives up after the second, naming the call and the code."""
    throttle = ["fault", "--name", lab.name, "fail", "CreateVolume", "--code", "RequestLimitExceeded",
                "--message", "Request limit exceeded.", "--status", "503", "--times", "2"]
    ami_name = f"e2e-retries-{uuid.uuid4().hex[:12]}"
    write_json_template(workdir / "retries.json", json_builder(lab, workdir, ami_name, source_ami=source_ami),
                        [{"type": "shell", "inline": ["true"]}])
    since = time.time()
    with lab_faults(lab):
        labctl(*throttle)
        result = run_packer(workdir / "retries.json", workdir, lab.process_env(), fake_sys_block=False,
                            overrides=NO_POLLING_ENV)
        creates = calls_since(lab, since, "CreateVolume")
    ami = assert_our_plugin_built(result)
    assert [c["error"] for c in creates] == ["RequestLimitExceeded", "RequestLimitExceeded", ""], creates
    assert_clean(lab, result)
    lab.ec2().deregister_image(ImageId=ami)

    write_json_template(workdir / "one-retry.json", json_builder(lab, workdir, ami_name + "-1", source_ami=source_ami, max_retries=1),
                        [{"type": "shell", "inline": ["true"]}])
    since = time.time()
    with lab_faults(lab):
        labctl(*throttle)
        failed = run_packer(workdir / "one-retry.json", workdir, lab.process_env(), fake_sys_block=False,
                            overrides=NO_POLLING_ENV)
        creates = calls_since(lab, since, "CreateVolume")
    assert failed.returncode != 0 and not failed.timed_out, failed.failure_report()
    assert "CreateVolume" in failed.stdout and "RequestLimitExceeded" in failed.stdout, failed.failure_report()
    assert [c["error"] for c in creates] == ["RequestLimitExceeded", "RequestLimitExceeded"], creates
    assert_clean(lab, failed)
