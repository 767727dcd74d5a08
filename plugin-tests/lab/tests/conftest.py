"""Fixtures: labs started through labctl (as users and CI do), stopped by
finalizers that also prove the lab left nothing behind."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

LAB_DIR = Path(__file__).resolve().parent.parent
LABCTL = str(LAB_DIR / "labctl")
sys.path.insert(0, str(LAB_DIR))

from ec2lab import blockdev
from ec2lab.config import LAB_ACCESS_KEY, LAB_SECRET_KEY, Timings

_counter = itertools.count()
DEFAULT_TIMINGS = {k: v for k, v in asdict(Timings()).items() if k != "device_withhold"}


def labctl(*args: str, name: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run labctl, returning the completed process."""
    cmd = [sys.executable, LABCTL] + (["--name", name] if name else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Lab:
    """A running lab as seen by a test."""

    name: str
    info: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.info['ec2_port']}"

    @property
    def instance_id(self) -> str:
        return self.info["instance_id"]

    @property
    def az(self) -> str:
        return self.info["availability_zone"]

    @property
    def state_dir(self) -> Path:
        return Path(self.info["state_dir"])

    def client(self, service: str = "ec2", region: str | None = None) -> Any:
        return boto3.client(
            service,
            region_name=region or self.info["region"],
            endpoint_url=self.endpoint,
            aws_access_key_id=LAB_ACCESS_KEY,
            aws_secret_access_key=LAB_SECRET_KEY,
        )

    def control(self, method: str, path: str, body: Any = None) -> Any:
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.endpoint}/_lab/{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def calls(self, action: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.control("GET", "calls") if action is None or c["action"] == action]

    def timings(self, **values: float) -> None:
        self.control("POST", "timings", values)

    def import_snapshot(self, path: Path, description: str = "") -> str:
        return self.control("POST", "snapshots/import", {"path": str(path), "description": description})["SnapshotId"]


def assert_no_leaks_after_stop(name: str, state_dir: Path, volume_ids: set[str]) -> None:
    """After `labctl stop`: nothing of this lab remains on the host."""
    assert blockdev.loops_backed_by(state_dir) == []
    assert [c for c in blockdev.claims() if c.lab == name] == []
    assert [m for m in blockdev.mounts() if m.mount_point.startswith(str(state_dir))] == []
    links = list(blockdev.BY_ID_DIR.glob("nvme-Amazon_Elastic_Block_Store_*")) if blockdev.BY_ID_DIR.is_dir() else []
    assert [p for p in links if any(p.name.split("_")[-1].startswith(v.replace("-", "")) for v in volume_ids)] == []
    assert not (blockdev.CLAIMS_DIR.parent / "labs" / f"{name}.json").exists()
    assert not (state_dir / "volumes").exists() and not (state_dir / "snapshots").exists()


class LabPool:
    """Labs started by tests; stop_all stops each and proves nothing leaked."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp
        self.started: list[Lab] = []

    def start(self, *options: str) -> Lab:
        name = f"pt{os.getpid()}-{next(_counter)}"
        state = self.tmp.mktemp(name)
        out = labctl("start", "--name", name, "--state-dir", str(state), "--json", *options)
        lab = Lab(name, json.loads(out.stdout))
        self.started.append(lab)
        return lab

    def stop_all(self) -> None:
        for lab in self.started:
            stop_and_check(lab)


def stop_and_check(lab: Lab) -> None:
    """labctl stop, then assert the daemon is gone and nothing of the lab remains."""
    volume_ids = set()
    try:
        volume_ids = {v["VolumeId"] for v in lab.control("GET", "resources")["volumes"]}
    except OSError:
        pass
    pid = lab.info["pid"]
    labctl("stop", name=lab.name)
    deadline = time.time() + 10
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    assert_no_leaks_after_stop(lab.name, lab.state_dir, volume_ids)
    labctl("stop", name=lab.name)  # idempotent


@pytest.fixture
def start_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Lab]]:
    """Factory: start a lab with labctl options; every lab is stopped and checked at teardown."""
    pool = LabPool(tmp_path_factory)
    yield pool.start
    pool.stop_all()


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One Xen-style lab shared by a module's API tests."""
    pool = LabPool(tmp_path_factory)
    yield pool.start()
    pool.stop_all()


@pytest.fixture
def lab(module_lab: Lab) -> Lab:
    """The module's lab with faults, delays, log and timings reset to defaults."""
    module_lab.control("POST", "reset", {})
    module_lab.timings(**DEFAULT_TIMINGS)
    return module_lab


@pytest.fixture(params=["xen", "nitro"])
def any_lab(request: pytest.FixtureRequest, start_lab: Callable[..., Lab]) -> Lab:
    """A lab of each device style."""
    return start_lab("--device-style", request.param)


def wait_for(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll until predicate() is truthy."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sh(cmd: str) -> str:
    """Run a shell command on the host (must succeed)."""
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
    return proc.stdout


@pytest.fixture
def mounts_cleanup() -> Iterator[list[str]]:
    """Mount points a test creates; unmounted at teardown even on failure."""
    points: list[str] = []
    yield points
    for p in reversed(points):
        subprocess.run(["umount", p], capture_output=True, check=False)


def released(path: str, lab: Lab) -> bool:
    """True if a node of ours is gone after detach. Once our claim is released,
    another lab (e.g. this suite running in a parallel worktree) may take the
    same Xen name at once: a node now claimed by another lab also counts."""
    if not os.path.lexists(path):
        return True
    match = re.match(r"(xvd[a-z]+)", os.path.basename(path))
    claim = blockdev.CLAIMS_DIR / match.group(1) if match else None
    owner = claim.read_text() if claim is not None and claim.exists() else None
    return owner is not None and owner != lab.name


def sparse_disk(path: Path, size_mib: int = 64) -> Path:
    """An empty sparse disk image."""
    with open(path, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    return path
