"""End to end: Go-template interpolation in a JSON template, as Packer
plugins do it, read back from what the build made in the EC2 lab.

Prepare-time functions (`user`, `timestamp`, `isotime`, `strftime`, `uuid`,
`build_name`, `build_type`, `packer_version`, `template_dir`, `pwd`,
`upper`/`lower`/`replace`/`replace_all`/`split`, `clean_resource_name`)
in `ami_name` and the tags, and the run-time build info (`.SourceAMI`,
`.BuildRegion`, `.SourceAMIName`, `.SourceAMIOwner`, `.SourceAMIOwnerName`,
`.SourceAMICreationDate`, `.SourceAMITags`) in `ami_description`, `tags`,
`snapshot_tags` and `root_volume_tags`, as reference §3 says.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from baseline_support import Lab, run_packer
from plugin_e2e_support import (  # noqa: F401  (fixtures are used by name)
    PLUGIN_TYPE,
    assert_clean,
    assert_our_plugin_built,
    calls_since,
    json_builder,
    lab,
    source_ami,
    workdir,
)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def query_tags(params: dict[str, list[str]], prefix: str) -> dict[str, str]:
    """`{key: value}` of a query-encoded tag list (`<prefix>.N.Key` / `.Value`)."""
    out = {}
    n = 1
    while f"{prefix}.{n}.Key" in params:
        out[params[f"{prefix}.{n}.Key"][0]] = params.get(f"{prefix}.{n}.Value", [""])[0]
        n += 1
    return out


def test_template_functions_and_build_info_reach_the_image(lab: Lab, source_ami: str, workdir: Path):
    ec2 = lab.ec2()
    source = ec2.describe_images(ImageIds=[source_ami])["Images"][0]
    source_tags = {t["Key"]: t["Value"] for t in source["Tags"]}
    builder = json_builder(lab, workdir, "e2e-tpl-{{user `team` | lower | clean_resource_name}}-{{timestamp}}", source_ami=source_ami, ami_description="{{.SourceAMIName}} in {{.BuildRegion}} by {{build_name}}/{{build_type}} on packer {{packer_version}}", tags={
            "Source": "{{.SourceAMI}}",
            "Owner": "{{.SourceAMIOwner}}/{{.SourceAMIOwnerName}}",
            "Created": "{{.SourceAMICreationDate}}",
            "Layout": "{{index .SourceAMITags `lab:layout`}}",
            "SourceName": "{{.SourceAMITags.Name}}",
            "Upper": "{{upper `abc`}}",
            "Replaced": "{{replace `-` `_` 1 `a-b-c`}} {{replace_all `-` `_` `a-b-c`}}",
            "Split": "{{split `a,b,c` `,` 1}}",
            "Dir": "{{template_dir}}",
            "Pwd": "{{pwd}}",
            "Year": "{{isotime `2006`}} {{strftime `%Y`}}",
            "Id": "{{uuid}}",
            "{{user `team` | lower}}-key": "keyed",
        }, snapshot_tags={"SnapshotOf": "{{.SourceAMI}}", "Region": "{{.BuildRegion}}"}, root_volume_tags={"VolumeFrom": "{{.SourceAMIName}}", "Team": "{{user `team`}}"})
    template = {"variables": {"team": "Platform:Core"}, "builders": [builder],
                "provisioners": [{"type": "shell", "inline": ["true"]}]}
    (workdir / "tpl.json").write_text(json.dumps(template, indent=2))
    since = time.time()
    before = int(time.time())

    result = run_packer(workdir / "tpl.json", workdir, lab.process_env(), fake_sys_block=False)

    ami = assert_our_plugin_built(result)
    after = int(time.time())
    assert_clean(lab, result)
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    # `user`, a pipeline through `lower` and `clean_resource_name` (":" is
    # not allowed in AMI names), and `timestamp` (the run's start time).
    name = re.fullmatch(r"e2e-tpl-platform-core-(\d+)", image["Name"])
    assert name and before - 5 <= int(name.group(1)) <= after, image["Name"]
    assert image["Description"] == (
        f"{source['Name']} in {lab.region} by {PLUGIN_TYPE}/{PLUGIN_TYPE} on packer 1.6.6")
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    year = time.strftime("%Y", time.gmtime())
    assert tags["Source"] == source_ami
    assert tags["Owner"] == f"{source['OwnerId']}/{source.get('ImageOwnerAlias', '')}"
    assert tags["Created"] == source["CreationDate"]
    assert tags["Layout"] == source_tags["lab:layout"]
    assert tags["SourceName"] == source_tags["Name"]
    assert tags["Upper"] == "ABC"
    assert tags["Replaced"] == "a_b-c a_b_c"
    assert tags["Split"] == "b"
    assert tags["Dir"] == str(workdir)
    assert tags["Pwd"] == str(workdir)
    assert tags["Year"] == f"{year} {year}"
    assert UUID_RE.match(tags["Id"]), tags["Id"]
    assert tags["platform:core-key"] == "keyed"

    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snapshot = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    snap_tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
    assert snap_tags["SnapshotOf"] == source_ami and snap_tags["Region"] == lab.region, snap_tags
    # The working volume is gone; its tags are in the CreateVolume call.
    creates = calls_since(lab, since, "CreateVolume")
    assert len(creates) == 1, creates
    volume_tags = query_tags(creates[0]["params"], "TagSpecification.1.Tag")
    assert volume_tags == {"VolumeFrom": source["Name"], "Team": "Platform:Core"}, creates[0]["params"]
