"""The running lab: configuration, host instance, block devices and the clock
that moves resources out of their transitional states."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from . import blockdev
from .config import LAB_ACCOUNT, LabConfig
from .control import Control

log = logging.getLogger("ec2lab")

GIB = 1024**3


class Runtime:
    """Process-wide lab state. One lab daemon = one Runtime."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        #: Serialises every EC2 request and the background clock, so moto's
        #: dict-based backends never see concurrent mutation.
        self.lock = threading.RLock()
        self.control = Control()
        self.attached: dict[str, blockdev.AttachedDevice] = {}
        self.instance_id = ""
        self.host_image_id = ""
        self.private_ip = ""
        self.availability_zone = config.region + "a"
        self.root_volume_id = ""
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        for sub in ("volumes", "snapshots"):
            (config.state_path / sub).mkdir(parents=True, exist_ok=True)

    # ----- file store -------------------------------------------------
    def volume_file(self, volume_id: str) -> Path:
        """Backing file of a volume."""
        return self.config.state_path / "volumes" / f"{volume_id}.img"

    def snapshot_file(self, snapshot_id: str) -> Path:
        """Backing file of a snapshot."""
        return self.config.state_path / "snapshots" / f"{snapshot_id}.img"

    @staticmethod
    def copy_file(src: Path, dst: Path, size_gib: int | None = None) -> None:
        """Copy a disk image keeping it sparse (reflink where the fs can), then
        grow it to `size_gib` if given."""
        subprocess.run(
            ["cp", "--reflink=auto", "--sparse=always", str(src), str(dst)],
            check=True,
            capture_output=True,
        )
        if size_gib is not None and dst.stat().st_size < size_gib * GIB:
            os.truncate(dst, size_gib * GIB)

    @staticmethod
    def sparse_file(path: Path, size_gib: int) -> None:
        """Create an empty sparse file of `size_gib`."""
        with open(path, "wb") as f:
            f.truncate(size_gib * GIB)

    # ----- device names -----------------------------------------------
    def host_disk_name(self, requested: str) -> str:
        """The /dev name under which the kernel would show a requested device."""
        if self.config.device_style == "xen":
            base = os.path.basename(requested)
            return "xvd" + base[2:] if base.startswith("sd") else base
        index = 1
        while True:
            name = f"nvme{index}n1"
            if not (Path("/dev") / name).exists() and not (blockdev.CLAIMS_DIR / name).exists():
                return name
            index += 1

    # ----- attach / detach --------------------------------------------
    def attach_host_device(self, volume_id: str, requested: str) -> blockdev.AttachedDevice:
        """Loop-attach a volume's file and schedule its nodes to appear."""
        disk = self.host_disk_name(requested)
        if (Path("/dev") / disk).exists() or not blockdev.claim(disk, self.config.name):
            raise blockdev.BlockDeviceError(f"/dev/{disk} is already present on the host (another lab or a real disk)")
        try:
            loop = blockdev.losetup_attach(self.volume_file(volume_id))
        except Exception:
            blockdev.release(disk)
            raise
        blockdev.sync_partitions(loop)
        dev = blockdev.AttachedDevice(volume_id, loop, disk, self.config.device_style)
        self.attached[volume_id] = dev
        timings = self.config.timings
        if not timings.device_withhold:
            delay = timings.device_appear
            if delay <= 0:
                dev.show()
            else:
                threading.Timer(delay, self._show_later, args=(volume_id, dev)).start()
        return dev

    def _show_later(self, volume_id: str, dev: blockdev.AttachedDevice) -> None:
        with self.lock:
            if self.attached.get(volume_id) is dev:
                dev.show()

    def detach_host_device(self, volume_id: str) -> None:
        """Remove a volume's nodes and loop device."""
        dev = self.attached.pop(volume_id, None)
        if dev is None:
            return
        dev.teardown()
        blockdev.release(dev.disk)

    def show_withheld(self) -> list[str]:
        """Make nodes of all attached-but-invisible devices appear now."""
        shown = []
        with self.lock:
            for dev in self.attached.values():
                if not dev.visible:
                    dev.show()
                    shown.append(dev.disk)
        return shown

    # ----- clock ------------------------------------------------------
    def tick(self) -> None:
        """Advance transitional states whose time has come (called per request
        and by the poller)."""
        from moto.ec2.models import ec2_backends

        now = time.time()
        for backend in list(ec2_backends[LAB_ACCOUNT].values()):
            for snap in backend.snapshots.values():
                if snap.status == "pending" and now >= getattr(snap, "lab_ready_at", 0):
                    snap.status = "completed"
            for ami in backend.amis.values():
                if ami.state == "pending" and now >= getattr(ami, "lab_ready_at", 0):
                    ami.state = "available"
            for volume in backend.volumes.values():
                att = volume.attachment
                if att is None:
                    continue
                if getattr(att, "lab_busy", False):
                    host = self.attached.get(volume.id)
                    if host is None or not host.busy_mounts():
                        from .emulation import begin_detach

                        begin_detach(volume)
                    continue
                detach_at = getattr(att, "lab_detach_at", None)
                if detach_at is not None and now >= detach_at:
                    finish_detach(volume)
                elif getattr(att, "lab_bdt", None) is not None:
                    att.lab_bdt.status = att.status

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            try:
                with self.lock:
                    self.tick()
                    for dev in list(self.attached.values()):
                        if dev.visible:
                            blockdev.sync_partitions(dev.loop)
                            dev.refresh_partitions()
            except Exception:  # keep polling; the log tells what went wrong
                log.exception("poller")

    def start_poller(self) -> None:
        """Start the background clock/partition poller."""
        self._poller = threading.Thread(target=self._poll, daemon=True, name="ec2lab-poller")
        self._poller.start()

    def shutdown(self) -> list[str]:
        """Stop the poller, unmount what uses lab devices, free every device."""
        self._stop.set()
        done = []
        with self.lock:
            for volume_id, dev in list(self.attached.items()):
                for mount in dev.busy_mounts():
                    blockdev.unmount_tree(mount.mount_point)
                    done.append(f"unmounted {mount.mount_point}")
                self.detach_host_device(volume_id)
                done.append(f"detached {volume_id} ({dev.loop}, /dev/{dev.disk})")
        return done

    def remove_store(self) -> None:
        """Delete the volume and snapshot files."""
        for sub in ("volumes", "snapshots"):
            shutil.rmtree(self.config.state_path / sub, ignore_errors=True)


def finish_detach(volume: Any) -> None:
    """Complete a detach: drop the attachment from the volume and the instance."""
    att = volume.attachment
    try:
        del att.instance.block_device_mapping[att.device]
    except KeyError:
        pass
    att.status = "detached"
    volume.attachment = None


#: The runtime of this process (set by the daemon before serving).
current: Runtime | None = None


def get() -> Runtime:
    """The current runtime; fails loudly if the lab is not initialised."""
    if current is None:
        raise RuntimeError("ec2lab runtime not initialised")
    return current
