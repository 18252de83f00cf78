"""`CheckedTransport`: a virtio-mmio slot with the strict checker in front.

It takes the transport's place in the machine's slot (same read/write/poll/start/
close), shows each access to the checker first and forwards it unchanged, so the
device behaves exactly as without `--strict`. Anything else is the transport's
(`inner`, and attribute access falls through), so observers and the GDB monitor see
the same device.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from vmsim.devices.virtio.mmio import MmioTransport
from vmsim.devices.virtio.spec import Reg
from vmsim.devices.virtio.strict import rules
from vmsim.devices.virtio.strict.checker import StrictChecker
from vmsim.devices.virtio.strict.rules import Finding, Rule


class CheckedTransport:
    """An MmioDevice, Pollable and HostResources forwarding to `inner`."""

    def __init__(self, inner: MmioTransport, report: Callable[[Finding], None],
                 extra_rules: Iterable[Rule] = ()) -> None:
        self.inner = inner
        self.checker = StrictChecker(inner, report, (*rules.RULES, *extra_rules))

    def read(self, offset: int, size: int) -> int:
        self.checker.before_read(offset, size)
        value = self.inner.read(offset, size)
        self.checker.after_read(offset, value)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        self.checker.before_write(offset, size, value)
        old_status = self.inner.status
        self.inner.write(offset, size, value)
        if offset < Reg.CONFIG:
            self.checker.after_write(offset, value, old_status)

    def poll(self) -> None:
        self.checker.scan_all()
        self.inner.poll()

    def start(self) -> None:
        self.inner.start()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Only for what this class does not define (device, queues, query_status, ...).
        return getattr(self.inner, name)
