#!/usr/bin/env python3
"""Benchmark: the same build with HashiCorp's builder (Debian's packer 1.6.6,
builtin `amazon-chroot`) and with this plugin, in one EC2 lab, in one
invocation; prints each builder's wall-clock times and the ratio of the
medians (this plugin / HashiCorp's: below 1 is faster).

The build is a source AMI found by filter, one shell provisioner, snapshot
and registration; the lab makes every EC2 resource take the same time for
both. `--polling defaults` runs both as users get them (upstream's waiters
poll every 15 s); `--polling fast` gives both AWS_POLL_DELAY_SECONDS=1, so
what remains is the work itself.

    make bench                      # or:
    PLUGIN_BIN=target/release/packer-plugin-amazon-chroot \\
        python3 plugin-tests/lab/bench/compare_builders.py --runs 3

Needs root, /usr/bin/packer and the lab's Python packages (as the tests).
Every lab, mount and AMI it makes is removed before it exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from baseline_support import (
    Lab,
    check_prerequisites,
    run_packer,
    unmount_below,
    write_json_template,
)

SOURCE_FILTER = {"filters": {"name": "lab-source-busybox-partitioned-*"}, "owners": ["self"], "most_recent": True}
PROVISIONERS = [{"type": "shell", "inline": ["echo benchmarked > /etc/bench.txt"]}]
#: Our plugin's legacy name, so Packer 1.6.6 never confuses it with its builtin.
OURS = "amazon-chroot-rs"
POLLING = {
    "defaults": {"AWS_POLL_DELAY_SECONDS": None, "AWS_MAX_ATTEMPTS": None, "AWS_TIMEOUT_SECONDS": None},
    "fast": {"AWS_POLL_DELAY_SECONDS": "1", "AWS_MAX_ATTEMPTS": "600", "AWS_TIMEOUT_SECONDS": None},
}


def one_build(lab: Lab, workdir: Path, builder_type: str, plugin: Path, polling: str) -> float:
    """Seconds one successful build took; its AMI is deregistered afterwards."""
    workdir.mkdir(parents=True)
    ours = builder_type == OURS
    if ours:
        shutil.copy(plugin, workdir / f"packer-builder-{OURS}")
    builder = {
        "type": builder_type,
        "region": lab.region,
        "custom_endpoint_ec2": lab.ec2_endpoint,
        "source_ami_filter": SOURCE_FILTER,
        "ami_name": f"bench-{builder_type}-{uuid.uuid4().hex[:12]}",
        "mount_path": str(workdir / "chroot") + "/{{.Device}}",
    }
    write_json_template(workdir / "bench.json", builder, PROVISIONERS)
    started = time.monotonic()
    # HashiCorp's builder needs a Xen-looking /sys/block to pick its device names.
    result = run_packer(workdir / "bench.json", workdir, lab.process_env(), fake_sys_block=not ours,
                        timeout=1800, overrides=POLLING[polling])
    took = time.monotonic() - started
    try:
        if result.returncode != 0 or result.timed_out:
            raise SystemExit(f"{builder_type} build failed:\n{result.failure_report()}")
        for ami in result.artifact_ids().values():
            lab.ec2().deregister_image(ImageId=ami)
    finally:
        unmount_below(workdir)
    return took


def describe(times: list[float]) -> str:
    return f"median {statistics.median(times):6.1f} s  (min {min(times):.1f}, max {max(times):.1f}, n={len(times)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="builds per builder (alternating)")
    p.add_argument("--polling", choices=sorted(POLLING), default="defaults")
    args = p.parse_args()
    plugin = Path(os.environ.get("PLUGIN_BIN", ""))
    if not plugin.is_file():
        p.error("PLUGIN_BIN must name the plugin binary (make bench sets it)")
    check_prerequisites()
    times: dict[str, list[float]] = {"amazon-chroot": [], OURS: []}
    with tempfile.TemporaryDirectory(prefix="bench-builders-") as tmp:
        lab = Lab.start(f"bench-{os.getpid()}", Path(tmp) / "lab", "xen")
        try:
            lab.register_source_ami("partitioned")
            for run in range(args.runs):
                # Alternate, so drift on the machine hits both alike.
                for builder_type, taken in times.items():
                    took = one_build(lab, Path(tmp) / f"{builder_type}-{run}", builder_type, plugin, args.polling)
                    taken.append(took)
                    print(f"run {run + 1}: {builder_type:<16} {took:6.1f} s", flush=True)
        finally:
            lab.stop()
    print(f"\npolling: {args.polling}")
    print(f"HashiCorp's amazon-chroot (baseline): {describe(times['amazon-chroot'])}")
    print(f"this plugin:                          {describe(times[OURS])}")
    ratio = statistics.median(times[OURS]) / statistics.median(times["amazon-chroot"])
    print(f"ratio this plugin / baseline:         {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
