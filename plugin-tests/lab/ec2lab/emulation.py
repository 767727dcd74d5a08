"""What moto lacks for an EBS-backed AMI workflow, patched into moto in-process.

Every patched action keeps moto's objects as the source of truth (so moto's
own Describe*/filters/tags keep working) and adds: real backing files, real
loop devices for attachments on the lab's host instance, transitional states
with configurable durations, and AWS's validation and error codes where a
wrong call from a client must fail as it would on EC2.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.amis import Ami
from moto.ec2.models.elastic_block_store import Snapshot, Volume, VolumeAttachment
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.utils import random_ami_id, random_snapshot_id
from moto.kms.exceptions import NotFoundException as KmsNotFound
from moto.packages.boto.ec2.blockdevicemapping import BlockDeviceType

from . import blockdev, runtime
from .config import LAB_ACCOUNT

GIB = runtime.GIB
#: Device names AWS accepts for EBS attachments on Linux instances.
DEVICE_RE = re.compile(r"^/dev/(sd[b-z]|xvd[b-z]|xvd[a-z][a-z]|sd[a-z][0-9]*|xvd[a-z][0-9]*)$")
#: Characters AWS allows in AMI names.
AMI_NAME_RE = re.compile(r"^[A-Za-z0-9 ()\[\]./\-'@_]{3,128}$")


def _error(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


def _now() -> float:
    return time.time()


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


def _backend_for(region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[LAB_ACCOUNT][region]


# ---------------------------------------------------------------------------
# Transitional states on moto's models
# ---------------------------------------------------------------------------


def _volume_status(self: Volume) -> str:
    if self.attachment:
        return "in-use"
    if _now() < getattr(self, "lab_ready_at", 0):
        return "creating"
    return "available"


def _attachment_status_get(self: VolumeAttachment) -> str:
    status = self.__dict__.get("_lab_status", "attached")
    if getattr(self, "lab_busy", False):
        return "busy"
    if getattr(self, "lab_detach_at", None) is not None and status != "detached":
        return "detaching"
    if status == "attached" and _now() < getattr(self, "lab_attached_at", 0):
        return "attaching"
    return status


def _attachment_status_set(self: VolumeAttachment, value: str) -> None:
    self.__dict__["_lab_status"] = value


def _snapshot_progress(self: Snapshot) -> str:
    if self.status == "completed":
        return "100%"
    start = getattr(self, "lab_started_at", _now())
    ready = getattr(self, "lab_ready_at", _now())
    span = max(ready - start, 1e-6)
    return f"{min(99, int((_now() - start) / span * 100))}%"


def _snapshot_volume_size(self: Snapshot) -> int:
    return getattr(self, "lab_size", None) or self.volume.size


def _snapshot_completion_time(self: Snapshot) -> datetime | None:
    """When a completed snapshot became complete (EC2's CompletionTime)."""
    if self.status != "completed":
        return None
    ready = getattr(self, "lab_ready_at", None)
    return datetime.fromtimestamp(ready, UTC) if ready is not None else self.start_time


Volume.status = property(_volume_status)  # type: ignore[assignment,method-assign]
VolumeAttachment.status = property(_attachment_status_get, _attachment_status_set)  # type: ignore[assignment]
Snapshot.progress = property(_snapshot_progress)  # type: ignore[assignment,method-assign]
Snapshot.volume_size = property(_snapshot_volume_size)  # type: ignore[assignment,method-assign]
Snapshot.completion_time = property(_snapshot_completion_time)  # type: ignore[attr-defined]
#: Only snapshot copies say how they were copied (DescribeSnapshots' TransferType,
#: and CompletionDurationMinutes for a time-based copy); others leave both out.
Snapshot.transfer_type = None  # type: ignore[attr-defined]
Snapshot.completion_duration_minutes = None  # type: ignore[attr-defined]
#: A fault "action" no request has: CopyImage succeeds, but the copy ends
#: `failed` with the fault's code and message as StateReason (EC2 does that
#: when, e.g., the KMS key cannot be used once the copy runs).
COPY_FAILS = "CopyImageFails"
#: EC2's bounds for a time-based copy's completion duration, in minutes.
COPY_DURATION_STEP = 15
COPY_DURATION_MAX = 2880


def _new_snapshot(backend: Any, volume: Any, description: str, size: int, encrypted: bool, kms_key_id: str | None) -> Snapshot:
    """A pending snapshot owned by the lab account whose file the caller fills."""
    snap = Snapshot(backend, random_snapshot_id(), volume, description, encrypted=encrypted, kms_key_id=kms_key_id)
    snap.encrypted = encrypted
    snap.lab_size = size
    snap.status = "pending"
    snap.lab_started_at = _now()
    snap.lab_ready_at = _now() + runtime.get().config.timings.snapshot
    backend.snapshots[snap.id] = snap
    return snap


def import_snapshot(path: str, description: str, region: str | None = None) -> Snapshot:
    """Copy a disk image into the store as a completed snapshot (lab control API)."""
    rt = runtime.get()
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"no such disk image: {path}")
    size = max(1, -(-src.stat().st_size // GIB))
    backend = _backend_for(region or rt.config.region)
    placeholder = SimpleNamespace(id="vol-ffffffff", size=size)
    snap = _new_snapshot(backend, placeholder, description, size, False, None)
    rt.copy_file(src, rt.snapshot_file(snap.id), size)
    snap.status = "completed"
    snap.lab_ready_at = _now()
    return snap


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


class LabAmi(Ami):
    """An AMI registered through the lab: keeps exactly what was registered."""

    def __init__(self, backend: Any, ami_id: str, **attrs: Any) -> None:
        self.ec2_backend = backend
        self.id = ami_id
        self.owner_id = backend.account_id
        self.owner_alias = None
        self.image_type = "machine"
        self.platform = None
        self.platform_details = "Linux/UNIX"
        self.usage_operation = "RunInstances"
        self.hypervisor = "xen"
        self.root_device_type = "ebs"
        self.creation_date = datetime.now(UTC)
        self.instance_id = None
        self.launch_permissions: list[dict[str, str]] = []
        self.lab_product_codes: set[str] = set()
        self.lab_mappings: list[dict[str, Any]] = []
        self.description = None
        self.kernel_id = None
        self.ramdisk_id = None
        self.ena_support = None
        self.sriov = None
        self.sriov_net_support = None
        self.boot_mode = None
        self.tpm_support = None
        self.uefi_data = None
        self.imds_support = None
        #: (code, message) when the image is to end `failed` instead of `available`.
        self.lab_failure: tuple[str, str] | None = None
        self.deprecation_time = None
        self.deregistration_protection = "disabled"
        self.lab_protection_until = 0.0
        self.source_image_id = None
        self.source_image_region = None
        self.last_launched_time = None
        for key, value in attrs.items():
            setattr(self, key, value)
        self.sriov_net_support = self.sriov

    @property
    def block_device_mappings(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.lab_mappings

    @property
    def state(self) -> str:  # type: ignore[override]
        return self.__dict__.get("_lab_state", "available")

    @state.setter
    def state(self, value: str) -> None:
        # The clock (runtime.tick) makes pending images available; a doomed copy fails instead.
        if value == "available" and self.__dict__.get("lab_failure"):
            value = "failed"
        self.__dict__["_lab_state"] = value

    @property
    def state_reason(self) -> dict[str, str] | None:
        """StateReason of a failed image, as DescribeImages shows it."""
        if self.state != "failed" or not self.lab_failure:
            return None
        code, message = self.lab_failure
        return {"Code": code, "Message": message}

    @property
    def image_location(self) -> str:  # type: ignore[override]
        return f"{self.owner_id}/{self.name}"

    @image_location.setter
    def image_location(self, _value: str) -> None:
        pass

    @property
    def product_codes(self) -> list[dict[str, str]]:  # type: ignore[override]
        """ProductCodes as DescribeImages returns them."""
        return [{"ProductCodeId": c, "ProductCodeType": "marketplace"} for c in sorted(self.lab_product_codes)]

    @product_codes.setter
    def product_codes(self, _value: object) -> None:
        pass

    @property
    def public(self) -> bool:
        return self.is_public

    @property
    def snapshot_ids(self) -> list[str]:
        """Snapshots referenced by the EBS mappings."""
        return [m["Ebs"]["SnapshotId"] for m in self.lab_mappings if m.get("Ebs", {}).get("SnapshotId")]

    @property
    def is_deprecated(self) -> bool:
        """DeprecationTime is set and has passed."""
        if not self.deprecation_time:
            return False
        when = datetime.strptime(self.deprecation_time, "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
        return when <= datetime.now(UTC)

    def get_filter_value(self, filter_name: str, method_name: str | None = None) -> Any:
        ebs = [m for m in self.lab_mappings if "Ebs" in m]
        simple = {
            "root-device-type": self.root_device_type,
            "root-device-name": self.root_device_name,
            "ena-support": str(bool(self.ena_support)).lower(),
            "boot-mode": self.boot_mode,
            "hypervisor": self.hypervisor,
            "image-type": self.image_type,
            "description": self.description,
            "ramdisk-id": self.ramdisk_id,
            "sriov-net-support": self.sriov,
            "tpm-support": self.tpm_support,
            "imds-support": self.imds_support,
            "is-public": str(self.is_public).lower(),
            "creation-date": _iso(self.creation_date),
            "deprecation-time": self.deprecation_time,
            "source-image-id": self.source_image_id,
            "source-image-region": self.source_image_region,
            "product-code": sorted(self.lab_product_codes),
        }
        if filter_name in simple:
            return simple[filter_name]
        per_mapping = {
            "block-device-mapping.device-name": lambda m: m["DeviceName"],
            "block-device-mapping.snapshot-id": lambda m: m["Ebs"].get("SnapshotId"),
            "block-device-mapping.volume-size": lambda m: str(m["Ebs"].get("VolumeSize")),
            "block-device-mapping.volume-type": lambda m: m["Ebs"].get("VolumeType"),
            "block-device-mapping.delete-on-termination": lambda m: str(m["Ebs"].get("DeleteOnTermination")).lower(),
            "block-device-mapping.encrypted": lambda m: str(m["Ebs"].get("Encrypted")).lower(),
        }
        if filter_name in per_mapping:
            return [per_mapping[filter_name](m) for m in ebs]
        return super().get_filter_value(filter_name, method_name)


def _image_in_use(backend: Any, snapshot_id: str) -> str | None:
    for ami in backend.amis.values():
        if isinstance(ami, LabAmi) and snapshot_id in ami.snapshot_ids:
            return ami.id
    return None


def _normalise_mappings(backend: Any, mappings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate RegisterImage mappings as EC2 does and fill in the defaults it returns."""
    result = []
    seen: set[str] = set()
    for raw in mappings:
        name = raw.get("DeviceName")
        if not name:
            raise _error("MissingParameter", "The request must contain the parameter blockDeviceMapping.deviceName")
        if name in seen:
            raise _error("InvalidBlockDeviceMapping", f"The device '{name}' is used in more than one block-device mapping")
        seen.add(name)
        if raw.get("NoDevice") is not None:
            result.append({"DeviceName": name, "NoDevice": ""})
            continue
        if raw.get("VirtualName"):
            if not str(raw["VirtualName"]).startswith("ephemeral"):
                raise _error("InvalidBlockDeviceMapping", f"Invalid virtual name {raw['VirtualName']}")
            result.append({"DeviceName": name, "VirtualName": raw["VirtualName"]})
            continue
        ebs_in = raw.get("Ebs") or {}
        ebs: dict[str, Any] = {}
        snapshot_id = ebs_in.get("SnapshotId")
        size = ebs_in.get("VolumeSize")
        size = int(size) if size not in (None, "") else None
        encrypted = _bool(ebs_in.get("Encrypted"))
        if snapshot_id:
            if encrypted is not None:
                raise _error(
                    "InvalidParameterCombination",
                    "The parameter encrypted is invalid. You cannot specify the encrypted flag if specifying a snapshot id in a block device mapping.",
                )
            snap = backend.snapshots.get(snapshot_id)
            if snap is None:
                raise _error("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
            if size is None:
                size = snap.volume_size
            elif size < snap.volume_size:
                raise _error(
                    "InvalidBlockDeviceMapping",
                    f"Volume of size {size}GB is smaller than snapshot '{snapshot_id}', expect size >= {snap.volume_size}GB",
                )
            encrypted = bool(snap.encrypted)
            ebs["SnapshotId"] = snapshot_id
        elif size is None:
            raise _error("InvalidBlockDeviceMapping", f"snapshotId or volumeSize must be given for device {name}")
        volume_type = ebs_in.get("VolumeType") or "gp2"
        ebs.update(
            DeleteOnTermination=_bool(ebs_in.get("DeleteOnTermination")) is not False,
            VolumeSize=size,
            VolumeType=volume_type,
            Encrypted=bool(encrypted),
        )
        iops = ebs_in.get("Iops")
        if volume_type in ("io1", "io2") and not iops:
            raise _error("InvalidParameterDependency", f"The parameter iops must be specified for {volume_type} volumes.")
        if iops and volume_type not in ("io1", "io2", "gp3"):
            raise _error("InvalidParameterCombination", f"The parameter iops is not supported for {volume_type} volumes.")
        if volume_type == "gp3":
            ebs["Iops"] = int(iops or 3000)
            ebs["Throughput"] = int(ebs_in.get("Throughput") or 125)
        elif iops:
            ebs["Iops"] = int(iops)
        if ebs_in.get("Throughput") and volume_type != "gp3":
            raise _error("InvalidParameterCombination", "Throughput is only valid for gp3 volumes.")
        if ebs_in.get("KmsKeyId"):
            ebs["KmsKeyId"] = ebs_in["KmsKeyId"]
        result.append({"DeviceName": name, "Ebs": ebs})
    return result


def register_image(self: AmisResponse) -> ActionResult:
    """RegisterImage honouring every field an EBS-backed AMI has."""
    self.error_on_dryrun()
    rt = runtime.get()
    backend = self.ec2_backend
    name = self._get_param("Name")
    if not name:
        raise _error("MissingParameter", "The request must contain the parameter name")
    if not AMI_NAME_RE.match(name):
        raise _error(
            "InvalidAMIName.Malformed",
            "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'",
        )
    for other in backend.amis.values():
        if other.name == name and other.owner_id == backend.account_id:
            raise _error("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {other.id}")
    mappings = _normalise_mappings(backend, self._get_param("BlockDeviceMappings", []) or [])
    root = self._get_param("RootDeviceName")
    image_location = self._get_param("ImageLocation")
    if not image_location:
        if not root:
            raise _error("InvalidParameterValue", "RootDeviceName is required for an EBS-backed AMI")
        root_map = [m for m in mappings if m["DeviceName"] == root and m.get("Ebs", {}).get("SnapshotId")]
        if not root_map:
            raise _error(
                "InvalidBlockDeviceMapping",
                f"The root device name {root} does not match a block device mapping with a snapshot",
            )
    virtualization = self._get_param("VirtualizationType") or "paravirtual"
    if virtualization not in ("hvm", "paravirtual"):
        raise _error("InvalidParameterValue", f"Invalid virtualization type: {virtualization}")
    architecture = self._get_param("Architecture") or "i386"
    if architecture not in ("i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"):
        raise _error("InvalidParameterValue", f"Invalid architecture: {architecture}")
    ena = _bool(self._get_param("EnaSupport"))
    if ena and virtualization != "hvm":
        raise _error("InvalidParameterCombination", "Enhanced networking with ENA requires HVM virtualization.")
    sriov = self._get_param("SriovNetSupport")
    if sriov not in (None, "simple"):
        raise _error("InvalidParameterValue", f"Invalid value '{sriov}' for sriovNetSupport; only 'simple' is supported")
    boot_mode = self._get_param("BootMode")
    if boot_mode not in (None, "legacy-bios", "uefi", "uefi-preferred"):
        raise _error("InvalidParameterValue", f"Invalid value '{boot_mode}' for bootMode")
    tpm = self._get_param("TpmSupport")
    if tpm not in (None, "v2.0"):
        raise _error("InvalidParameterValue", f"Invalid value '{tpm}' for tpmSupport")
    if tpm and boot_mode not in ("uefi", "uefi-preferred"):
        raise _error("InvalidParameterCombination", "NitroTPM requires the boot mode uefi or uefi-preferred.")
    imds = self._get_param("ImdsSupport")
    if imds not in (None, "v2.0"):
        raise _error("InvalidParameterValue", f"Invalid value '{imds}' for imdsSupport")
    billing = self._get_param("BillingProducts", []) or []
    tags = self._parse_tag_specification()
    ami = LabAmi(
        backend,
        random_ami_id(),
        name=name,
        description=self._get_param("Description"),
        architecture=architecture,
        virtualization_type=virtualization,
        root_device_name=root,
        lab_mappings=mappings,
        kernel_id=self._get_param("KernelId"),
        ramdisk_id=self._get_param("RamdiskId"),
        ena_support=ena,
        sriov=sriov,
        boot_mode=boot_mode,
        tpm_support=tpm,
        uefi_data=self._get_param("UefiData"),
        imds_support=imds,
        billing_products=list(billing),
        state="pending",
        lab_ready_at=_now() + rt.config.timings.image,
    )
    if image_location:
        ami.root_device_type = "instance-store"
    backend.amis[ami.id] = ami
    ami.add_tags(tags.get("image", {}))
    for snapshot_id in ami.snapshot_ids:
        backend.snapshots[snapshot_id].add_tags(tags.get("snapshot", {}))
    return ActionResult({"ImageId": ami.id})


def copy_image(self: AmisResponse) -> ActionResult:
    """CopyImage, also across regions, with new snapshots (new files) and encryption."""
    self.error_on_dryrun()
    rt = runtime.get()
    dest = self.ec2_backend
    source_region = self._get_param("SourceRegion")
    source_id = self._get_param("SourceImageId")
    if not source_region or not source_id:
        raise _error("MissingParameter", "SourceRegion and SourceImageId are required")
    try:
        source_backend = _backend_for(source_region)
    except KeyError:
        raise _error("InvalidParameterValue", f"Invalid source region: {source_region}")
    source = source_backend.amis.get(source_id)
    if source is None:
        raise _error("InvalidAMIID.NotFound", f"The image id '[{source_id}]' does not exist")
    if source.state != "available":
        raise _error("IncorrectState", f"Image {source_id} is not in a valid state ({source.state})")
    if not isinstance(source, LabAmi):
        raise _error("InvalidParameterValue", f"Image {source_id} was not registered through the lab")
    encrypted = _bool(self._get_param("Encrypted")) or False
    kms_key_id = self._get_param("KmsKeyId") or None
    if kms_key_id and not encrypted:
        raise _error("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
    if encrypted:
        from moto.kms import kms_backends

        kms = kms_backends[LAB_ACCOUNT][self.region]
        try:
            key = kms.describe_key(kms_key_id) if kms_key_id else None
        except (KmsNotFound, KeyError, AttributeError):  # moto raises AttributeError for unknown aliases
            raise _error("InvalidParameterValue", f"KMS key {kms_key_id} does not exist in {self.region}")
        kms_key_id = key.arn if key else dest._create_default_encryption_key()
    duration = _copy_duration(self._get_param("SnapshotCopyCompletionDurationMinutes"))
    name = self._get_param("Name") or source.name
    for other in dest.amis.values():
        if other.name == name and other.owner_id == dest.account_id:
            raise _error("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {other.id}")
    new_id = random_ami_id()
    mappings = []
    for mapping in source.lab_mappings:
        mapping = {k: (dict(v) if isinstance(v, dict) else v) for k, v in mapping.items()}
        ebs = mapping.get("Ebs")
        if ebs and ebs.get("SnapshotId"):
            old = source_backend.snapshots[ebs["SnapshotId"]]
            enc = bool(old.encrypted) or encrypted
            key = kms_key_id if encrypted else (old.kms_key_id if old.encrypted else None)
            snap = _new_snapshot(
                dest,
                SimpleNamespace(id="vol-ffffffff", size=old.volume_size),
                f"Copied for DestinationAmi {new_id} from SourceAmi {source_id} for SourceSnapshot {old.id}. "
                f"Task created on {datetime.now(UTC).isoformat()}.",
                old.volume_size,
                enc,
                key,
            )
            rt.copy_file(rt.snapshot_file(old.id), rt.snapshot_file(snap.id))
            snap.lab_ready_at = _now() + rt.config.timings.copy_image
            snap.transfer_type = "time-based" if duration else "standard"
            snap.completion_duration_minutes = duration
            ebs["SnapshotId"] = snap.id
            ebs["Encrypted"] = enc
            if key:
                ebs["KmsKeyId"] = key
        mappings.append(mapping)
    ami = LabAmi(
        dest,
        new_id,
        name=name,
        description=self._get_param("Description") if self._get_param("Description") is not None else source.description,
        architecture=source.architecture,
        virtualization_type=source.virtualization_type,
        root_device_name=source.root_device_name,
        lab_mappings=mappings,
        kernel_id=source.kernel_id,
        ramdisk_id=source.ramdisk_id,
        ena_support=source.ena_support,
        sriov=source.sriov,
        boot_mode=source.boot_mode,
        tpm_support=source.tpm_support,
        uefi_data=source.uefi_data,
        imds_support=source.imds_support,
        source_image_id=source_id,
        source_image_region=source_region,
        state="pending",
        lab_ready_at=_now() + rt.config.timings.copy_image,
    )
    # The pseudo-action COPY_FAILS: the copy is accepted, then ends `failed`.
    doomed = rt.control.fault_for(COPY_FAILS, self.region)
    if doomed is not None:
        ami.lab_failure = (doomed.code, doomed.message)
    dest.amis[ami.id] = ami
    if _bool(self._get_param("CopyImageTags")):
        ami.add_tags({t["key"]: t["value"] for t in source_backend.describe_tags(filters={"resource-id": [source_id]})})
    ami.add_tags(self._parse_tag_specification().get("image", {}))
    return ActionResult({"ImageId": ami.id})


def _copy_duration(raw: Any) -> int | None:
    """SnapshotCopyCompletionDurationMinutes of a time-based copy, checked as EC2 does."""
    if raw is None or raw == "":
        return None
    try:
        minutes = int(raw)
    except (TypeError, ValueError):
        raise _error("InvalidParameterValue", f"SnapshotCopyCompletionDurationMinutes must be an integer, got {raw!r}")
    if not COPY_DURATION_STEP <= minutes <= COPY_DURATION_MAX or minutes % COPY_DURATION_STEP:
        raise _error(
            "InvalidParameterValue",
            f"SnapshotCopyCompletionDurationMinutes must be a multiple of {COPY_DURATION_STEP} "
            f"between {COPY_DURATION_STEP} and {COPY_DURATION_MAX}, got {minutes}",
        )
    return minutes


def _get_lab_image(backend: Any, image_id: str) -> LabAmi:
    ami = backend.amis.get(image_id)
    if ami is None:
        raise _error("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    if not isinstance(ami, LabAmi):
        raise _error("InvalidAMIID.Unavailable", f"The image id '[{image_id}]' is not a lab image")
    return ami


def deregister_image(self: AmisResponse) -> ActionResult:
    """DeregisterImage, refused while deregistration protection is on."""
    self.error_on_dryrun()
    image_id = self._get_param("ImageId")
    ami = self.ec2_backend.amis.get(image_id)
    if isinstance(ami, LabAmi) and (ami.deregistration_protection.startswith("enabled") or _now() < ami.lab_protection_until):
        raise _error(
            "OperationNotPermitted",
            f"The image {image_id} has deregistration protection enabled; disable it first.",
        )
    self.ec2_backend.deregister_image(image_id)
    return ActionResult({"Return": True})


def describe_images(self: AmisResponse) -> ActionResult:
    """DescribeImages with AWS's rule for deprecated images."""
    self.error_on_dryrun()
    runtime.get().tick()
    ami_ids = self._get_param("ImageIds", [])
    images = self.ec2_backend.describe_images(
        ami_ids=ami_ids,
        filters=self._filters_from_querystring(),
        exec_users=self._get_param("ExecutableUsers", []),
        owners=self._get_param("Owners", []),
    )
    include_deprecated = _bool(self._get_param("IncludeDeprecated")) or bool(ami_ids)
    if not include_deprecated:
        account = self.ec2_backend.account_id
        images = [i for i in images if not (isinstance(i, LabAmi) and i.is_deprecated and i.owner_id != account)]
    return ActionResult({"Images": images})


def enable_image_deprecation(self: AmisResponse) -> ActionResult:
    """EnableImageDeprecation: DeprecationTime, seconds rounded to the minute as AWS does."""
    self.error_on_dryrun()
    ami = _get_lab_image(self.ec2_backend, self._get_param("ImageId"))
    raw = self._get_param("DeprecateAt")
    when = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = (when + timedelta(seconds=30)).replace(second=0, microsecond=0)
    if when > datetime.now(UTC) + timedelta(days=3650):
        raise _error("InvalidParameterValue", "DeprecateAt must be at most 10 years in the future")
    ami.deprecation_time = _iso(when)
    return ActionResult({"Return": True})


def disable_image_deprecation(self: AmisResponse) -> ActionResult:
    """DisableImageDeprecation."""
    self.error_on_dryrun()
    _get_lab_image(self.ec2_backend, self._get_param("ImageId")).deprecation_time = None
    return ActionResult({"Return": True})


def enable_image_deregistration_protection(self: AmisResponse) -> ActionResult:
    """EnableImageDeregistrationProtection (WithCooldown → enabled-with-cooldown)."""
    self.error_on_dryrun()
    ami = _get_lab_image(self.ec2_backend, self._get_param("ImageId"))
    cooldown = _bool(self._get_param("WithCooldown"))
    ami.deregistration_protection = "enabled-with-cooldown" if cooldown else "enabled"
    return ActionResult({"Return": ami.deregistration_protection})


def disable_image_deregistration_protection(self: AmisResponse) -> ActionResult:
    """DisableImageDeregistrationProtection; with cooldown, protection lasts 24 h more."""
    self.error_on_dryrun()
    ami = _get_lab_image(self.ec2_backend, self._get_param("ImageId"))
    if ami.deregistration_protection == "enabled-with-cooldown":
        until = datetime.now(UTC) + timedelta(hours=24)
        ami.lab_protection_until = until.timestamp()
        ami.deregistration_protection = f"disabled-until-{_iso(until)}"
    else:
        ami.deregistration_protection = "disabled"
    return ActionResult({"Return": "disabled"})


def _perm_list(value: Any) -> list[dict[str, str]]:
    return [dict(p) for p in (value or [])]


def _validate_launch_permissions(perms: list[dict[str, str]]) -> None:
    for perm in perms:
        if "UserId" in perm and not re.fullmatch(r"\d{12}", perm["UserId"]):
            raise _error("InvalidAMIAttributeItemValue", f'Invalid attribute item value "{perm["UserId"]}" for userId item type.')
        if "Group" in perm and perm["Group"] != "all":
            raise _error("InvalidAMIAttributeItemValue", f'Invalid attribute item value "{perm["Group"]}" for UserGroup item type.')
        if "OrganizationArn" in perm and not perm["OrganizationArn"].startswith("arn:aws:organizations::"):
            raise _error("InvalidParameterValue", f"Invalid organization ARN {perm['OrganizationArn']}")
        if "OrganizationalUnitArn" in perm and not perm["OrganizationalUnitArn"].startswith("arn:aws:organizations::"):
            raise _error("InvalidParameterValue", f"Invalid organizational unit ARN {perm['OrganizationalUnitArn']}")


def modify_image_attribute(self: AmisResponse) -> ActionResult:
    """ModifyImageAttribute: launch permissions (all kinds), description, product codes, IMDS support."""
    self.error_on_dryrun()
    ami = _get_lab_image(self.ec2_backend, self._get_param("ImageId"))
    attribute = self._get_param("Attribute")
    value = self._get_param("Value")
    lp = self._get_param("LaunchPermission", {}) or {}
    add, remove = _perm_list(lp.get("Add")), _perm_list(lp.get("Remove"))
    operation = self._get_param("OperationType")
    if operation in ("add", "remove"):
        target = add if operation == "add" else remove
        target += [{"Group": g} for g in self._get_param("UserGroups", []) or []]
        target += [{"UserId": u} for u in self._get_param("UserIds", []) or []]
        target += [{"OrganizationArn": a} for a in self._get_param("OrganizationArns", []) or []]
        target += [{"OrganizationalUnitArn": a} for a in self._get_param("OrganizationalUnitArns", []) or []]
    elif operation is not None:
        raise _error("InvalidParameterValue", f"Invalid operation type {operation}")
    _validate_launch_permissions(add + remove)
    changed = bool(add or remove)
    for perm in add:
        if perm not in ami.launch_permissions:
            ami.launch_permissions.append(perm)
    for perm in remove:
        if perm in ami.launch_permissions:
            ami.launch_permissions.remove(perm)
    description = self._get_param("Description")
    if isinstance(description, dict):
        description = description.get("Value")
    if attribute == "description" and value is not None:
        description = value
    if description is not None:
        ami.description = description
        changed = True
    codes = self._get_param("ProductCodes", []) or []
    if attribute == "productCodes" and value:
        codes = [value]
    if codes:
        ami.lab_product_codes.update(codes)
        changed = True
    imds = self._get_param("ImdsSupport")
    if isinstance(imds, dict):
        imds = imds.get("Value")
    if attribute == "imdsSupport" and value:
        imds = value
    if imds is not None:
        if imds != "v2.0":
            raise _error("InvalidParameterValue", f"Invalid value '{imds}' for imdsSupport")
        ami.imds_support = imds
        changed = True
    if not changed:
        raise _error("MissingParameter", "No attribute to modify was given")
    return EmptyResult()


def describe_image_attribute(self: AmisResponse) -> ActionResult:
    """DescribeImageAttribute for every attribute a lab image has."""
    ami = _get_lab_image(self.ec2_backend, self._get_param("ImageId"))
    attribute = self._get_param("Attribute")
    result: dict[str, Any] = {"ImageId": ami.id}

    def value(v: Any) -> dict[str, Any]:
        return {"Value": v} if v is not None else {}

    simple = {
        "description": ("Description", ami.description),
        "kernel": ("KernelId", ami.kernel_id),
        "ramdisk": ("RamdiskId", ami.ramdisk_id),
        "sriovNetSupport": ("SriovNetSupport", ami.sriov),
        "bootMode": ("BootMode", ami.boot_mode),
        "tpmSupport": ("TpmSupport", ami.tpm_support),
        "uefiData": ("UefiData", ami.uefi_data),
        "imdsSupport": ("ImdsSupport", ami.imds_support),
        "lastLaunchedTime": ("LastLaunchedTime", ami.last_launched_time),
        "deregistrationProtection": ("DeregistrationProtection", ami.deregistration_protection),
    }
    if attribute in simple:
        key, v = simple[attribute]
        result[key] = value(v)
    elif attribute == "launchPermission":
        result["LaunchPermissions"] = ami.launch_permissions
    elif attribute == "productCodes":
        result["ProductCodes"] = ami.product_codes
    elif attribute == "blockDeviceMapping":
        raise _error("AuthFailure", "Unauthorized attempt to access restricted resource")
    else:
        raise _error("InvalidRequest", f"Unknown attribute {attribute}")
    return ActionResult(result)


# ---------------------------------------------------------------------------
# Volumes, attachments and snapshots
# ---------------------------------------------------------------------------


def create_volume(self: ElasticBlockStore) -> ActionResult:
    """CreateVolume with a real sparse file (copied from the snapshot's file)."""
    self.error_on_dryrun()
    rt = runtime.get()
    backend = self.ec2_backend
    size = self._get_param("Size")
    size = int(size) if size not in (None, "") else None
    snapshot_id = self._get_param("SnapshotId")
    zone = self._get_param("AvailabilityZone")
    if not zone:
        raise _error("MissingParameter", "The request must contain the parameter AvailabilityZone")
    snap = None
    if snapshot_id:
        snap = backend.snapshots.get(snapshot_id)
        if snap is None:
            raise _error("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
        if snap.status != "completed":
            raise _error("IncorrectState", f"Snapshot '{snapshot_id}' is not 'completed'.")
        if size is not None and size < snap.volume_size:
            raise _error(
                "InvalidParameterValue",
                f"Volume of size {size}GB is smaller than snapshot '{snapshot_id}', expect size >= {snap.volume_size}GB",
            )
        size = size or snap.volume_size
    if size is None:
        raise _error("MissingParameter", "The request must contain the parameter size/snapshot")
    encrypted = bool(_bool(self._get_param("Encrypted"))) or bool(snap and snap.encrypted)
    kms_key_id = self._get_param("KmsKeyId")
    if kms_key_id:
        from moto.kms import kms_backends

        try:
            kms_key_id = kms_backends[LAB_ACCOUNT][self.region].describe_key(kms_key_id).arn
        except (KmsNotFound, KeyError, AttributeError):  # moto raises AttributeError for unknown aliases
            raise _error("InvalidKMSKey.NotFound", f"The KMS key {kms_key_id} does not exist")
    elif snap is not None and snap.encrypted:
        kms_key_id = snap.kms_key_id
    volume = backend.create_volume(
        size=size,
        zone_name=zone,
        snapshot_id=snapshot_id,
        encrypted=encrypted,
        kms_key_id=kms_key_id,
        volume_type=self._get_param("VolumeType"),
        iops=self._get_param("Iops"),
        throughput=self._get_param("Throughput"),
        multi_attach_enabled=self._get_param("MultiAttachEnabled"),
    )
    volume.lab_ready_at = _now() + rt.config.timings.volume_create
    path = rt.volume_file(volume.id)
    if snap is not None:
        rt.copy_file(rt.snapshot_file(snap.id), path, size)
    else:
        rt.sparse_file(path, size)
    volume.add_tags(self._parse_tag_specification().get("volume", {}))
    return ActionResult(volume)


def delete_volume(self: ElasticBlockStore) -> ActionResult:
    """DeleteVolume, refused while attached; removes the file."""
    self.error_on_dryrun()
    volume_id = self._get_param("VolumeId")
    self.ec2_backend.delete_volume(volume_id)
    runtime.get().volume_file(volume_id).unlink(missing_ok=True)
    return EmptyResult()


def attach_volume(self: ElasticBlockStore) -> ActionResult:
    """AttachVolume; on the lab's host instance the volume appears as a block device."""
    self.error_on_dryrun()
    rt = runtime.get()
    backend = self.ec2_backend
    volume_id = self._get_param("VolumeId")
    instance_id = self._get_param("InstanceId")
    device = self._get_param("Device")
    volume = backend.get_volume(volume_id)
    instance = backend.get_instance(instance_id)
    if not device or not DEVICE_RE.match(device):
        raise _error("InvalidParameterValue", f"Value ({device}) for parameter device is invalid. {device} is not a valid EBS device name.")
    if volume.status != "available":
        raise _error("IncorrectState", f"{volume_id} is not 'available'.")
    if volume.zone.name != instance._placement.zone:
        raise _error(
            "InvalidVolume.ZoneMismatch",
            f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'",
        )
    if device in instance.block_device_mapping:
        raise _error("InvalidParameterValue", f"Attachment point {device} is already in use")
    if instance_id == rt.instance_id:
        try:
            rt.attach_host_device(volume_id, device)
        except blockdev.BlockDeviceError as exc:
            raise _error("InvalidParameterValue", f"Attachment point {device} is already in use ({exc})")
    attachment = VolumeAttachment(volume, instance, device, "attached")
    attachment.lab_attached_at = _now() + rt.config.timings.attach
    volume.attachment = attachment
    bdt = BlockDeviceType(volume_id=volume_id, status="attaching", size=volume.size, attach_time=attachment.attach_time)
    attachment.lab_bdt = bdt
    instance.block_device_mapping[device] = bdt
    return ActionResult(
        {
            "VolumeId": volume_id,
            "InstanceId": instance_id,
            "Device": device,
            "State": "attaching",
            "AttachTime": attachment.attach_time,
        }
    )


def detach_volume(self: ElasticBlockStore) -> ActionResult:
    """DetachVolume (InstanceId optional). While the device or one of its
    partitions is mounted on the host: with busy_detach "error" (default) it
    fails with IncorrectState and the attachment stays `attached`; with "hang"
    it is accepted and the attachment stays `busy` until nothing is mounted,
    as on EC2. Force=true unmounts first."""
    self.error_on_dryrun()
    rt = runtime.get()
    volume_id = self._get_param("VolumeId")
    instance_id = self._get_param("InstanceId")
    device = self._get_param("Device")
    force = _bool(self._get_param("Force"))
    volume = self.ec2_backend.get_volume(volume_id)
    att = volume.attachment
    if att is None:
        raise _error("IncorrectState", f"Volume '{volume_id}' is in the 'available' state.")
    if (instance_id and instance_id != att.instance.id) or (device and device != att.device):
        raise _error(
            "InvalidAttachment.NotFound",
            f"The volume '{volume_id}' is not attached to instance '{instance_id or att.instance.id}' as device '{device or att.device}'",
        )
    if att.status in ("detaching", "busy"):
        raise _error("IncorrectState", f"Volume '{volume_id}' is already detaching.")
    host = rt.attached.get(volume_id)
    busy = host.busy_mounts() if host is not None else []
    if busy and force:
        for mount in busy:
            blockdev.unmount_tree(mount.mount_point)
    elif busy and rt.config.busy_detach == "hang":
        # EC2's own behaviour: accepted, attachment `busy` until the guest lets go
        # (Runtime.tick finishes the detach once nothing is mounted).
        att.lab_busy = True
        if getattr(att, "lab_bdt", None) is not None:
            att.lab_bdt.status = "busy"
        return ActionResult(
            {"VolumeId": volume_id, "InstanceId": att.instance.id, "Device": att.device, "State": "busy", "AttachTime": att.attach_time}
        )
    elif busy:
        where = ", ".join(f"{m.source} on {m.mount_point}" for m in busy)
        raise _error("IncorrectState", f"Volume '{volume_id}' is busy: still mounted on the instance ({where}).")
    begin_detach(volume)
    return ActionResult(
        {
            "VolumeId": volume_id,
            "InstanceId": att.instance.id,
            "Device": att.device,
            "State": "detaching",
            "AttachTime": att.attach_time,
        }
    )


def begin_detach(volume: Any) -> None:
    """Free the host device and start the `detaching` period of an attachment."""
    rt = runtime.get()
    att = volume.attachment
    att.lab_busy = False
    rt.detach_host_device(volume.id)
    att.lab_detach_at = _now() + rt.config.timings.detach
    if rt.config.timings.detach <= 0:
        runtime.finish_detach(volume)
    elif getattr(att, "lab_bdt", None) is not None:
        att.lab_bdt.status = "detaching"


def create_snapshot(self: ElasticBlockStore) -> ActionResult:
    """CreateSnapshot: copies the volume's file as it is now; pending for a while."""
    self.error_on_dryrun()
    rt = runtime.get()
    volume = self.ec2_backend.get_volume(self._get_param("VolumeId"))
    snap = _new_snapshot(
        self.ec2_backend,
        volume,
        self._get_param("Description") or "",
        volume.size,
        bool(volume.encrypted),
        volume.kms_key_id,
    )
    source = rt.volume_file(volume.id)
    if source.exists():
        rt.copy_file(source, rt.snapshot_file(snap.id))
    else:
        # Volumes moto made by itself (the host's root disk) have no file: their
        # snapshot is an empty disk of the same size.
        rt.sparse_file(rt.snapshot_file(snap.id), volume.size)
    snap.add_tags(self._parse_tag_specification().get("snapshot", {}))
    return ActionResult(snap)


def delete_snapshot(self: ElasticBlockStore) -> ActionResult:
    """DeleteSnapshot, refused (InvalidSnapshot.InUse) while a registered image uses it."""
    self.error_on_dryrun()
    snapshot_id = self._get_param("SnapshotId")
    user = _image_in_use(self.ec2_backend, snapshot_id)
    if user:
        raise _error("InvalidSnapshot.InUse", f"The snapshot {snapshot_id} is currently in use by {user}")
    self.ec2_backend.delete_snapshot(snapshot_id)
    runtime.get().snapshot_file(snapshot_id).unlink(missing_ok=True)
    return EmptyResult()


def modify_snapshot_attribute(self: ElasticBlockStore) -> ActionResult:
    """ModifySnapshotAttribute: createVolumePermission in both request forms."""
    self.error_on_dryrun()
    snapshot_id = self._get_param("SnapshotId")
    self.ec2_backend.get_snapshot(snapshot_id)
    cvp = self._get_param("CreateVolumePermission", {}) or {}
    ops = {"add": _perm_list(cvp.get("Add")), "remove": _perm_list(cvp.get("Remove"))}
    operation = self._get_param("OperationType")
    if operation in ops:
        ops[operation] += [{"Group": g} for g in self._get_param("GroupNames", []) or []]
        ops[operation] += [{"UserId": u} for u in self._get_param("UserIds", []) or []]
    for op, perms in ops.items():
        _validate_launch_permissions(perms)
        users = [p["UserId"] for p in perms if "UserId" in p]
        groups = [p["Group"] for p in perms if "Group" in p]
        if not users and not groups:
            continue
        if op == "add":
            self.ec2_backend.add_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
        else:
            self.ec2_backend.remove_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
    return EmptyResult()


def install() -> None:
    """Patch moto's response classes (idempotent)."""
    for name, fn in {
        "register_image": register_image,
        "copy_image": copy_image,
        "deregister_image": deregister_image,
        "describe_images": describe_images,
        "enable_image_deprecation": enable_image_deprecation,
        "disable_image_deprecation": disable_image_deprecation,
        "enable_image_deregistration_protection": enable_image_deregistration_protection,
        "disable_image_deregistration_protection": disable_image_deregistration_protection,
        "modify_image_attribute": modify_image_attribute,
        "describe_image_attribute": describe_image_attribute,
    }.items():
        setattr(AmisResponse, name, fn)
    for name, fn in {
        "create_volume": create_volume,
        "delete_volume": delete_volume,
        "attach_volume": attach_volume,
        "detach_volume": detach_volume,
        "create_snapshot": create_snapshot,
        "delete_snapshot": delete_snapshot,
        "modify_snapshot_attribute": modify_snapshot_attribute,
    }.items():
        setattr(ElasticBlockStore, name, fn)
