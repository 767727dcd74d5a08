"""The lab's source images (plugin-tests/lab/images/make-source-image) are real
bootable-layout root disks: right partition table, clean ext4, a busybox
userland that runs in a chroot, and a systemd-style /etc/resolv.conf symlink.

Inspected with debugfs (no mount needed) and, for the chroot check, with a real
loop device and mount that are always removed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from baseline_support import IMAGES_DIR

PART_OFFSET = 1024 * 1024


def make_image(cache: Path, layout: str, *extra: str) -> Path:
    proc = subprocess.run([sys.executable, str(IMAGES_DIR / "make-source-image"), "--layout", layout,
                           "--cache-dir", str(cache), *extra], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def debugfs(image: Path, request: str, offset: int) -> str:
    """debugfs's answer (stdout and stderr: it reports "File not found" on stderr)."""
    spec = f"{image}?offset={offset}" if offset else str(image)
    proc = subprocess.run(["debugfs", "-R", request, spec], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("image-cache")


@pytest.fixture(scope="module")
def partitioned(cache: Path) -> Path:
    return make_image(cache, "partitioned")


@pytest.fixture(scope="module")
def whole(cache: Path) -> Path:
    return make_image(cache, "whole")


def test_partitioned_image_has_one_linux_partition_from_1mib_to_the_end(partitioned: Path):
    out = subprocess.run(["partx", "--noheadings", "--raw", "-o", "NR,START,SECTORS,TYPE", str(partitioned)],
                         capture_output=True, text=True, check=True).stdout.split()
    total_sectors = partitioned.stat().st_size // 512
    assert out == ["1", "2048", str(total_sectors - 2048), "0x83"]
    label = subprocess.run(["blkid", "-p", "-o", "value", "-s", "PTTYPE", str(partitioned)], check=False,
                           capture_output=True, text=True).stdout.strip()
    assert label == "dos"


def test_images_are_small_and_sparse(partitioned: Path, whole: Path):
    for image in (partitioned, whole):
        st = image.stat()
        assert 64 * 2**20 <= st.st_size <= 128 * 2**20
        assert st.st_blocks * 512 < st.st_size / 4, "image is not sparse"


@pytest.mark.parametrize("layout,offset", [("partitioned", PART_OFFSET), ("whole", 0)])
def test_filesystem_is_clean_ext4_with_a_busybox_root_tree(cache: Path, layout: str, offset: int):
    image = make_image(cache, layout)
    assert "Filesystem volume name:   labroot" in debugfs(image, "stats", offset)
    assert "Fast link dest: \"/bin/busybox\"" in debugfs(image, "stat /bin/sh", offset)
    for applet in ("cat", "cp", "grep", "mkdir", "ls", "sed", "uname"):
        assert "Type: symlink" in debugfs(image, f"stat /bin/{applet}", offset), applet
    assert "Type: regular" in debugfs(image, "stat /bin/busybox", offset)
    assert "Mode:  01777" in debugfs(image, "stat /tmp", offset)
    assert "Mode:  0700" in debugfs(image, "stat /root", offset)
    for name in ("os-release", "passwd", "group", "hosts", "hostname", "lab-source-image"):
        assert "Type: regular" in debugfs(image, f"stat /etc/{name}", offset), name
    assert debugfs(image, "cat /etc/lab-source-image", offset).startswith(f"lab-source-image layout={layout} ")
    assert "root:x:0:0:root:/root:/bin/sh" in debugfs(image, "cat /etc/passwd", offset)


@pytest.mark.parametrize("layout,offset", [("partitioned", PART_OFFSET), ("whole", 0)])
def test_resolv_conf_is_a_dangling_systemd_style_symlink(cache: Path, layout: str, offset: int):
    image = make_image(cache, layout)
    stat = debugfs(image, "stat /etc/resolv.conf", offset)
    assert "Type: symlink" in stat
    assert 'Fast link dest: "../run/systemd/resolve/stub-resolv.conf"' in stat
    # /run/systemd/resolve exists (as after package install) but the stub file
    # does not: /run is a tmpfs at run time on real images.
    assert "Type: directory" in debugfs(image, "stat /run/systemd/resolve", offset)
    assert "File not found" in debugfs(image, "stat /run/systemd/resolve/stub-resolv.conf", offset)


def test_whole_layout_has_no_partition_table(whole: Path):
    proc = subprocess.run(["partx", "--noheadings", "--raw", str(whole)], check=False, capture_output=True, text=True)
    assert proc.returncode != 0 or proc.stdout.strip() == ""
    fstype = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(whole)], check=False,
                            capture_output=True, text=True).stdout.strip()
    assert fstype == "ext4"


def test_second_run_reuses_the_cached_image(cache: Path, partitioned: Path):
    mtime = partitioned.stat().st_mtime_ns
    started = time.monotonic()
    again = make_image(cache, "partitioned")
    assert again == partitioned
    assert partitioned.stat().st_mtime_ns == mtime
    assert time.monotonic() - started < 10
    rebuilt = make_image(cache, "partitioned", "--force")
    assert rebuilt == partitioned and partitioned.stat().st_mtime_ns != mtime


@contextlib.contextmanager
def attached_loop(image: Path):
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        yield loop
    finally:
        subprocess.run(["partx", "-d", loop], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)


@contextlib.contextmanager
def mounted(device: str, target: Path):
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "ro", device, str(target)], capture_output=True, text=True, check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)


def test_busybox_shell_runs_in_a_chroot_of_the_partitioned_image(partitioned: Path, tmp_path: Path):
    if os.geteuid() != 0:
        pytest.fail("needs root for losetup/mount/chroot")
    copy = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(partitioned), str(copy)], check=True)
    with attached_loop(copy) as loop:
        # The kernel here does not scan loop partition tables; partx adds them.
        subprocess.run(["partx", "-a", loop], capture_output=True, text=True, check=True)
        with mounted(loop + "p1", tmp_path / "root") as root:
            proc = subprocess.run(["chroot", str(root), "/bin/sh", "-c",
                                   "echo hello from $(uname -s); cat /etc/os-release | grep ^ID=; id -u"], check=False,
                                  capture_output=True, text=True, timeout=30)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.splitlines() == ["hello from Linux", "ID=lab-busybox", "0"]
    assert str(copy) not in subprocess.run(["losetup", "-a"], check=False, capture_output=True, text=True).stdout


def test_building_an_image_evicts_all_but_the_newest_other_of_its_layout(tmp_path: Path):
    stale = []
    for age, key in enumerate(["0000000000000001", "0000000000000002", "0000000000000003"]):
        old = tmp_path / f"source-busybox-whole-{key}.img"
        old.write_bytes(b"old")
        os.utime(old, (time.time() - 3600 * (age + 1),) * 2)
        stale.append(old)
    other_layout = tmp_path / "source-busybox-partitioned-0000000000000009.img"
    other_layout.write_bytes(b"other")
    os.utime(other_layout, (time.time() - 86400,) * 2)

    built = make_image(tmp_path, "whole")

    # The newest stale one (an hour old) stays, for another checkout using it.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([built.name, stale[0].name, other_layout.name])
    # Reusing the cached image evicts nothing.
    assert make_image(tmp_path, "whole") == built and stale[0].exists()
