"""End to end: region copies of OUR plugin's builds in the EC2 lab, driven by
Debian's packer 1.6.6 (see plugin_e2e_support.py): encryption with a key per
region, skip_save_build_region, time-based copies, and a copy that fails.

What is checked is the EC2 state the build leaves in EVERY region (images,
snapshots, keys, tags), the requests the plugin sent (the lab's call log),
and the lab's leak report. The lab's own leak report does not cover AMIs and
snapshots, so each test compares the snapshots of every region with what
was there before the build.

Run by `cargo test --test e2e_lab` (tests/e2e_lab.rs), which passes the
plugin binary in PLUGIN_BIN.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from baseline_support import Lab, PackerResult, labctl, run_packer, write_json_template
from plugin_e2e_support import (  # noqa: F401  (fixtures are used by name)
    PLUGIN_TYPE,
    assert_clean,
    assert_our_plugin_built_amis,
    images_named,
    json_builder,
    lab,
    lab_client,
    own_snapshots_by_region,
    says,
    source_ami,
    tags_of,
    workdir,
)

WEST = "us-west-2"
EU = "eu-west-1"
#: What our plugin names the AMI it only copies from (register_ami.rs).
INTERMEDIARY_PATTERN = "packer-intermediary-*"


def builder(lab: Lab, source_ami: str, workdir: Path, ami_name: str, **options) -> dict:
    """A template builder block for the lab with `options` on top; regions
    are validated (DescribeRegions), as users' templates have them."""
    return json_builder(lab, workdir, ami_name, **{"source_ami": source_ami, "skip_region_validation": False, **options})


def build(lab: Lab, workdir: Path, block: dict, name: str = "copies") -> PackerResult:
    template = workdir / f"{name}.json"
    write_json_template(template, block, [{"type": "shell", "inline": ["echo copied > /etc/e2e-copies.txt"]}])
    return run_packer(template, workdir, lab.process_env(), fake_sys_block=False)


def calls_of(calls: list[dict], action: str) -> list[dict]:
    """The `action` calls among `calls` (entries of the lab's call log)."""
    return [c for c in calls if c["action"] == action]


def the_intermediary(calls: list[dict]) -> tuple[str, str, str]:
    """(name, AMI id, root snapshot) of the AMI the build registered and copied from.

    Every CopyImage names it as its source; RegisterImage named it and its
    snapshot (the call log keeps the request parameters)."""
    sources = {c["params"]["SourceImageId"][0] for c in calls_of(calls, "CopyImage")}
    assert len(sources) == 1, sources
    [register] = [c for c in calls_of(calls, "RegisterImage") if c["status"] == 200]
    params = register["params"]
    snapshot = next(v[0] for k, v in params.items() if k.endswith(".Ebs.SnapshotId"))
    [ami] = sources
    return params["Name"][0], ami, snapshot


def assert_intermediary_gone(lab: Lab, regions: list[str], calls: list[dict]) -> str:
    """The intermediary AMI of the build that made `calls` is deregistered, its
    snapshot deleted, and no AMI named like it remains in any region; returns its name."""
    name, ami, snapshot = the_intermediary(calls)
    assert name.startswith(INTERMEDIARY_PATTERN.rstrip("*")), name
    build_ec2 = lab.ec2()
    assert build_ec2.describe_images(Filters=[{"Name": "image-id", "Values": [ami]}])["Images"] == []
    assert build_ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot]}])["Snapshots"] == []
    for region in regions:
        assert images_named(lab, region, INTERMEDIARY_PATTERN) == [], region
    return name


def snapshot_of(lab: Lab, region: str, ami: str) -> tuple[dict, dict]:
    """(image, its root snapshot) of `ami` in `region`."""
    ec2 = lab_client(lab, region)
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    ebs = [m["Ebs"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    assert len(ebs) == 1, image["BlockDeviceMappings"]
    snapshot = ec2.describe_snapshots(SnapshotIds=[ebs[0]["SnapshotId"]])["Snapshots"][0]
    return image, snapshot


@pytest.fixture
def region_keys(lab: Lab):
    """A KMS key per region of the test: an alias in the build region, a key
    ARN in us-west-2 and a bare key id in eu-west-1 (the three ways a template
    names a key). Yields {region: (what the template says, the key's ARN)}."""
    token = uuid.uuid4().hex[:10]
    keys = {}
    for region in (lab.region, WEST, EU):
        kms = lab_client(lab, region, "kms")
        meta = kms.create_key(Description=f"e2e copies {region}")["KeyMetadata"]
        if region == lab.region:
            alias = f"alias/e2e-build-{token}"
            kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
            keys[region] = (alias, meta["Arn"])
        else:
            keys[region] = (meta["Arn"] if region == WEST else meta["KeyId"], meta["Arn"])
    return keys


def test_encrypted_copies_use_each_regions_key_and_the_intermediary_is_deleted(
        lab: Lab, source_ami: str, workdir: Path, region_keys: dict):
    """encrypt_boot with kms_key_id (build region) and region_kms_key_ids: the
    build registers an unencrypted intermediary under a random name, copies it
    encrypted into the build region and both ami_regions, each with its own
    region's key, then deletes the intermediary and its snapshot."""
    token = uuid.uuid4().hex
    ami_name = f"e2e-kms-{token[:12]}"
    regions = [lab.region, WEST, EU]
    block = builder(
        lab, source_ami, workdir, ami_name,
        encrypt_boot=True,
        kms_key_id=region_keys[lab.region][0],
        ami_regions=[WEST, EU],
        region_kms_key_ids={WEST: region_keys[WEST][0], EU: region_keys[EU][0]},
        tags={"Token": token, "Name": "{{ .SourceAMIName }}"},
        snapshot_tags={"Kind": "root snapshot", "Token": f"snap-{token}"},
    )
    snapshots_before = own_snapshots_by_region(lab, regions)
    since = len(lab.calls())

    result = build(lab, workdir, block)
    calls = lab.calls()[since:]

    ids = assert_our_plugin_built_amis(result)
    assert set(ids) == set(regions), ids
    assert_clean(lab, result)
    source_name = lab.ec2().describe_images(ImageIds=[source_ami])["Images"][0]["Name"]
    made_snapshots = {}
    for region, ami in ids.items():
        arn = region_keys[region][1]
        image, snapshot = snapshot_of(lab, region, ami)
        assert image["Name"] == ami_name and image["State"] == "available", (region, image)
        assert images_named(lab, region, ami_name) == [ami], region
        ebs = image["BlockDeviceMappings"][0]["Ebs"]
        assert ebs["Encrypted"] is True and ebs["KmsKeyId"] == arn, (region, ebs)
        assert snapshot["Encrypted"] is True and snapshot["KmsKeyId"] == arn, (region, snapshot)
        assert tags_of(image) == {"Token": token, "Name": source_name}, (region, image)
        # tags go on the snapshots too; snapshot_tags win where both set a key.
        assert tags_of(snapshot) == {"Token": f"snap-{token}", "Name": source_name, "Kind": "root snapshot"}, \
            (region, snapshot)
        made_snapshots[region] = snapshot["SnapshotId"]
    # Every CopyImage asked for its region's key, as the template wrote it.
    copies = {c["region"]: c["params"] for c in calls_of(calls, "CopyImage")}
    assert set(copies) == set(regions), copies
    for region, params in copies.items():
        assert params["Encrypted"] == ["true"] and params["KmsKeyId"] == [region_keys[region][0]], (region, params)
        assert params["Name"] == [ami_name] and params["SourceRegion"] == [lab.region], (region, params)
    intermediary = assert_intermediary_gone(lab, regions, calls)
    assert intermediary != ami_name
    # Nothing but the three copies' snapshots was added, in any region.
    after = own_snapshots_by_region(lab, regions)
    for region in regions:
        assert after[region] == snapshots_before[region] | {made_snapshots[region]}, region
    # The intermediary was registered from an unencrypted snapshot.
    [create] = calls_of(calls, "CreateVolume")
    assert "Encrypted" not in create["params"] or create["params"]["Encrypted"] == ["false"], create


def test_skip_save_build_region_keeps_only_the_copies_and_ignores_the_build_region_name(
        lab: Lab, source_ami: str, workdir: Path):
    """skip_save_build_region: the AMI exists only in ami_regions.

    Upstream's chroot builder ignores the flag (it copies the AMI back into the
    build region under ami_name and prevalidates the name there); its EBS
    builder skips the name check altogether. Ours checks the name where an AMI
    of that name will be made — each ami_regions region — and not in the build
    region, where only the intermediary (random name) is registered: an AMI
    already named ami_name in the build region is no conflict, must not fail
    pre-validation and is left untouched, also by force_deregister (nothing
    replaces it). The same name in a copy region fails pre-validation before
    anything is created (upstream would fail only at CopyImage, after the
    whole build)."""
    token = uuid.uuid4().hex
    ami_name = f"e2e-skip-{token[:12]}"
    regions = [lab.region, WEST]
    ec2 = lab.ec2()
    source = ec2.describe_images(ImageIds=[source_ami])["Images"][0]
    root = source["BlockDeviceMappings"][0]
    existing = ec2.register_image(
        Name=ami_name, Architecture=source["Architecture"], VirtualizationType="hvm",
        RootDeviceName=source["RootDeviceName"],
        BlockDeviceMappings=[{"DeviceName": root["DeviceName"], "Ebs": {"SnapshotId": root["Ebs"]["SnapshotId"]}}],
    )["ImageId"]
    try:
        block = builder(lab, source_ami, workdir, ami_name, skip_save_build_region=True, ami_regions=[WEST],
                        tags={"Token": token})
        snapshots_before = own_snapshots_by_region(lab, regions)
        since = len(lab.calls())

        result = build(lab, workdir, block)
        calls = lab.calls()[since:]

        ids = assert_our_plugin_built_amis(result)
        assert set(ids) == {WEST}, ids
        assert_clean(lab, result)
        assert f"Prevalidating AMI Name: {ami_name}" in says(result)
        assert images_named(lab, lab.region, ami_name) == [existing], "the build region's AMI of that name changed"
        assert images_named(lab, WEST, ami_name) == [ids[WEST]]
        image, snapshot = snapshot_of(lab, WEST, ids[WEST])
        assert tags_of(image) == {"Token": token} and tags_of(snapshot) == {"Token": token}
        assert_intermediary_gone(lab, regions, calls)
        after = own_snapshots_by_region(lab, regions)
        assert after[lab.region] == snapshots_before[lab.region]
        assert after[WEST] == snapshots_before[WEST] | {snapshot["SnapshotId"]}
        # The only copy went to us-west-2: never back into the build region.
        assert [c["region"] for c in calls_of(calls, "CopyImage")] == [WEST]

        # Now the name is taken where it will be used: refused up front.
        since = len(lab.calls())
        again = build(lab, workdir, block, name="taken")
        calls = lab.calls()[since:]

        assert again.returncode == 1 and not again.timed_out, again.failure_report()
        assert f"is used by an existing AMI: {ids[WEST]} in {WEST}" in again.stdout, again.failure_report()
        assert calls_of(calls, "CreateVolume") == [] and calls_of(calls, "RegisterImage") == []
        assert_clean(lab, again)

        # force_deregister replaces the copy region's AMI; the build region's
        # AMI of that name is not in the way of anything and stays.
        block.update(force_deregister=True, force_delete_snapshot=True)
        forced = build(lab, workdir, block, name="forced")

        new_ids = assert_our_plugin_built_amis(forced)
        assert set(new_ids) == {WEST} and new_ids[WEST] != ids[WEST], new_ids
        assert_clean(lab, forced)
        assert images_named(lab, WEST, ami_name) == [new_ids[WEST]]
        assert images_named(lab, lab.region, ami_name) == [existing]
        old_snapshot = snapshot["SnapshotId"]
        assert lab_client(lab, WEST).describe_snapshots(
            Filters=[{"Name": "snapshot-id", "Values": [old_snapshot]}])["Snapshots"] == []
    finally:
        ec2.deregister_image(ImageId=existing)
        west = lab_client(lab, WEST)
        for ami in images_named(lab, WEST, ami_name):
            snaps = [m["Ebs"]["SnapshotId"] for m in west.describe_images(ImageIds=[ami])["Images"][0]["BlockDeviceMappings"]]
            west.deregister_image(ImageId=ami)
            for snap in snaps:
                west.delete_snapshot(SnapshotId=snap)


def test_time_based_copy_sends_and_shows_the_completion_duration(lab: Lab, source_ami: str, workdir: Path):
    """snapshot_copy_duration_minutes=15: CopyImage carries
    SnapshotCopyCompletionDurationMinutes=15, and the copy's snapshot reports a
    time-based copy of 15 minutes as EC2's DescribeSnapshots does."""
    ami_name = f"e2e-timed-{uuid.uuid4().hex[:12]}"
    block = builder(lab, source_ami, workdir, ami_name, ami_regions=[WEST], snapshot_copy_duration_minutes=15)
    since = len(lab.calls())

    result = build(lab, workdir, block)
    calls = lab.calls()[since:]

    ids = assert_our_plugin_built_amis(result)
    assert set(ids) == {lab.region, WEST}, ids
    assert_clean(lab, result)
    [copy] = calls_of(calls, "CopyImage")
    assert copy["region"] == WEST and copy["params"]["SnapshotCopyCompletionDurationMinutes"] == ["15"], copy
    _, snapshot = snapshot_of(lab, WEST, ids[WEST])
    assert snapshot["TransferType"] == "time-based" and snapshot["CompletionDurationMinutes"] == 15, snapshot
    assert snapshot["State"] == "completed" and snapshot["CompletionTime"] >= snapshot["StartTime"], snapshot
    _, own = snapshot_of(lab, lab.region, ids[lab.region])
    assert "TransferType" not in own, "the build region's AMI is no copy"


@pytest.mark.parametrize("minutes, message", [
    (20, "snapshot_copy_duration_minutes must be 0 or a multiple of 15 (at least 15); got 20"),
    (2895, "snapshot_copy_duration_minutes must be at most 2880"),
])
def test_snapshot_copy_duration_ec2_would_refuse_fails_before_anything_is_created(
        lab: Lab, source_ami: str, workdir: Path, minutes: int, message: str):
    block = builder(lab, source_ami, workdir, f"e2e-bad-duration-{uuid.uuid4().hex[:8]}", ami_regions=[WEST],
                    snapshot_copy_duration_minutes=minutes)
    since = len(lab.calls())

    result = build(lab, workdir, block)

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    # The log has the prepare error unwrapped (the UI wraps long lines).
    assert f"* {message}" in result.log_path.read_text(errors="replace"), result.failure_report()
    assert [c for c in lab.calls()[since:] if c["service"] == "ec2"] == []


def test_a_failed_copy_fails_the_build_and_leaves_nothing_in_any_region(
        lab: Lab, source_ami: str, workdir: Path, region_keys: dict):
    """The CopyImage into eu-west-1 fails (a lab fault scoped to that region)
    while the copies into us-west-2 and the build region succeed: the build
    fails and removes the successful copies, the intermediary and their
    snapshots, in every region."""
    ami_name = f"e2e-copy-fails-{uuid.uuid4().hex[:12]}"
    regions = [lab.region, WEST, EU]
    block = builder(
        lab, source_ami, workdir, ami_name,
        encrypt_boot=True,
        kms_key_id=region_keys[lab.region][0],
        ami_regions=[WEST, EU],
        region_kms_key_ids={WEST: region_keys[WEST][0], EU: region_keys[EU][0]},
        tags={"Token": "fails"},
    )
    snapshots_before = own_snapshots_by_region(lab, regions)
    since = len(lab.calls())
    labctl("fault", "--name", lab.name, "fail", "CopyImage", "--region", EU, "--code", "InsufficientCapacity",
           "--message", "injected: no capacity for this copy", "--status", "400", "--times", "0")
    try:
        result = build(lab, workdir, block)
        calls = lab.calls()[since:]
    finally:
        labctl("fault", "--name", lab.name, "reset")  # also empties the call log

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    assert "injected: no capacity for this copy" in result.stdout, result.failure_report()
    copies = calls_of(calls, "CopyImage")
    assert {c["region"]: c["status"] for c in copies} == {lab.region: 200, WEST: 200, EU: 400}, copies
    made = {c["region"] for c in copies if c["status"] == 200}
    said = says(result)
    assert any(s.startswith("Deregistering the intermediary AMI") for s in said), said
    for region in made:
        assert any(s.startswith("Deregistering the AMI") and region in s for s in said), (region, said)
    assert_intermediary_gone(lab, regions, calls)
    assert_nothing_left(lab, result, ami_name, snapshots_before)


def test_a_copy_that_fails_after_it_started_fails_the_build_and_leaves_nothing(
        lab: Lab, source_ami: str, workdir: Path):
    """EC2 accepts the CopyImage into us-west-2 but the copy ends `failed`
    (the lab's CopyImageFails fault): the build fails with EC2's reason and
    removes the failed copy, the eu-west-1 copy and the build region's AMI,
    with every snapshot."""
    ami_name = f"e2e-copy-breaks-{uuid.uuid4().hex[:12]}"
    regions = [lab.region, WEST, EU]
    block = builder(lab, source_ami, workdir, ami_name, ami_regions=[WEST, EU], tags={"Token": "breaks"})
    snapshots_before = own_snapshots_by_region(lab, regions)
    since = len(lab.calls())
    labctl("fault", "--name", lab.name, "fail", "CopyImageFails", "--region", WEST, "--code", "Client.InternalError",
           "--message", "injected: the copy broke")
    try:
        result = build(lab, workdir, block)
        calls = lab.calls()[since:]
    finally:
        labctl("fault", "--name", lab.name, "reset")  # also empties the call log

    assert result.returncode == 1 and not result.timed_out, result.failure_report()
    assert "injected: the copy broke" in result.stdout, result.failure_report()
    copies = calls_of(calls, "CopyImage")
    assert sorted((c["region"], c["status"]) for c in copies) == [(EU, 200), (WEST, 200)], copies
    said = says(result)
    for region in regions:
        assert any(s.startswith("Deregistering the AMI") and region in s for s in said), (region, said)
    assert_nothing_left(lab, result, ami_name, snapshots_before)


def assert_nothing_left(lab: Lab, result: PackerResult, ami_name: str, snapshots_before: dict[str, set[str]]) -> None:
    """No AMI named ami_name, no snapshot that was not there before, in any
    region of `snapshots_before`; the lab's leak report is clean."""
    for region in snapshots_before:
        assert images_named(lab, region, ami_name) == [], region
    assert own_snapshots_by_region(lab, list(snapshots_before)) == snapshots_before
    assert_clean(lab, result)
