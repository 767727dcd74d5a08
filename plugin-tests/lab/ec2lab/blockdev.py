"""Linux side of the emulated EBS: loop devices, partitions, device nodes, mounts.

The lab makes an attached volume look the way the EC2 kernel would show it.
The loop device itself is an implementation detail; what a builder sees are
the nodes we create with mknod (same major:minor as the loop device or its
partitions) and, for Nitro, the udev-style by-id symlinks.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: Where the EC2 Nitro udev rules put their stable names.
BY_ID_DIR = Path("/dev/disk/by-id")
#: Lock file HashiCorp's builder (and ours) takes while picking a device.
PACKER_CHROOT_LOCK = Path("/var/lock/packer-chroot/lock")
#: Default parent of the builder's mount points.
PACKER_MOUNT_ROOT = "/mnt/packer-amazon-chroot-volumes"
#: Registry of device names claimed by running labs (/dev is global).
CLAIMS_DIR = Path("/run/ec2lab/claims")


class BlockDeviceError(RuntimeError):
    """A host command or device operation failed."""


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command, raising BlockDeviceError with its stderr on failure."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BlockDeviceError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def losetup_attach(path: Path) -> str:
    """Attach a file to a free loop device and return its path (/dev/loopN)."""
    return run(["losetup", "--find", "--show", str(path)]).stdout.strip()


def losetup_detach(loop: str) -> None:
    """Detach a loop device (after removing its partitions from the kernel)."""
    run(["partx", "-d", loop], check=False)
    run(["losetup", "-d", loop], check=False)


def loops_backed_by(directory: Path) -> list[tuple[str, str]]:
    """Loop devices whose backing file lies under `directory`: [(loop, file)]."""
    proc = run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    prefix = str(directory).rstrip("/") + "/"
    found = []
    for dev in json.loads(proc.stdout).get("loopdevices", []):
        back = (dev.get("back-file") or "").removesuffix(" (deleted)")
        if back.startswith(prefix):
            found.append((dev["name"], back))
    return found


def loop_partitions(loop: str) -> dict[int, tuple[int, int]]:
    """Partitions the kernel currently knows for a loop device: {number: (major, minor)}."""
    name = os.path.basename(loop)
    sysdir = Path("/sys/block") / name
    parts: dict[int, tuple[int, int]] = {}
    if not sysdir.is_dir():
        return parts
    for entry in sysdir.iterdir():
        if entry.name.startswith(name + "p") and (entry / "partition").exists():
            number = int((entry / "partition").read_text().strip())
            major, minor = (entry / "dev").read_text().strip().split(":")
            parts[number] = (int(major), int(minor))
    return parts


def table_partitions(loop: str) -> dict[int, tuple[int, int]]:
    """Partitions in the on-disk table: {number: (start, sectors)}; {} without a table."""
    proc = run(["partx", "--show", "--noheadings", "-o", "NR,START,SECTORS", loop], check=False)
    parts = {}
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            nr, start, sectors = line.split()
            parts[int(nr)] = (int(start), int(sectors))
    return parts


def kernel_geometry(loop: str) -> dict[int, tuple[int, int]]:
    """Partitions the kernel knows: {number: (start, sectors)} from sysfs."""
    name = os.path.basename(loop)
    geometry = {}
    for number in loop_partitions(loop):
        sysdir = Path("/sys/block") / name / f"{name}p{number}"
        try:
            geometry[number] = (int((sysdir / "start").read_text()), int((sysdir / "size").read_text()))
        except FileNotFoundError:
            pass
    return geometry


def sync_partitions(loop: str) -> None:
    """Bring the kernel's partitions of a loop device in line with its table.

    The kernel on these VMs does not scan loop devices by itself. `partx -u`
    would delete and re-add every partition (new minor numbers under a
    builder's feet), so only partitions that changed or vanished are deleted
    and only missing ones added. Errors (partition in use) are ignored.
    """
    table = table_partitions(loop)
    kernel = kernel_geometry(loop)
    for number, geometry in kernel.items():
        if table.get(number) != geometry:
            run(["partx", "-d", "--nr", str(number), loop], check=False)
    if any(number not in kernel or kernel[number] != geometry for number, geometry in table.items()):
        run(["partx", "-a", loop], check=False)


def dev_numbers(path: str) -> tuple[int, int]:
    """(major, minor) of a block device node."""
    st = os.stat(path)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def make_node(path: Path, numbers: tuple[int, int]) -> None:
    """Create a block device node (replacing a stale node we own)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mknod(path, 0o660 | stat.S_IFBLK, os.makedev(*numbers))


def remove_path(path: Path) -> bool:
    """Remove a node or symlink if present; True if something was removed."""
    if path.exists() or path.is_symlink():
        path.unlink()
        return True
    return False


@dataclass
class MountEntry:
    """One line of /proc/self/mountinfo."""

    numbers: tuple[int, int]
    mount_point: str
    source: str


def mounts() -> list[MountEntry]:
    """Current mounts of this process' mount namespace."""
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            major, minor = fields[2].split(":")
            sep = fields.index("-")
            point = fields[4].encode().decode("unicode_escape")
            entries.append(MountEntry((int(major), int(minor)), point, fields[sep + 2]))
    return entries


def mounts_of(numbers: set[tuple[int, int]]) -> list[MountEntry]:
    """Mounts whose device is one of `numbers`."""
    return [m for m in mounts() if m.numbers in numbers]


def unmount_tree(point: str) -> None:
    """Unmount `point` and everything mounted below it, deepest first."""
    prefix = point.rstrip("/") + "/"
    points = sorted(
        {m.mount_point for m in mounts() if m.mount_point == point or m.mount_point.startswith(prefix)},
        key=len,
        reverse=True,
    )
    for p in points:
        if run(["umount", p], check=False).returncode != 0:
            run(["umount", "-l", p], check=False)


def lock_held(path: Path = PACKER_CHROOT_LOCK) -> bool:
    """True if someone holds an exclusive flock on the packer chroot lock file."""
    if not path.exists():
        return False
    with open(path, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def lock_holders(path: Path = PACKER_CHROOT_LOCK) -> list[int]:
    """PIDs holding an flock on `path`, from /proc/locks (lines like
    `1: FLOCK ADVISORY WRITE <pid> <major hex>:<minor hex>:<inode> 0 EOF`)."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pids = []
    for line in lines:
        fields = line.split()
        # Blocked waiters are listed as "-> FLOCK ...": only holders count.
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                pids.append(int(fields[4]))
        except ValueError:
            continue
    return pids


def lab_of_process(pid: int) -> str | None:
    """The LAB_NAME in a process's environment (builds run with the lab's
    exports), or None when it has none or cannot be read."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(b"LAB_NAME="):
            return entry[len(b"LAB_NAME="):].decode(errors="replace")
    return None


@dataclass
class Claim:
    """A device name (e.g. xvdf or nvme1n1) claimed by one lab in the global /dev."""

    name: str
    lab: str


def claim(name: str, lab: str) -> bool:
    """Atomically claim a device name for a lab; False if another claim exists."""
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(CLAIMS_DIR / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(lab)
    return True


def release(name: str) -> None:
    """Release a device-name claim."""
    try:
        (CLAIMS_DIR / name).unlink()
    except FileNotFoundError:
        pass


def claims() -> list[Claim]:
    """All current claims."""
    if not CLAIMS_DIR.is_dir():
        return []
    return [Claim(p.name, p.read_text()) for p in CLAIMS_DIR.iterdir()]


@dataclass
class AttachedDevice:
    """The host-side state of one attached volume."""

    volume_id: str
    loop: str
    #: Name under /dev of the whole disk (xvdf or nvme1n1).
    disk: str
    style: str
    #: Partition numbers whose nodes we created.
    partitions: set[int] = field(default_factory=set)
    #: True once the disk node was created (after the configured delay).
    visible: bool = False

    @property
    def by_id(self) -> Path:
        """Nitro by-id symlink of the whole disk."""
        return BY_ID_DIR / f"nvme-Amazon_Elastic_Block_Store_{self.volume_id.replace('-', '')}"

    def part_name(self, number: int) -> str:
        """/dev name of a partition, as the kernel would name it."""
        return f"{self.disk}p{number}" if self.style == "nitro" else f"{self.disk}{number}"

    def numbers(self) -> set[tuple[int, int]]:
        """major:minor of the loop device and all its kernel partitions."""
        nums = set(loop_partitions(self.loop).values())
        try:
            nums.add(dev_numbers(self.loop))
        except FileNotFoundError:
            pass
        return nums

    def show(self) -> None:
        """Create the disk node (and by-id link) as the kernel/udev would."""
        make_node(Path("/dev") / self.disk, dev_numbers(self.loop))
        if self.style == "nitro":
            BY_ID_DIR.mkdir(parents=True, exist_ok=True)
            remove_path(self.by_id)
            os.symlink(f"../../{self.disk}", self.by_id)
        self.visible = True
        self.refresh_partitions()

    def refresh_partitions(self) -> None:
        """Keep partition nodes in step with the kernel's view of the loop device."""
        if not self.visible:
            return
        current = loop_partitions(self.loop)
        for number, nums in current.items():
            node = Path("/dev") / self.part_name(number)
            if number not in self.partitions or not node.exists() or dev_numbers(str(node)) != nums:
                make_node(node, nums)
                if self.style == "nitro":
                    link = Path(f"{self.by_id}-part{number}")
                    remove_path(link)
                    os.symlink(f"../../{self.part_name(number)}", link)
                self.partitions.add(number)
        for number in sorted(self.partitions - set(current)):
            self._remove_partition(number)

    def _remove_partition(self, number: int) -> None:
        remove_path(Path("/dev") / self.part_name(number))
        if self.style == "nitro":
            remove_path(Path(f"{self.by_id}-part{number}"))
        self.partitions.discard(number)

    def busy_mounts(self) -> list[MountEntry]:
        """Mounts that use this disk or one of its partitions."""
        return mounts_of(self.numbers())

    def teardown(self) -> None:
        """Remove nodes and links, drop partitions, free the loop device."""
        for number in sorted(self.partitions):
            self._remove_partition(number)
        remove_path(Path("/dev") / self.disk)
        if self.style == "nitro":
            remove_path(self.by_id)
        self.visible = False
        losetup_detach(self.loop)
