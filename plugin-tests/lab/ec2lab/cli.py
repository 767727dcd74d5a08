"""labctl's commands."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import blockdev
from .config import LAB_ACCESS_KEY, LAB_SECRET_KEY, REGISTRY_DIR, LabConfig, Timings

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
TIMING_FLAGS = {
    "volume_create": "--volume-create-delay",
    "attach": "--attach-delay",
    "detach": "--detach-delay",
    "snapshot": "--snapshot-delay",
    "image": "--image-delay",
    "copy_image": "--copy-image-delay",
    "device_appear": "--device-delay",
}


class LabError(RuntimeError):
    """A labctl command failed (message is printed, exit status 1)."""


# ----- lab lookup and HTTP ---------------------------------------------


def lab_info(name: str) -> dict[str, Any]:
    """The state JSON of a running lab (from the registry)."""
    path = REGISTRY_DIR / f"{name}.json"
    if not path.exists():
        raise LabError(f"no lab named {name!r} is running ({path} missing)")
    return json.loads(path.read_text())


def call(info: dict[str, Any], method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
    """Call the lab's control API."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{info['ec2_port']}/_lab/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise LabError(f"{method} /_lab/{path}: {exc.code} {exc.read().decode(errors='replace')}")


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


# ----- commands ----------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    """Start a lab daemon and wait until it is ready."""
    if (REGISTRY_DIR / f"{args.name}.json").exists():
        info = lab_info(args.name)
        if pid_alive(info["pid"]):
            raise LabError(f"lab {args.name!r} already runs (pid {info['pid']}, EC2 port {info['ec2_port']})")
        (REGISTRY_DIR / f"{args.name}.json").unlink()
    timings = Timings()
    for field, flag in TIMING_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            setattr(timings, field, value)
    timings.device_withhold = args.withhold_devices
    cfg = LabConfig(
        name=args.name,
        state_dir=args.state_dir or "",
        device_style=args.device_style,
        region=args.region,
        ec2_port=args.ec2_port,
        imds_port=args.imds_port,
        https_port=args.https_port,
        vault_port=args.vault_port,
        imds_require_v2=args.imds_v2_only,
        imds_disabled=args.no_imds,
        busy_detach=args.busy_detach,
        timings=timings,
    )
    cfg.state_path.mkdir(parents=True, exist_ok=True)
    stale = cfg.state_path / "lab.json"
    stale.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(cfg.state_path / "daemon.out", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ec2lab.daemon", cfg.to_json()],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=env,
            cwd="/",
        )
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        if stale.exists():
            info = json.loads(stale.read_text())
            print(
                json.dumps(info, indent=1)
                if args.json
                else f"lab {cfg.name} ready: EC2 http://127.0.0.1:{info['ec2_port']} (https port {info['https_port']})"
                f" IMDS http://127.0.0.1:{info['imds_port']} Vault http://127.0.0.1:{info['vault_port']}"
                f" instance {info['instance_id']} ({cfg.device_style})"
            )
            return 0
        if proc.poll() is not None:
            log = (cfg.state_path / "daemon.out").read_text(errors="replace")[-3000:]
            raise LabError(f"lab daemon exited with {proc.returncode}:\n{log}")
        time.sleep(0.1)
    proc.kill()
    raise LabError(f"lab {cfg.name} not ready after {args.timeout}s")


def cmd_run(args: argparse.Namespace) -> int:
    """Run a command inside a fresh lab; the lab is stopped whatever happens."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("run needs a command after --")
    args.json = False
    cmd_start(args)
    try:
        env = dict(os.environ)
        for line in env_lines(lab_info(args.name)):
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value
        status = subprocess.run(command, env=env, check=False).returncode
        leaks = find_leaks(args.name)
        for leak in leaks:
            print(f"leak: {leak}", file=sys.stderr)
        if leaks and args.fail_on_leaks and status == 0:
            status = 3
    finally:
        for line in stop_lab(args.name):
            print(line, file=sys.stderr)
    return status


def stop_lab(name: str) -> list[str]:
    """Stop a lab and remove everything it created; idempotent."""
    done: list[str] = []
    reg = REGISTRY_DIR / f"{name}.json"
    if not reg.exists():
        return done
    info = json.loads(reg.read_text())
    state = Path(info["state_dir"])
    if pid_alive(info["pid"]):
        try:
            done += call(info, "POST", "shutdown", {}, timeout=60)["done"]
        except (LabError, OSError, http.client.HTTPException) as exc:
            done.append(f"shutdown request failed ({exc}); killing")
        for _ in range(50):
            if not pid_alive(info["pid"]):
                break
            time.sleep(0.1)
        if pid_alive(info["pid"]):
            os.kill(info["pid"], signal.SIGKILL)
            done.append(f"killed pid {info['pid']}")
    # Sweep what a crashed daemon may have left behind.
    done += sweep(name, state)
    for sub in ("volumes", "snapshots"):
        d = state / sub
        if d.is_dir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    (state / "lab.json").unlink(missing_ok=True)
    reg.unlink(missing_ok=True)
    return done


def sweep(name: str, state: Path) -> list[str]:
    """Unmount, free loop devices and remove nodes/claims belonging to a lab."""
    done = []
    loops = blockdev.loops_backed_by(state)
    for loop, _file in loops:
        nums = {blockdev.dev_numbers(loop)} | set(blockdev.loop_partitions(loop).values())
        for mount in blockdev.mounts_of(nums):
            blockdev.unmount_tree(mount.mount_point)
            done.append(f"unmounted {mount.mount_point}")
        for node in lab_nodes(nums):
            blockdev.remove_path(node)
            done.append(f"removed {node}")
        blockdev.losetup_detach(loop)
        done.append(f"detached {loop}")
    for c in blockdev.claims():
        if c.lab == name:
            for path in (Path("/dev") / c.name,):
                if path.exists() and not path.is_symlink():
                    blockdev.remove_path(path)
                    done.append(f"removed {path}")
            blockdev.release(c.name)
    for link in dangling_by_id():
        blockdev.remove_path(link)
        done.append(f"removed dangling {link}")
    return done


def lab_nodes(nums: set[tuple[int, int]]) -> list[Path]:
    """/dev nodes (xvd*, nvme*) and by-id links that point at the given devices."""
    found = []
    for node in list(Path("/dev").glob("xvd*")) + list(Path("/dev").glob("nvme*")):
        try:
            if node.is_block_device() and blockdev.dev_numbers(str(node)) in nums:
                found.append(node)
        except FileNotFoundError:
            pass
    if blockdev.BY_ID_DIR.is_dir():
        for link in blockdev.BY_ID_DIR.glob("nvme-Amazon_Elastic_Block_Store_*"):
            try:
                if blockdev.dev_numbers(str(link)) in nums:
                    found.append(link)
            except FileNotFoundError:
                pass
    return found


def dangling_by_id() -> list[Path]:
    """Lab-style by-id links whose target is gone."""
    if not blockdev.BY_ID_DIR.is_dir():
        return []
    return [p for p in blockdev.BY_ID_DIR.glob("nvme-Amazon_Elastic_Block_Store_*") if p.is_symlink() and not p.exists()]


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop one lab (or all with --all)."""
    names = [p.stem for p in REGISTRY_DIR.glob("*.json")] if args.all else [args.name]
    for name in names:
        for line in stop_lab(name):
            print(line)
    return 0


def env_lines(info: dict[str, Any]) -> list[str]:
    """Environment a client needs to use the lab."""
    ec2 = f"http://127.0.0.1:{info['ec2_port']}"
    values = {
        "AWS_ACCESS_KEY_ID": LAB_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": LAB_SECRET_KEY,
        "AWS_DEFAULT_REGION": info["region"],
        "AWS_REGION": info["region"],
        "AWS_ENDPOINT_URL": ec2,
        "AWS_ENDPOINT_URL_EC2": ec2,
        "AWS_ENDPOINT_URL_KMS": ec2,
        "AWS_ENDPOINT_URL_STS": ec2,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{info['imds_port']}/",
        "AWS_EC2_METADATA_DISABLED": "false",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "LAB_NAME": info["name"],
        "LAB_EC2_ENDPOINT": ec2,
        "LAB_IMDS_ENDPOINT": f"http://127.0.0.1:{info['imds_port']}",
        "LAB_INSTANCE_ID": info["instance_id"],
        "LAB_AVAILABILITY_ZONE": info["availability_zone"],
        "LAB_DEVICE_STYLE": info["device_style"],
        "LAB_STATE_DIR": info["state_dir"],
        "LAB_ACCOUNT_ID": info["account_id"],
        # Same EC2 app over HTTPS with a self-signed certificate (LAB_TLS_CERT).
        "LAB_EC2_HTTPS_ENDPOINT": f"https://127.0.0.1:{info['https_port']}",
        "LAB_TLS_CERT": info["tls_cert"],
        # The fake Vault: what VAULT_ADDR/VAULT_TOKEN must be for vault_aws_engine.
        "LAB_VAULT_ADDR": f"http://127.0.0.1:{info['vault_port']}",
        "LAB_VAULT_TOKEN": info["vault_token"],
        # The same Vault over HTTPS, certificate LAB_TLS_CERT (for VAULT_CACERT).
        "LAB_VAULT_HTTPS_ADDR": f"https://127.0.0.1:{info['vault_https_port']}",
    }
    return [f"export {k}={v}" for k, v in values.items()]


def cmd_env(args: argparse.Namespace) -> int:
    """Print export lines."""
    print("\n".join(env_lines(lab_info(args.name))))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the lab's state JSON."""
    print(json.dumps(lab_info(args.name), indent=1))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """List AMIs, snapshots or volumes."""
    res = call(lab_info(args.name), "GET", "resources")[args.kind]
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    for r in res:
        if args.kind == "amis":
            root = [m for m in r["BlockDeviceMappings"] if m["DeviceName"] == r["RootDeviceName"]]
            snap = root[0]["Ebs"]["SnapshotId"] if root and "Ebs" in root[0] else "-"
            print(f"{r['ImageId']}\t{r['Region']}\t{r['State']}\t{snap}\t{r['Name']}{'  (host)' if r['host'] else ''}")
        elif args.kind == "snapshots":
            print(f"{r['SnapshotId']}\t{r['Region']}\t{r['State']}\t{r['Progress']}\t{r['VolumeSize']}GiB\t{r['Description']}")
        else:
            att = ",".join(f"{a['InstanceId']}:{a['Device']}:{a['State']}" for a in r["Attachments"]) or "-"
            dev = r["HostDevice"]["disk"] if r["HostDevice"] else "-"
            print(f"{r['VolumeId']}\t{r['Region']}\t{r['State']}\t{r['Size']}GiB\t{att}\t{dev}{'  (host root)' if r['host_root'] else ''}")
    return 0


def root_snapshot_file(info: dict[str, Any], ami_id: str) -> Path:
    """Backing file of an AMI's root snapshot."""
    res = call(info, "GET", "resources")
    amis = [a for a in res["amis"] if a["ImageId"] == ami_id]
    if not amis:
        raise LabError(f"no AMI {ami_id} in lab {info['name']}")
    ami = amis[0]
    root = [m for m in ami["BlockDeviceMappings"] if m["DeviceName"] == ami["RootDeviceName"] and "Ebs" in m]
    if not root:
        raise LabError(f"{ami_id} has no EBS root mapping")
    return Path(info["state_dir"]) / "snapshots" / f"{root[0]['Ebs']['SnapshotId']}.img"


def cmd_mount_ami(args: argparse.Namespace) -> int:
    """Mount an AMI's root snapshot read-only (partition N, or the whole disk with 0)."""
    info = lab_info(args.name)
    image = root_snapshot_file(info, args.ami)
    loop = blockdev.run(["losetup", "--find", "--show", "--read-only", str(image)]).stdout.strip()
    device = loop
    try:
        blockdev.run(["partx", "-a", loop], check=False)
        parts = blockdev.loop_partitions(loop)
        number = args.partition if args.partition is not None else (min(parts) if parts else 0)
        if number:
            if number not in parts:
                raise LabError(f"{args.ami}: root snapshot has no partition {number} (has {sorted(parts)})")
            device = f"{loop}p{number}"
            if not Path(device).exists():  # no udev here: make the node ourselves
                blockdev.make_node(Path(device), parts[number])
        os.makedirs(args.dir, exist_ok=True)
        blockdev.run(["mount", "-o", "ro", device, args.dir])
    except (LabError, blockdev.BlockDeviceError, OSError):
        if device != loop:
            blockdev.remove_path(Path(device))
        blockdev.losetup_detach(loop)
        raise
    print(f"{args.ami} root ({device}) mounted read-only on {args.dir}")
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    """Unmount a directory mounted by mount-ami and free its loop device."""
    target = os.path.realpath(args.dir)
    entries = [m for m in blockdev.mounts() if m.mount_point == target]
    if not entries:
        raise LabError(f"{target} is not mounted")
    source = entries[-1].source
    blockdev.run(["umount", target])
    match = re.match(r"^(/dev/loop\d+)(p\d+)?$", source)
    if not match:
        raise LabError(f"{target} was mounted from {source}, not a loop device")
    loop = match.group(1)
    if match.group(2):
        blockdev.remove_path(Path(source))
    blockdev.losetup_detach(loop)
    print(f"unmounted {target}, detached {loop}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Copy a disk image into the lab as a completed snapshot."""
    res = call(lab_info(args.name), "POST", "snapshots/import", {"path": os.path.abspath(args.file), "description": args.description})
    print(res["SnapshotId"])
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    """Inject faults, delays, device withholding; or reset/list them."""
    info = lab_info(args.name)
    if args.fault_cmd == "fail":
        res = call(
            info,
            "POST",
            "faults",
            {
                "action": args.action,
                "code": args.code,
                "message": args.message,
                "status": args.status,
                "nth": args.nth,
                "times": args.times,
                "region": args.region,
            },
        )
    elif args.fault_cmd == "delay":
        res = call(info, "POST", "delays", {"action": args.action, "seconds": args.seconds})
    elif args.fault_cmd == "devices":
        if args.mode == "show":
            res = call(info, "POST", "devices/show", {})
        else:
            body: dict[str, Any] = {"device_withhold": args.mode == "withhold"}
            if args.mode == "delay":
                body["device_appear"] = args.seconds
            res = call(info, "POST", "timings", body)
    elif args.fault_cmd == "timings":
        res = call(info, "POST", "timings", dict(kv.split("=", 1) for kv in args.values))
    elif args.fault_cmd == "imds":
        res = call(
            info,
            "POST",
            "imds",
            {
                "require_v2": args.mode == "v2-only" if args.mode in ("v2-only", "v1-ok") else None,
                "disabled": {"off": True, "on": False}.get(args.mode),
            },
        )
    elif args.fault_cmd == "busy-detach":
        res = call(info, "POST", "busy-detach", {"mode": args.mode})
    elif args.fault_cmd == "reset":
        res = call(info, "POST", "reset", {})
    else:
        res = call(info, "GET", "faults")
    print(json.dumps(res, indent=1))
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    """Print the log of received API calls."""
    for c in call(lab_info(args.name), "GET", "calls"):
        print(f"{c['time']:.3f}\t{c['service']}\t{c['region']}\t{c['action']}\t{c['status']}\t{c['error']}\t{c['access_key']}")
    return 0


def find_leaks(name: str | None) -> list[str]:
    """Everything a finished build (or a stopped lab) should not have left behind.

    With a name, host-wide items are limited to that lab's devices and state
    dir (other labs may be busy in parallel); without, everything lab-like on
    the host is reported, including all mounts under the builder's default
    mount root. A held packer-chroot lock is reported unless every process
    holding it belongs to another lab (its environment's LAB_NAME).
    """
    leaks = []
    names = [name] if name else [p.stem for p in REGISTRY_DIR.glob("*.json")]
    lab_dirs = []
    for n in names:
        try:
            info = lab_info(n)
        except LabError:
            continue
        lab_dirs.append(Path(info["state_dir"]))
        if pid_alive(info["pid"]):
            for vol in call(info, "GET", "resources")["volumes"]:
                if vol["host_root"]:
                    continue
                what = "attached" if vol["Attachments"] else "exists"
                leaks.append(f"volume {vol['VolumeId']} ({vol['Region']}) {what} [{vol['State']}]")
    numbers: set[tuple[int, int]] = set()
    for d in lab_dirs:
        for loop, back in blockdev.loops_backed_by(d):
            leaks.append(f"loop device {loop} backed by {back}")
            numbers.add(blockdev.dev_numbers(loop))
            numbers |= set(blockdev.loop_partitions(loop).values())
    all_mounts = blockdev.mounts()
    roots = [str(d).rstrip("/") + "/" for d in lab_dirs]
    roots += [m.mount_point.rstrip("/") + "/" for m in all_mounts if m.numbers in numbers]
    if name is None:
        roots.append(blockdev.PACKER_MOUNT_ROOT + "/")
    for m in all_mounts:
        if m.numbers in numbers or any((m.mount_point + "/").startswith(r) for r in roots):
            leaks.append(f"mount {m.source} on {m.mount_point}")
    claimed = [c for c in blockdev.claims() if name is None or c.lab == name]
    for c in claimed:
        leaks.append(f"device claim /dev/{c.name} by lab {c.lab} (volume attached)")
    nodes = []
    for node in sorted(Path("/dev").iterdir()):
        if not re.fullmatch(r"(xvd[a-z]+|nvme\d+n1)(p?\d+)?", node.name) or not node.is_block_device():
            continue
        if name is None or any(re.fullmatch(re.escape(c.name) + r"(p?\d+)?", node.name) for c in claimed):
            nodes.append(node)
            leaks.append(f"device node {node}")
    if blockdev.BY_ID_DIR.is_dir():
        for link in sorted(blockdev.BY_ID_DIR.glob("nvme-Amazon_Elastic_Block_Store_*")):
            target = Path(os.path.realpath(link))
            if name is None or target in nodes or not target.exists():
                leaks.append(f"by-id link {link} -> {target}")
    if blockdev.lock_held():
        holders = blockdev.lock_holders()
        # A build of another lab on this host holding the lock right now is
        # not this lab's leak; a holder we cannot attribute counts as ours.
        ours = [pid for pid in holders if name is None or blockdev.lab_of_process(pid) in (name, None)]
        if ours or not holders:
            shown = ", ".join(f"pid {pid}" for pid in ours) or "holder unknown"
            leaks.append(f"lock {blockdev.PACKER_CHROOT_LOCK} is held ({shown})")
    return leaks


def cmd_leaks(args: argparse.Namespace) -> int:
    """Report leaks; exit 1 if any."""
    leaks = find_leaks(None if args.all else args.name)
    for leak in leaks:
        print(leak)
    if not leaks:
        print("no leaks")
    return 1 if leaks else 0


def parser() -> argparse.ArgumentParser:
    """labctl's argument parser."""
    p = argparse.ArgumentParser(prog="labctl", description="Local EC2 + EBS + IMDS lab")
    p.add_argument("--name", default=os.environ.get("LAB_NAME", "default"), help="lab name (default: $LAB_NAME or 'default')")
    sub = p.add_subparsers(dest="cmd", required=True)

    def start_options(s: argparse.ArgumentParser) -> None:
        s.add_argument("--name", default=argparse.SUPPRESS)
        s.add_argument("--device-style", choices=["xen", "nitro"], default="xen")
        s.add_argument("--state-dir")
        s.add_argument("--ec2-port", type=int, default=0, help="0 = a free port")
        s.add_argument("--imds-port", type=int, default=0, help="0 = a free port")
        s.add_argument("--https-port", type=int, default=0, help="EC2 over HTTPS (self-signed); 0 = a free port")
        s.add_argument("--vault-port", type=int, default=0, help="fake Vault; 0 = a free port")
        s.add_argument("--region", default="us-east-1")
        for flag in TIMING_FLAGS.values():
            s.add_argument(flag, type=float, metavar="SECONDS")
        s.add_argument(
            "--busy-detach", choices=["error", "hang"], default="error", help="DetachVolume of a mounted device: fail, or stay busy as EC2"
        )
        s.add_argument("--withhold-devices", action="store_true", help="attachments never show a device node")
        s.add_argument("--imds-v2-only", action="store_true", help="IMDSv1 requests get 401")
        s.add_argument("--no-imds", action="store_true", help="IMDS port closed")
        s.add_argument("--timeout", type=float, default=60)
        s.add_argument("--json", action="store_true", help="print the state JSON")

    s = sub.add_parser("start", help="start a lab daemon")
    start_options(s)
    s.set_defaults(func=cmd_start)

    s = sub.add_parser("run", help="start a lab, run COMMAND with its env, report leaks, stop the lab")
    start_options(s)
    s.add_argument("--fail-on-leaks", action="store_true", help="exit 3 if the command left leaks (and it succeeded)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("stop", help="stop a lab, remove all it created (idempotent)")
    s.add_argument("--name", default=argparse.SUPPRESS)
    s.add_argument("--all", action="store_true")
    s.set_defaults(func=cmd_stop)

    for name, fn, hlp in (
        ("env", cmd_env, "print export lines"),
        ("info", cmd_info, "print the lab state JSON"),
        ("calls", cmd_calls, "print received API calls"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--name", default=argparse.SUPPRESS)
        s.set_defaults(func=fn)

    s = sub.add_parser("ls", help="list amis|snapshots|volumes")
    s.add_argument("--name", default=argparse.SUPPRESS)
    s.add_argument("kind", choices=["amis", "snapshots", "volumes"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ls)

    s = sub.add_parser("mount-ami", help="mount an AMI's root snapshot read-only")
    s.add_argument("--name", default=argparse.SUPPRESS)
    s.add_argument("ami")
    s.add_argument("dir")
    s.add_argument("--partition", type=int, help="partition number; 0 = whole disk (default: first partition, else whole disk)")
    s.set_defaults(func=cmd_mount_ami)

    s = sub.add_parser("umount", help="undo mount-ami")
    s.add_argument("--name", default=argparse.SUPPRESS)
    s.add_argument("dir")
    s.set_defaults(func=cmd_umount)

    s = sub.add_parser("import-snapshot", help="copy a disk image in as a completed snapshot; prints its id")
    s.add_argument("--name", default=argparse.SUPPRESS)
    s.add_argument("file")
    s.add_argument("--description", default="")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("fault", help="fault injection")
    s.add_argument("--name", default=argparse.SUPPRESS)
    fsub = s.add_subparsers(dest="fault_cmd", required=True)
    f = fsub.add_parser("fail", help="make the Nth call of ACTION fail")
    f.add_argument("action")
    f.add_argument("--code", default="InternalError")
    f.add_argument("--message", default="Injected by the EC2 lab")
    f.add_argument("--status", type=int, default=500)
    f.add_argument("--nth", type=int, default=1)
    f.add_argument("--times", type=int, default=1, help="consecutive failures (0 = forever)")
    f.add_argument("--region", default="", help="only calls signed for this region (default: any region)")
    f = fsub.add_parser("delay", help="sleep before each call of ACTION")
    f.add_argument("action")
    f.add_argument("seconds", type=float)
    f = fsub.add_parser("devices", help="device node appearance: delay SECONDS | withhold | normal | show")
    f.add_argument("mode", choices=["delay", "withhold", "normal", "show"])
    f.add_argument("seconds", type=float, nargs="?", default=0.0)
    f = fsub.add_parser("timings", help="set transitional-state durations, e.g. snapshot=5 attach=2")
    f.add_argument("values", nargs="+")
    f = fsub.add_parser("imds", help="IMDS: v2-only | v1-ok | off | on")
    f.add_argument("mode", choices=["v2-only", "v1-ok", "off", "on"])
    f = fsub.add_parser("busy-detach", help="DetachVolume of a mounted device: error | hang (EC2's busy)")
    f.add_argument("mode", choices=["error", "hang"])
    fsub.add_parser("reset", help="clear faults, delays, call log, withholding")
    fsub.add_parser("list", help="show faults and delays")
    s.set_defaults(func=cmd_fault)

    s = sub.add_parser("leaks", help="report leftovers; exit 1 if any")
    s.add_argument("--name", default=argparse.SUPPRESS)
    s.add_argument("--all", action="store_true", help="all labs and all lab-style nodes")
    s.set_defaults(func=cmd_leaks)
    return p


def main(argv: list[str]) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (LabError, blockdev.BlockDeviceError) as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 1
