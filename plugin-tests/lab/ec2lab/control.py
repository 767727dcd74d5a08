"""Fault injection and the log of received actions."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Fault:
    """Make the `nth` call (1-based, counted from when the fault was set) of
    `action` fail; `times` consecutive calls from there fail (0 = all later ones).
    With a `region`, only calls signed for that region count (CopyImage is
    sent to the destination region, so this fails one copy of several)."""

    action: str
    code: str = "InternalError"
    message: str = "Injected by the EC2 lab"
    status: int = 500
    nth: int = 1
    times: int = 1
    region: str = ""
    seen: int = 0
    fired: int = 0

    #: What a client may set; the counters are the lab's.
    SETTABLE = ("action", "code", "message", "status", "nth", "times", "region")

    @classmethod
    def from_request(cls, data: dict[str, Any]) -> Fault:
        """A fault from a control-API body; unknown keys are refused so a typo
        (e.g. `regoin`) does not silently widen the fault to every region."""
        unknown = set(data) - set(cls.SETTABLE)
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; settable: {', '.join(cls.SETTABLE)}")
        return cls(**data)


@dataclass
class Delay:
    """Sleep `seconds` before handling each call of `action`."""

    action: str
    seconds: float


@dataclass
class LoggedCall:
    """One API call the lab received."""

    time: float
    service: str
    action: str
    region: str
    params: dict[str, list[str]]
    status: int = 0
    error: str = ""
    #: Access key id of the SigV4 signature ("" when unsigned).
    access_key: str = ""
    #: Credentials an STS answer handed out (AssumeRole etc.), "" otherwise;
    #: tests need the secret parts to prove a client never logs them.
    issued_access_key: str = ""
    issued_secret_key: str = ""
    issued_session_token: str = ""
    #: Received on the lab's HTTPS port.
    tls: bool = False


class Control:
    """Thread-safe registry of faults, delays and the call log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: list[Fault] = []
        self.delays: dict[str, float] = {}
        self.calls: list[LoggedCall] = []

    def add_fault(self, fault: Fault) -> None:
        """Register a fault."""
        with self._lock:
            self.faults.append(fault)

    def set_delay(self, delay: Delay) -> None:
        """Register (or with 0 s, remove) an action delay."""
        with self._lock:
            if delay.seconds > 0:
                self.delays[delay.action] = delay.seconds
            else:
                self.delays.pop(delay.action, None)

    def reset(self) -> None:
        """Forget faults, delays and the log."""
        with self._lock:
            self.faults.clear()
            self.delays.clear()
            self.calls.clear()

    def record(self, call: LoggedCall) -> LoggedCall:
        """Append a call to the log."""
        with self._lock:
            self.calls.append(call)
        return call

    def record_imds(self, method: str, path: str) -> None:
        """Log an instance-metadata request (service "imds", action "METHOD path")."""
        self.record(LoggedCall(time.time(), "imds", f"{method} {path}", "", {}))

    def fault_for(self, action: str, region: str = "") -> Fault | None:
        """Count a call of `action` in `region`; return the fault it must fail with, if any."""
        with self._lock:
            for fault in self.faults:
                if fault.action != action or (fault.region and fault.region != region):
                    continue
                fault.seen += 1
                past = fault.seen - fault.nth
                if past >= 0 and (fault.times == 0 or past < fault.times):
                    fault.fired += 1
                    return fault
        return None

    def delay_for(self, action: str) -> float:
        """Seconds to sleep before `action`."""
        with self._lock:
            return self.delays.get(action, 0.0)

    def snapshot(self) -> dict[str, object]:
        """JSON-able view of everything."""
        with self._lock:
            return {
                "faults": [asdict(f) for f in self.faults],
                "delays": dict(self.delays),
                "calls": [asdict(c) for c in self.calls],
            }


def wait(seconds: float) -> None:
    """Sleep (named so call sites read as intent)."""
    if seconds > 0:
        time.sleep(seconds)
