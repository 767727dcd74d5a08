"""Support for the Packer 1.6.6 baseline tests: a running lab, source AMIs, and
`packer build` runs that are bounded in time and always cleaned up.

Everything talks to the lab through its public faces only (labctl, the EC2
endpoint, the control endpoint), as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

LAB_DIR = Path(__file__).resolve().parent.parent
LABCTL = LAB_DIR / "labctl"
IMAGES_DIR = LAB_DIR / "images"
PACKER = "/usr/bin/packer"
#: The Go builder's default mount root (mount_path "/mnt/packer-amazon-chroot-volumes/{{.Device}}").
PACKER_DEFAULT_MOUNT_ROOT = "/mnt/packer-amazon-chroot-volumes"
#: Seconds a whole `packer build` may take. A healthy build here takes well under
#: a minute; a failed IMDS lookup alone costs ~60 s of SDK retries.
PACKER_TIMEOUT = 420
#: After SIGINT, how long Packer gets to run its own cleanup before SIGKILL.
PACKER_CANCEL_GRACE = 90
#: Seconds for one labctl command.
LABCTL_TIMEOUT = 120


class LabError(Exception):
    """A labctl command failed; carries its output."""


def labctl(*args: str, timeout: float = LABCTL_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    """Run labctl with the given arguments and capture its output."""
    proc = subprocess.run([sys.executable, str(LABCTL), *args], check=False, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"labctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def parse_exports(text: str) -> dict[str, str]:
    """Parse `export NAME=value` lines (shell-quoted values) into a dict."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        words = shlex.split(line[len("export "):])
        for word in words:
            name, _, value = word.partition("=")
            env[name] = value
    return env


@dataclass
class Lab:
    """A started lab: its name and the environment `labctl env` exports."""

    name: str
    env: dict[str, str]

    @classmethod
    def start(cls, name: str, state_dir: Path, device_style: str = "xen") -> Lab:
        """Start a lab whose state (volume files, lab.log) lives in state_dir."""
        try:
            labctl("start", "--name", name, "--device-style", device_style, "--state-dir", str(state_dir))
            env = parse_exports(labctl("env", "--name", name).stdout)
        except BaseException:
            labctl("stop", "--name", name, check=False)  # a half-started lab must not linger
            raise
        return cls(name, env)

    @property
    def state_dir(self) -> str:
        return self.env.get("LAB_STATE_DIR", "?")

    def stop(self) -> str:
        """Stop the lab; returns labctl's output for the test log.

        `labctl stop` is idempotent; it is retried once because its first call
        can fail reading the daemon's reply while the daemon shuts down."""
        proc = labctl("stop", "--name", self.name, check=False)
        if proc.returncode != 0:
            first = proc
            proc = labctl("stop", "--name", self.name, check=False)
            if proc.returncode != 0:
                raise LabError(f"labctl stop failed twice:\n{first.stderr}\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def leaks(self) -> tuple[bool, str]:
        """(clean, report) from `labctl leaks`; a non-zero exit means leaks."""
        proc = labctl("leaks", "--name", self.name, check=False)
        return proc.returncode == 0, proc.stdout + proc.stderr

    @property
    def ec2_endpoint(self) -> str:
        return self.env.get("AWS_ENDPOINT_URL_EC2") or self.env["AWS_ENDPOINT_URL"]

    @property
    def region(self) -> str:
        return self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION") or "us-east-1"

    def process_env(self, **extra: str) -> dict[str, str]:
        """os.environ plus the lab's exports plus `extra`."""
        env = dict(os.environ)
        env.update(self.env)
        env.update(extra)
        return env

    def ec2(self):
        import boto3

        return boto3.client(
            "ec2",
            endpoint_url=self.ec2_endpoint,
            region_name=self.region,
            aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY", "testing"),
        )

    def register_source_ami(self, layout: str = "partitioned") -> str:
        """Build/reuse the source image and register it; returns the AMI id."""
        proc = subprocess.run(
            [sys.executable, str(IMAGES_DIR / "register-source-ami"), "--layout", layout], check=False,
            env=self.process_env(), capture_output=True, text=True, timeout=300,
        )
        if proc.returncode != 0:
            raise LabError(f"register-source-ami failed:\n{proc.stderr}")
        return proc.stdout.strip().splitlines()[-1]

    def calls(self) -> list[dict]:
        """The lab's log of received EC2 and IMDS requests (control endpoint)."""
        control = self.env.get("LAB_EC2_ENDPOINT", self.ec2_endpoint)
        with urllib.request.urlopen(f"{control}/_lab/calls", timeout=30) as resp:
            return json.load(resp)

    @contextlib.contextmanager
    def mounted_ami(self, ami_id: str, mountpoint: Path):
        """Mount the AMI's root snapshot read-only at mountpoint for the block."""
        mountpoint.mkdir(parents=True, exist_ok=True)
        try:
            labctl("mount-ami", "--name", self.name, ami_id, str(mountpoint))
            yield mountpoint
        finally:
            proc = labctl("umount", "--name", self.name, str(mountpoint), check=False)
            still = mounts_matching(f" {re.escape(str(mountpoint))} ")
            if still:
                raise LabError(f"labctl umount left {mountpoint} mounted: {still}\n{proc.stdout}{proc.stderr}")


#: Where running labs record which /dev names they have claimed (the lab's own
#: bookkeeping; read only, to avoid a name another lab is about to create).
LAB_CLAIMS_DIR = Path("/run/ec2lab/claims")


def free_xen_device() -> str:
    """A /dev/xvdX that, checked like Packer's own discovery does, has neither the
    disk node nor its first partition node, and no lab has claimed.

    Searched from the END of Packer's range (p down to f): auto-discovering
    builds (Packer's and other labs' tests) take names from f upwards, so this
    keeps clear of them when several labs run on one machine."""
    for letter in reversed("fghijklmnop"):
        dev = f"/dev/xvd{letter}"
        if os.path.exists(dev) or os.path.exists(dev + "1") or (LAB_CLAIMS_DIR / f"xvd{letter}").exists():
            continue
        return dev
    raise RuntimeError("no free /dev/xvd[f-p] device name")


def next_nvme_disk() -> str:
    """The NVMe name a Nitro-style lab will give the next attachment: the lowest
    /dev/nvmeNn1 (N >= 1) that neither exists nor is claimed by a lab.

    Upstream's Nitro workaround needs this name *before* attaching
    (nvme_device_path), which is exactly its weakness."""
    index = 1
    while os.path.exists(f"/dev/nvme{index}n1") or (LAB_CLAIMS_DIR / f"nvme{index}n1").exists():
        index += 1
    return f"/dev/nvme{index}n1"


@dataclass
class PackerResult:
    """Outcome of one `packer build`."""

    returncode: int
    stdout: str
    log_path: Path
    timed_out: bool

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no packer log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def failure_report(self) -> str:
        return (f"packer exited {self.returncode} (timed out: {self.timed_out}); work dir {self.log_path.parent}\n"
                f"--- stdout tail ---\n" + "\n".join(self.stdout.splitlines()[-40:]) +
                f"\n--- {self.log_path} tail ---\n{self.log_tail()}")

    def artifact_ids(self) -> dict[str, str]:
        """region -> AMI id, from the machine-readable `artifact,0,id` line."""
        ids: dict[str, str] = {}
        for line in self.stdout.splitlines():
            fields = line.split(",")
            if len(fields) >= 6 and fields[2] == "artifact" and fields[4] == "id":
                for pair in ",".join(fields[5:]).replace("%!(PACKER_COMMA)", ",").split(","):
                    region, _, ami = pair.partition(":")
                    ids[region] = ami
        return ids


# Packer's HashiCorp Go builder picks its device prefix ("xvd" or "sd") from the
# names in /sys/block; on these VMs that lists only vda, loop*, zram*. This runs
# Packer in a private mount namespace whose /sys/block is a tmpfs holding an
# empty `xvda` entry, so discovery sees a Xen host. Only the namespace sees it.
FAKE_SYS_BLOCK = 'mount -t tmpfs lab-fake-sysblock /sys/block && mkdir /sys/block/xvda && exec "$@"'


def run_packer(template: Path, workdir: Path, env: dict[str, str], fake_sys_block: bool,
               timeout: float = PACKER_TIMEOUT, overrides: dict[str, str | None] | None = None,
               build_args: tuple[str, ...] = ("-machine-readable",),
               answers: dict[str, str] | None = None) -> PackerResult:
    """Run `packer build` on template in workdir, bounded by timeout.

    `overrides` win over the environment set up here (None removes a
    variable), for tests of the polling variables themselves. `build_args`
    replace `-machine-readable` (Packer can only ask questions, as -debug
    and -on-error=ask do, without it). With `answers` Packer runs on a
    terminal (`script` gives it one: it asks nothing without), and each time
    its output shows one of the questions (keys), the answer (value) is typed.

    On timeout Packer gets SIGINT (it then runs its cleanup steps), and its
    whole process group SIGKILL if it is still there after the grace period.
    """
    log_path = workdir / "packer.log"
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    penv = dict(env)
    penv.update({
        "PACKER_LOG": "1",
        "PACKER_LOG_PATH": str(log_path),
        # No update check (network) and no plugins from the user's dirs: the
        # builtin amazon-chroot of /usr/bin/packer must be what runs.
        "CHECKPOINT_DISABLE": "1",
        "HOME": str(home),
        "PACKER_CONFIG_DIR": str(home),
        "PACKER_CACHE_DIR": str(workdir / "cache"),
        "TMPDIR": str(workdir),
        # Upstream honours these: waiter polling each second, bounded attempts,
        # instead of 15 s sleeps that would make each build minutes long.
        "AWS_POLL_DELAY_SECONDS": "1",
        "AWS_MAX_ATTEMPTS": "120",
    })
    penv.pop("PACKER_PLUGIN_PATH", None)
    for name, value in (overrides or {}).items():
        if value is None:
            penv.pop(name, None)
        else:
            penv[name] = value
    argv = [PACKER, "build", "-color=false", *build_args, str(template)]
    if fake_sys_block:
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", FAKE_SYS_BLOCK, "sh", *argv]
    if answers is not None:
        argv = ["script", "--quiet", "--flush", "--return", "--command", shlex.join(argv), "/dev/null"]
    proc = subprocess.Popen(argv, cwd=workdir, env=penv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL if answers is None else subprocess.PIPE, text=answers is None,
                            start_new_session=True)
    timed_out = False
    try:
        if answers is None:
            stdout, _ = proc.communicate(timeout=timeout)
        else:
            stdout = answer_questions(proc, answers, timeout)
    except subprocess.TimeoutExpired as e:
        timed_out = True
        rest = stop_process_group(proc)
        stdout = "".join(part.decode(errors="replace") if isinstance(part, bytes) else (part or "") for part in (e.output, rest))
    finally:
        if proc.poll() is None:
            stop_process_group(proc)
    # A terminal ends lines with CR LF.
    return PackerResult(proc.returncode, stdout.replace("\r\n", "\n"), log_path, timed_out)


def answer_questions(proc: subprocess.Popen, answers: dict[str, str], timeout: float) -> str:
    """Reads `proc`'s output until it exits, typing the answer to each
    question as it appears; raises TimeoutExpired (with the output so far)."""
    assert proc.stdout is not None and proc.stdin is not None
    deadline = time.monotonic() + timeout
    out = b""
    typed = dict.fromkeys(answers, 0)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout, output=out)
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            text = out.decode(errors="replace")
            for question, answer in answers.items():
                while typed[question] < text.count(question):
                    proc.stdin.write(answer.encode())
                    proc.stdin.flush()
                    typed[question] += 1
    proc.wait(timeout=max(deadline - time.monotonic(), 1))
    return out.decode(errors="replace")


#: Packer failures that mean another lab on this machine took the /dev name
#: between Packer's check and the attach (upstream's lock covers only its own
#: processes). Nothing was built yet when these happen, so one rerun is safe.
DEVICE_COLLISIONS = ("Device is in use", "Attachment point /dev/sd", "Attachment point /dev/xvd")


def run_packer_once_more_on_device_collision(template: Path, workdir: Path, env: dict[str, str],
                                             fake_sys_block: bool) -> PackerResult:
    """run_packer, rerun once if the device name collided with another lab's."""
    result = run_packer(template, workdir, env, fake_sys_block)
    if result.returncode != 0 and not result.timed_out and any(c in result.stdout for c in DEVICE_COLLISIONS):
        print(f"device name collision with another lab, rerunning once:\n{result.failure_report()}", file=sys.stderr)
        result.log_path.rename(result.log_path.with_suffix(".collision.log"))
        result = run_packer(template, workdir, env, fake_sys_block)
    return result


def stop_process_group(proc: subprocess.Popen) -> str:
    """SIGINT the group (Packer cleans up on it), then SIGKILL after the grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=PACKER_CANCEL_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out or ""


def unmount_below(root: Path) -> list[str]:
    """Unmount (lazily, deepest first) everything mounted at or below root.

    Safety net for a Packer killed mid-build in the host mount namespace; only
    ever called with a test's own private directory."""
    root_s = str(root.resolve())
    targets = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target == root_s or target.startswith(root_s + "/"):
                targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    return targets


def write_json_template(path: Path, builder: dict, provisioners: list[dict]) -> None:
    path.write_text(json.dumps({"builders": [builder], "provisioners": provisioners}, indent=2))


def hcl_string(value: str) -> str:
    """An HCL2 quoted string literal (JSON escaping is valid HCL; `${` and
    `%{` are escaped so values are never interpolated)."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def wait_until(predicate, timeout: float, interval: float = 0.5):
    """Poll predicate() until truthy or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def mounts_matching(pattern: str) -> list[str]:
    """Lines of /proc/self/mounts matching the regex pattern."""
    with open("/proc/self/mounts") as f:
        return [line.strip() for line in f if re.search(pattern, line)]


def action_sequence(calls: list[dict]) -> list[str]:
    """The actions of a call log with consecutive repeats (waiter polls) folded."""
    seq: list[str] = []
    for call in calls:
        if not seq or seq[-1] != call["action"]:
            seq.append(call["action"])
    return seq


def loops_backed_below(directory: Path) -> list[str]:
    """Loop devices whose backing file lies below directory (e.g. a lab's state dir)."""
    proc = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"], check=False,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    prefix = str(directory.resolve()).rstrip("/") + "/"
    return [d["name"] for d in json.loads(proc.stdout).get("loopdevices", [])
            if (d.get("back-file") or "").startswith(prefix)]


def check_prerequisites() -> None:
    """Fails (never skips) when the builds cannot run here."""
    if os.geteuid() != 0:
        pytest.fail("packer builds in the lab need root (loop devices, mounts, chroot)")
    if not os.path.exists(PACKER):
        pytest.fail(f"{PACKER} missing: apt-get install packer (Debian's 1.6.6)")


def settled_leaks(lab: Lab, settle_seconds: float) -> tuple[bool, str]:
    """`labctl leaks`, asked again for up to `settle_seconds` until clean.

    The report also shows what other labs and builds on this host hold right
    now (their device nodes, mounts under the default mount root, the shared
    lock); a leak of ours never goes away by itself, theirs do.
    """
    deadline = time.monotonic() + settle_seconds
    clean, report = lab.leaks()
    while not clean and time.monotonic() < deadline:
        time.sleep(2)
        clean, report = lab.leaks()
    return clean, report


@contextlib.contextmanager
def running_lab(name: str, state_dir: Path, device_style: str, settle_seconds: float = 0):
    """A started lab; it is always stopped, its leak report must be clean
    (see settled_leaks) and no loop device may remain after the stop."""
    check_prerequisites()
    started = Lab.start(name, state_dir, device_style)
    try:
        yield started
    finally:
        try:
            clean, report = settled_leaks(started, settle_seconds)
        finally:
            started.stop()
        assert clean, f"the lab's leak report at the end is not clean:\n{report}"
        assert loops_backed_below(state_dir) == [], "loop devices left after labctl stop"
