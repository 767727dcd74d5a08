"""Lab daemon entry point: `python3 -m ec2lab.daemon '<LabConfig JSON>'`.

labctl starts this in its own session; it writes <state_dir>/lab.json and
/run/ec2lab/labs/<name>.json once the EC2 and IMDS ports answer and the host
instance exists, and serves until POST /_lab/shutdown or SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import Any

# moto reads these at import/backend creation time: keep the lab free of
# moto's built-in catalogue of AMIs (they would have no disk files).
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "lab")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "lab")

from . import emulation, runtime
from .config import LAB_ACCESS_KEY, LAB_SECRET_KEY, REGISTRY_DIR, LabConfig
from .server import Lab

AMAZON_OWNER = "137112412989"
log = logging.getLogger("ec2lab")


def create_host(lab: Lab) -> None:
    """Register the host's AMI (owned by 'amazon', so Owners=self never sees
    it) and run the host instance the builder believes it runs on."""
    import boto3

    rt = lab.rt
    cfg = rt.config
    with rt.lock:
        seed = cfg.state_path / "host-root.img"
        rt.sparse_file(seed, 8)
        snap = emulation.import_snapshot(str(seed), "ec2lab host root")
        seed.unlink()
        backend = emulation._backend_for(cfg.region)
        ami = emulation.LabAmi(
            backend,
            "ami-0" + snap.id[5:22].ljust(16, "0"),
            name=f"ec2lab-host-{cfg.name}",
            description="EC2 lab host instance image",
            architecture=cfg.architecture,
            virtualization_type="hvm",
            root_device_name="/dev/xvda",
            lab_mappings=[
                {
                    "DeviceName": "/dev/xvda",
                    "Ebs": {
                        "SnapshotId": snap.id,
                        "VolumeSize": 8,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                        "Encrypted": False,
                        "Iops": 3000,
                        "Throughput": 125,
                    },
                }
            ],
            ena_support=True,
            state="available",
        )
        ami.owner_id = AMAZON_OWNER
        ami.owner_alias = "amazon"
        backend.amis[ami.id] = ami
        rt.host_image_id = ami.id
    ec2 = boto3.client(
        "ec2",
        region_name=cfg.region,
        endpoint_url=f"http://127.0.0.1:{cfg.ec2_port}",
        aws_access_key_id=LAB_ACCESS_KEY,
        aws_secret_access_key=LAB_SECRET_KEY,
    )
    inst = ec2.run_instances(
        ImageId=ami.id,
        MinCount=1,
        MaxCount=1,
        InstanceType=cfg.instance_type,
        Placement={"AvailabilityZone": rt.availability_zone},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"ec2lab-host-{cfg.name}"}]}],
    )["Instances"][0]
    rt.instance_id = inst["InstanceId"]
    rt.private_ip = inst.get("PrivateIpAddress", "172.31.0.10")
    with rt.lock:
        # moto attaches the default root volume as /dev/sda1; the host AMI says /dev/xvda.
        instance = backend.get_instance(rt.instance_id)
        bdt = instance.block_device_mapping.pop("/dev/sda1", None)
        if bdt is not None:
            instance.block_device_mapping["/dev/xvda"] = bdt
            backend.get_volume(bdt.volume_id).attachment.device = "/dev/xvda"
    described = ec2.describe_instances(InstanceIds=[rt.instance_id])["Reservations"][0]["Instances"][0]
    for mapping in described.get("BlockDeviceMappings", []):
        rt.root_volume_id = mapping["Ebs"]["VolumeId"]
    rt.control.reset()


def main(argv: list[str]) -> int:
    """Run one lab until told to stop."""
    cfg = LabConfig.from_json(argv[1])
    cfg.state_path.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=str(cfg.state_path / "lab.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    emulation.install()
    rt = runtime.Runtime(cfg)
    runtime.current = rt
    lab = Lab(rt)
    lab.start()

    def on_term(_sig: int, _frame: Any) -> None:
        lab.stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        create_host(lab)
    except Exception:
        log.exception("host instance setup failed")
        lab.stop()
        return 1
    rt.start_poller()
    info = lab.info()
    info["pid"] = os.getpid()
    text = json.dumps(info, indent=1)
    (cfg.state_path / "lab.json").write_text(text)
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    (REGISTRY_DIR / f"{cfg.name}.json").write_text(text)
    log.info("lab %s ready: %s", cfg.name, text)
    lab.done.wait()
    # Let the /_lab/shutdown response reach labctl before the process exits.
    time.sleep(0.3)
    logging.shutdown()
    # Skip interpreter teardown: werkzeug request threads may still linger.
    os._exit(0)
    log.info("lab %s stopped", cfg.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
