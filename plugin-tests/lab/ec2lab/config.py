"""Lab configuration: names, ports, directories, timings and behaviour switches."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

#: Account the lab's credentials map to (moto's default account).
LAB_ACCOUNT = "123456789012"
#: Static credentials exported by `labctl env` (moto accepts any).
LAB_ACCESS_KEY = "AKIALABLABLABLAB0000"
LAB_SECRET_KEY = "lab-secret-key-not-a-real-secret"
#: The host instance's role and the temporary credentials its IMDS hands out.
LAB_INSTANCE_ROLE = "lab-instance-role"
LAB_ROLE_ACCESS_KEY = "ASIALABINSTANCEROLE0"
LAB_ROLE_SECRET_KEY = "lab-instance-role-secret-not-a-real-secret"
LAB_ROLE_TOKEN = "lab-instance-role-session-token-not-a-real-token"
#: Directory with one JSON file per running lab, so labctl finds labs by name.
REGISTRY_DIR = Path("/run/ec2lab/labs")


@dataclass
class Timings:
    """How long resources stay in their transitional states (seconds).

    AWS never answers instantly; these let tests hold a resource in
    `creating`/`attaching`/`pending` to prove a client waits for it.
    """

    volume_create: float = 0.3
    attach: float = 0.3
    detach: float = 0.3
    snapshot: float = 0.5
    image: float = 0.5
    copy_image: float = 0.5
    #: Delay between the attachment and the device node appearing in /dev.
    device_appear: float = 0.0
    #: Never create the device node (a lost attachment, as sometimes on Xen).
    device_withhold: bool = False

    def update(self, values: dict[str, object]) -> None:
        """Set the given fields, rejecting unknown names."""
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise KeyError(f"unknown timing {key!r}; known: {sorted(known)}")
            setattr(self, key, bool(value) if key == "device_withhold" else float(value))  # type: ignore[arg-type]


@dataclass
class LabConfig:
    """Everything a lab daemon needs to start."""

    name: str = "default"
    state_dir: str = ""
    device_style: str = "xen"
    region: str = "us-east-1"
    ec2_port: int = 0
    imds_port: int = 0
    #: The EC2 app again, over HTTPS with a self-signed certificate.
    https_port: int = 0
    #: The fake Vault (AWS secrets engine), plain HTTP.
    vault_port: int = 0
    #: The same fake Vault over HTTPS (the lab's self-signed certificate).
    vault_https_port: int = 0
    #: Refuse IMDSv1 requests (401), as with HttpTokens=required.
    imds_require_v2: bool = False
    #: Answer nothing on IMDS (connection closed), as off-EC2.
    imds_disabled: bool = False
    #: DetachVolume of a mounted device: "error" (IncorrectState) or "hang" (EC2's `busy`).
    busy_detach: str = "error"
    instance_type: str = "t3.micro"
    architecture: str = "x86_64"
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        if not self.state_dir:
            self.state_dir = f"/tmp/ec2lab-{self.name}"
        if self.device_style not in ("xen", "nitro"):
            raise ValueError(f"device style must be xen or nitro, not {self.device_style!r}")
        if self.busy_detach not in ("error", "hang"):
            raise ValueError(f"busy detach must be error or hang, not {self.busy_detach!r}")

    @property
    def state_path(self) -> Path:
        """The lab's state directory."""
        return Path(self.state_dir)

    def to_json(self) -> str:
        """Serialise for the daemon's command line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LabConfig:
        """Inverse of to_json."""
        data = json.loads(text)
        timings = Timings(**data.pop("timings", {}))
        return cls(timings=timings, **data)
