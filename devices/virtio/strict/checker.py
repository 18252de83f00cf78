"""The strict checker of one virtio-mmio slot: the driver's state as the rules see it.

`DriverView` is what the driver has done so far (registers it read, selectors it
wrote, what it still has to confirm); `StrictChecker` runs the rules of each event
against the view *before* the event changes it, reports each broken rule once through
`report` and counts the rest.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from vmsim import log
from vmsim.devices.bus import GuestMemoryError
from vmsim.devices.virtio.spec import Reg, Status
from vmsim.devices.virtio.strict import chains, rules
from vmsim.devices.virtio.strict.rules import Access, Finding, Rule

_U16X2 = struct.Struct("<HH")
_ADDR_REGS = {
    Reg.QUEUE_DESC_LOW: ("desc", 0), Reg.QUEUE_DESC_HIGH: ("desc", 32),
    Reg.QUEUE_DRIVER_LOW: ("driver", 0), Reg.QUEUE_DRIVER_HIGH: ("driver", 32),
    Reg.QUEUE_DEVICE_LOW: ("device", 0), Reg.QUEUE_DEVICE_HIGH: ("device", 32),
}


@dataclass(frozen=True)
class RingLook:
    """One look at a live queue's avail ring (the RING rules' event)."""

    queue: int
    size: int
    avail_idx: int
    used_idx: int
    flags: int
    event_idx: bool

    @property
    def pending(self) -> int:
        return (self.avail_idx - self.used_idx) & 0xFFFF


@dataclass
class DriverView:
    """What the driver did, as far as the rules care. `transport` is the slot's
    MmioTransport: the device's side (status, offered features, the live queues)."""

    transport: Any
    identified: set[int] = field(default_factory=set)
    driver_features_sel: int | None = None
    queue_sel: int = 0
    num_max_read: set[int] = field(default_factory=set)
    queue_addrs: dict[int, dict[str, int]] = field(default_factory=dict)
    ready_readback: int | None = None
    reset_unconfirmed: bool = False
    features_ok_unconfirmed: bool = False
    avail_seen: dict[int, int] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return self.transport.status

    @property
    def offered(self) -> int:
        return self.transport.offered_features

    @property
    def driver_features(self) -> int:
        return self.transport.driver_features

    @property
    def driver_features_sel_written(self) -> bool:
        return self.driver_features_sel is not None

    def queue_num_max(self) -> int:
        return self.transport.read(Reg.QUEUE_NUM_MAX, 4)

    def queue_ready(self) -> bool:
        return bool(self.transport.read(Reg.QUEUE_READY, 4))

    def reset(self) -> None:
        """Status 0: everything but the identification is the driver's to redo."""
        self.driver_features_sel = None
        self.num_max_read.clear()
        self.queue_addrs.clear()
        self.ready_readback = None
        self.features_ok_unconfirmed = False
        self.avail_seen.clear()
        self.reset_unconfirmed = True


class StrictChecker:
    """Runs `rule_set` over the driver's accesses, rings and requests of one slot."""

    def __init__(self, transport: Any, report: Callable[[Finding], None],
                 rule_set: Iterable[Rule] = rules.RULES) -> None:
        self.view = DriverView(transport)
        self._transport = transport
        self._report = report
        self._rules: dict[str, list[Rule]] = {}
        for rule in rule_set:
            for event in rule.on:
                self._rules.setdefault(event, []).append(rule)
        self.counts: Counter[str] = Counter()
        self.findings: list[Finding] = []

    # ---- events ---------------------------------------------------------------------

    def before_read(self, offset: int, size: int) -> None:
        self._run(rules.READ, Access(offset, size))

    def after_read(self, offset: int, value: int) -> None:
        view = self.view
        if offset in rules.IDENTITY:
            view.identified.add(offset)
        elif offset == Reg.STATUS:
            if value == 0:
                view.reset_unconfirmed = False
            view.features_ok_unconfirmed = False
        elif offset == Reg.QUEUE_NUM_MAX:
            view.num_max_read.add(view.queue_sel)
        elif offset == Reg.QUEUE_READY:
            view.ready_readback = None

    def before_write(self, offset: int, size: int, value: int) -> None:
        self._run(rules.WRITE, Access(offset, size, value))
        if offset == Reg.QUEUE_NOTIFY and self._transport.context is not None:
            self.scan(value & 0xFFFF)

    def after_write(self, offset: int, value: int, old_status: int) -> None:
        view = self.view
        if offset == Reg.STATUS:
            if value & 0xFF == 0:
                view.reset()
                return
            if value & Status.FEATURES_OK and not old_status & Status.FEATURES_OK:
                view.features_ok_unconfirmed = True
            if view.status & Status.DRIVER_OK and not old_status & Status.DRIVER_OK:
                view.avail_seen = {queue.index: 0 for queue in self._transport.queues}
                self._run(rules.DRIVER_OK, None)
        elif offset == Reg.DRIVER_FEATURES_SEL:
            view.driver_features_sel = value
        elif offset == Reg.QUEUE_SEL:
            view.queue_sel = value
        elif offset == Reg.QUEUE_READY and not value & 1:
            view.ready_readback = view.queue_sel
        elif offset in _ADDR_REGS:
            area, shift = _ADDR_REGS[offset]
            addrs = view.queue_addrs.setdefault(view.queue_sel, {})
            old = addrs.get(area, 0)
            addrs[area] = (old & ~(0xFFFF_FFFF << shift)) | ((value & 0xFFFF_FFFF) << shift)

    def scan_all(self) -> None:
        """Look at every live queue: chains may be added without a notify."""
        if self._transport.context is not None:
            for index in list(self.view.avail_seen):
                self.scan(index)

    def scan(self, index: int) -> None:
        """Check what the driver made available on queue `index` since the last look,
        before the device takes it."""
        queues = self._transport.queues
        seen = self.view.avail_seen.get(index)
        if seen is None or index >= len(queues) or not queues[index].ready:
            return
        queue = queues[index]
        mem = self._transport.context.mem
        try:
            flags, avail = mem.unpack_from(_U16X2, queue.avail_addr)
            used = mem.unpack_from(_U16X2, queue.used_addr)[1]
        except GuestMemoryError:
            return
        look = RingLook(index, queue.size, avail, used, flags, queue.event_idx)
        self._run(rules.RING, look, index)
        new = (avail - seen) & 0xFFFF
        self.view.avail_seen[index] = avail
        if new > queue.size:
            return                      # reported above; nothing sensible to walk
        for step in range(new):
            slot = queue.avail_addr + 4 + 2 * ((seen + step) % queue.size)
            try:
                head = mem.unpack_from(_U16X2, slot)[0]
            except GuestMemoryError:
                return
            found = chains.walk(mem, queue, head)
            self._run(rules.CHAIN, found, index)
            if not found.problems:
                self._run(rules.REQUEST, found, index)

    # ---- findings ---------------------------------------------------------------------

    def _run(self, event: str, subject: Any, queue: int | None = None) -> None:
        for rule in self._rules.get(event, ()):
            try:
                values = rule.check(self.view, subject)
            except Exception:          # a bug of the checker's must not stop the guest
                log.internal_error(self._transport.name, f"strict rule {rule.id} failed")
                continue
            if values is not None:
                self._hit(rule, values, queue)

    def _hit(self, rule: Rule, values: dict[str, Any], queue: int | None) -> None:
        self.counts[rule.id] += 1
        if self.counts[rule.id] == 1:
            finding = Finding(rule, self._transport.name, values, queue)
            self.findings.append(finding)
            self._report(finding)
