"""The virtio-mmio transport, version 2 (virtio 1.x, section 4.2), register for register.

It owns everything a backend should not care about: feature negotiation, the status
state machine, queue setup registers, the interrupt status and the level-triggered
interrupt line (asserted while InterruptStatus is non-zero). The backend is activated
at DRIVER_OK with a DeviceContext and sees only ready queues.

Guest mistakes never raise: a bad write is ignored (and traced), a bad feature set
leaves FEATURES_OK clear, a ring outside RAM sets DEVICE_NEEDS_RESET.

Trace events (TraceEvent.kind, then `fields`), emitted only when a sink is attached:
  status       old, new, names               every status change, including reset
  features     offered, accepted, ok, reason, offered_names, accepted_names  at FEATURES_OK
  queue_setup  size, max, desc, driver, device, ready   each queue, at DRIVER_OK
  notify       (queue) avail_idx             every QueueNotify write (avail_idx: as published)
  pop          head, chain, avail_idx, ...   a chain taken from the avail ring     (queue.py)
  fill         head, len, used_idx, in_flight  a used entry written              (queue.py)
  irq          raised, reason[, interrupt_status]   a used/config interrupt or its suppression
  irq_ack      value, interrupt_status       InterruptACK written (the line drops at 0)
  config_read  offset, size, value           a config-space read by the driver
  needs_reset  reason                        the device entered its error state
  ignored      reason                        a guest write or notify that had no effect
The names follow QEMU's trace events where one exists (virtqueue_pop, virtqueue_fill,
virtio_queue_notify, virtio_set_status).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from vmsim import log
from vmsim.devices.bus import GuestMemory, IrqLine, RegisterMirror
from vmsim.devices.events import TraceSink, discard, event_log
from vmsim.devices.virtio.device import DeviceContext, VirtioDevice
from vmsim.devices.virtio.queue import SplitQueue
from vmsim.devices.virtio.spec import (
    MAGIC_VALUE,
    MMIO_VERSION,
    VENDOR_ID,
    Feature,
    Interrupt,
    Reg,
    Status,
    avail_ring_bytes,
    feature_names,
    status_names,
    used_ring_bytes,
)

TRANSPORT_FEATURES = Feature.VERSION_1 | Feature.INDIRECT_DESC | Feature.EVENT_IDX
_MASK32 = 0xFFFF_FFFF
# The fields of the events every request brings, in the order their values are sent
# (vmsim.devices.events.Fields).
_monotonic = time.monotonic       # per traced event: one global lookup
_NOTIFY = ("avail_idx",)
_IRQ = ("raised", "reason", "interrupt_status")
_NO_IRQ = ("raised", "reason")
_IRQ_ACK = ("value", "interrupt_status")
_NO_SHM_LEN = 0xFFFF_FFFF  # both halves of an absent shared-memory region's length


@dataclass
class _QueueRegs:
    """What the driver programmed for one queue through QueueSel."""

    max_size: int
    num: int
    ready: bool = False
    desc: int = 0
    driver: int = 0
    device: int = 0


def _set_low(value: int, low: int) -> int:
    return (value & ~_MASK32) | (low & _MASK32)


def _set_high(value: int, high: int) -> int:
    return (value & _MASK32) | ((high & _MASK32) << 32)


class MmioTransport:
    """A virtio-mmio register window in front of one VirtioDevice.

    An MmioDevice (read/write at offsets), a Pollable (poll forwards to the device) and
    Mirrored: InterruptStatus, which the driver reads on every interrupt, is published
    on every change (reading it changes nothing).
    """

    mirrored_registers = (Reg.INTERRUPT_STATUS,)
    posted_registers: tuple[int, ...] = ()

    def __init__(
        self,
        device: VirtioDevice,
        mem: GuestMemory,
        irq: IrqLine,
        trace: TraceSink = discard,
        name: str | None = None,
    ) -> None:
        max_size = device.queue_max_size
        if max_size <= 0 or max_size & (max_size - 1) or max_size > 0x8000:
            raise ValueError(f"queue_max_size {max_size} is not a power of two up to 32768")
        self.device = device
        self.name = name or f"virtio-{device.device_id}"
        self._mem = mem
        self._irq = irq
        self._trace = trace
        self._tracing = trace is not discard
        self._log = event_log(trace)
        self._in_ram = mem.contains
        self.offered_features = TRANSPORT_FEATURES | (
            device.device_features() & Feature.DEVICE_SPECIFIC_MASK)
        self._irq_level = False
        irq.set_level(False)
        self._mirror: RegisterMirror | None = None
        self._reset_state()
        self._readers: dict[int, Callable[[], int]] = {
            Reg.MAGIC_VALUE: lambda: MAGIC_VALUE,
            Reg.VERSION: lambda: MMIO_VERSION,
            Reg.DEVICE_ID: lambda: self.device.device_id,
            Reg.VENDOR_ID: lambda: VENDOR_ID,
            Reg.DEVICE_FEATURES: self._read_device_features,
            Reg.QUEUE_NUM_MAX: self._selected_max,
            Reg.QUEUE_READY: lambda: int(self._selected_ready()),
            Reg.INTERRUPT_STATUS: lambda: self.interrupt_status,
            Reg.STATUS: lambda: self.status,
            Reg.SHM_LEN_LOW: lambda: _NO_SHM_LEN,
            Reg.SHM_LEN_HIGH: lambda: _NO_SHM_LEN,
            Reg.CONFIG_GENERATION: lambda: self.config_generation,
        }
        self._writers: dict[int, Callable[[int], None]] = {
            Reg.DEVICE_FEATURES_SEL: self._write_device_features_sel,
            Reg.DRIVER_FEATURES: self._write_driver_features,
            Reg.DRIVER_FEATURES_SEL: self._write_driver_features_sel,
            Reg.QUEUE_SEL: self._write_queue_sel,
            Reg.QUEUE_NUM: self._write_queue_num,
            Reg.QUEUE_READY: self._write_queue_ready,
            Reg.QUEUE_NOTIFY: self._write_queue_notify,
            Reg.INTERRUPT_ACK: self._write_interrupt_ack,
            Reg.STATUS: self._write_status,
            Reg.QUEUE_DESC_LOW: lambda v: self._write_queue_addr("desc", v, _set_low),
            Reg.QUEUE_DESC_HIGH: lambda v: self._write_queue_addr("desc", v, _set_high),
            Reg.QUEUE_DRIVER_LOW: lambda v: self._write_queue_addr("driver", v, _set_low),
            Reg.QUEUE_DRIVER_HIGH: lambda v: self._write_queue_addr("driver", v, _set_high),
            Reg.QUEUE_DEVICE_LOW: lambda v: self._write_queue_addr("device", v, _set_low),
            Reg.QUEUE_DEVICE_HIGH: lambda v: self._write_queue_addr("device", v, _set_high),
            Reg.SHM_SEL: lambda v: None,
        }

    # ---- state ------------------------------------------------------------------

    def _reset_state(self) -> None:
        """Everything a status write of 0 clears (section 4.2.2.1)."""
        self.status = 0
        self.interrupt_status = 0
        self.driver_features = 0
        self.config_generation = 0
        self._device_features_sel = 0
        self._driver_features_sel = 0
        self._queue_sel = 0
        self._queues = [
            _QueueRegs(self.device.queue_max_size, self.device.queue_max_size)
            for _ in range(self.device.num_queues)
        ]
        self.context: DeviceContext | None = None
        self._update_irq()

    @property
    def queues(self) -> list[SplitQueue]:
        """The live queues (empty before DRIVER_OK); for observers and tests."""
        return self.context.queues if self.context else []

    def _emit(self, kind: str, queue: int | None = None, **fields: object) -> None:
        self._log.emit(kind, self.name, queue, fields)

    def _ignored(self, what: str, queue: int | None = None) -> None:
        log.guest_error(self.name, what)
        if self._tracing:
            self._emit("ignored", queue, reason=what)

    # ---- MmioDevice ---------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset >= Reg.CONFIG:
            return self._read_config(offset - Reg.CONFIG, size)
        reader = self._readers.get(offset)
        if reader is None or size != 4:
            return 0
        return reader() & _MASK32

    def write(self, offset: int, size: int, value: int) -> None:
        if offset >= Reg.CONFIG:
            self._write_config(offset - Reg.CONFIG, size, value)
            return
        writer = self._writers.get(offset)
        if writer is None or size != 4:
            self._ignored(f"write of {size} bytes to register {offset:#x}")
            return
        writer(value & _MASK32)

    def poll(self) -> None:
        # Always, even before DRIVER_OK: a device that named fds to its FdWaker must read
        # them (its workers say READY long before the driver arrives), or the machine
        # would keep stopping for them. The device itself knows there is no queue yet.
        self.device.poll()

    def start(self) -> None:
        self.device.start()

    def close(self) -> None:
        self.device.close()

    # ---- config space -------------------------------------------------------------

    def _read_config(self, offset: int, size: int) -> int:
        if size == 8:  # a 64-bit load: two 32-bit halves, as the driver would do
            return self._read_config(offset, 4) | (self._read_config(offset + 4, 4) << 32)
        if size not in (1, 2, 4):
            return 0
        value = self.device.read_config(offset, size) & ((1 << (8 * size)) - 1)
        if self._tracing:
            self._emit("config_read", offset=offset, size=size, value=value)
        return value

    def _write_config(self, offset: int, size: int, value: int) -> None:
        if size == 8:
            self._write_config(offset, 4, value & _MASK32)
            self._write_config(offset + 4, 4, value >> 32)
        elif size in (1, 2, 4):
            self.device.write_config(offset, size, value & ((1 << (8 * size)) - 1))

    # ---- features -----------------------------------------------------------------

    def _read_device_features(self) -> int:
        if self._device_features_sel > 1:
            return 0
        return self.offered_features >> (32 * self._device_features_sel)

    def _write_device_features_sel(self, value: int) -> None:
        self._device_features_sel = value

    def _write_driver_features_sel(self, value: int) -> None:
        self._driver_features_sel = value

    def _write_driver_features(self, value: int) -> None:
        if self.status & Status.FEATURES_OK:
            self._ignored("DriverFeatures after FEATURES_OK")
            return
        if self._driver_features_sel == 0:
            self.driver_features = _set_low(self.driver_features, value)
        elif self._driver_features_sel == 1:
            self.driver_features = _set_high(self.driver_features, value)

    def _features_acceptable(self) -> str | None:
        """Why the driver's feature set is refused, or None if it is fine."""
        extra = self.driver_features & ~self.offered_features
        if extra:
            return f"driver accepted features {extra:#x} that were not offered"
        if not self.driver_features & Feature.VERSION_1:
            return "driver did not accept VIRTIO_F_VERSION_1"
        return None

    # ---- queue setup --------------------------------------------------------------

    def _selected(self) -> _QueueRegs | None:
        sel = self._queue_sel
        return self._queues[sel] if sel < len(self._queues) else None

    def _selected_max(self) -> int:
        regs = self._selected()
        return regs.max_size if regs else 0

    def _selected_ready(self) -> bool:
        regs = self._selected()
        return bool(regs and regs.ready)

    def _write_queue_sel(self, value: int) -> None:
        self._queue_sel = value

    def _programmable(self, what: str) -> _QueueRegs | None:
        """The selected queue, if its setup registers may still be written."""
        regs = self._selected()
        if regs is None:
            self._ignored(f"{what} for queue {self._queue_sel}, which does not exist")
        elif self.status & Status.DRIVER_OK:
            self._ignored(f"{what} after DRIVER_OK", self._queue_sel)
        elif regs.ready:
            self._ignored(f"{what} while the queue is ready", self._queue_sel)
        else:
            return regs
        return None

    def _write_queue_num(self, value: int) -> None:
        regs = self._programmable("QueueNum")
        if regs is None:
            return
        if value == 0 or value & (value - 1) or value > regs.max_size:
            self._ignored(f"QueueNum {value} is not a power of two up to {regs.max_size}",
                          self._queue_sel)
            return
        regs.num = value

    def _write_queue_addr(self, field: str, value: int,
                          merge: Callable[[int, int], int]) -> None:
        regs = self._programmable(f"queue {field} address")
        if regs is not None:
            setattr(regs, field, merge(getattr(regs, field), value))

    def _write_queue_ready(self, value: int) -> None:
        regs = self._selected()
        if regs is None:
            self._ignored(f"QueueReady for queue {self._queue_sel}, which does not exist")
            return
        if not value & 1:  # "stop using the queue" is allowed at any time
            regs.ready = False
            if self.context is not None:
                self.context.queues[self._queue_sel].ready = False
            return
        if self.status & Status.DRIVER_OK:
            self._ignored("QueueReady after DRIVER_OK", self._queue_sel)
            return
        problem = self._ring_problem(regs)
        if problem:
            self._fail(f"queue {self._queue_sel}: {problem}")
            return
        regs.ready = True

    def _ring_problem(self, regs: _QueueRegs) -> str | None:
        """Check the three ring areas once, at QueueReady, so queues never fault later."""
        areas = (
            ("descriptor table", regs.desc, 16 * regs.num, 16),
            ("driver area", regs.driver, avail_ring_bytes(regs.num), 2),
            ("device area", regs.device, used_ring_bytes(regs.num), 4),
        )
        for what, addr, length, align in areas:
            if addr % align:
                return f"{what} at {addr:#x} is not {align}-byte aligned"
            if not self._in_ram(addr, length):
                return f"{what} {addr:#x}+{length:#x} is outside RAM"
        return None

    # ---- status -------------------------------------------------------------------

    def _write_status(self, value: int) -> None:
        value &= 0xFF
        if value == 0:
            self._reset()
            return
        old = self.status
        if old & ~value & ~Status.DEVICE_NEEDS_RESET:
            self._ignored(f"status {value:#x} clears bits of {old:#x}; only a reset may")
        # Bits only accumulate until reset, and NEEDS_RESET belongs to the device.
        new = old | (value & ~Status.DEVICE_NEEDS_RESET)
        if new & Status.FEATURES_OK and not old & Status.FEATURES_OK:
            problem = self._features_acceptable()
            if self._tracing:
                names = self.device.feature_bit_names
                self._emit("features", offered=self.offered_features,
                           accepted=self.driver_features, ok=problem is None,
                           reason=problem or "",
                           offered_names=feature_names(self.offered_features, names),
                           accepted_names=feature_names(self.driver_features, names))
            if problem:
                new &= ~Status.FEATURES_OK
        self.status = new
        if self._tracing and new != old:
            self._emit("status", old=old, new=new, names=status_names(new))
        if new & Status.DRIVER_OK and not old & Status.DRIVER_OK:
            self._activate()

    def _reset(self) -> None:
        if self._tracing:
            self._emit("status", old=self.status, new=0, names="RESET")
        self.device.reset()
        self._reset_state()

    def _activate(self) -> None:
        if not self.status & Status.FEATURES_OK:
            self._fail("DRIVER_OK without FEATURES_OK")
            return
        indirect = bool(self.driver_features & Feature.INDIRECT_DESC)
        event_idx = bool(self.driver_features & Feature.EVENT_IDX)
        queues = []
        for index, regs in enumerate(self._queues):
            queue = SplitQueue(index, regs.num, self._mem, regs.desc, regs.driver,
                               regs.device, indirect=indirect, event_idx=event_idx,
                               ready=regs.ready, trace=self._trace, device=self.name)
            queues.append(queue)
            if self._tracing:
                self._emit("queue_setup", index, size=regs.num, max=regs.max_size,
                           desc=regs.desc, driver=regs.driver, device=regs.device,
                           ready=regs.ready)
        self.context = DeviceContext(
            self._mem, queues, self.driver_features, trace=self._trace,
            signal_used=self._signal_used, needs_reset=self._fail,
            config_changed=self._config_changed,
            interrupt=lambda queue: self._raise_interrupt(Interrupt.USED_BUFFER, queue, "forced"))
        self.device.activate(self.context)

    def _fail(self, reason: str) -> None:
        """Enter the error state the spec calls DEVICE_NEEDS_RESET (section 2.1.2)."""
        first = not self.status & Status.DEVICE_NEEDS_RESET
        self.status |= Status.DEVICE_NEEDS_RESET
        if self.context is not None:  # nothing more is taken from or written to a ring
            for queue in self.context.queues:
                queue.ready = False
        log.guest_error(self.name, f"DEVICE_NEEDS_RESET: {reason}")
        if self._tracing:
            self._emit("needs_reset", reason=reason)
        if first and self.status & Status.DRIVER_OK:
            self._raise_interrupt(Interrupt.CONFIG_CHANGE, None, "needs reset")

    # ---- notifications and interrupts ------------------------------------------------

    def _write_queue_notify(self, value: int) -> None:
        index = value & 0xFFFF
        if self._tracing:
            queues = self.context.queues if self.context else ()
            shadow = queues[index].published_avail_idx() if index < len(queues) else None
            events = self._log
            events.record((events.next_seq(), _monotonic(), "notify", self.name, index,
                           (_NOTIFY, shadow)))
        if not self.status & Status.DRIVER_OK or self.context is None:
            self._ignored("notify before DRIVER_OK", index)
        elif self.status & Status.DEVICE_NEEDS_RESET:
            self._ignored("notify while the device needs a reset", index)
        elif index >= len(self._queues):
            self._ignored(f"notify for queue {index}, which does not exist", index)
        elif not self.context.queues[index].ready:
            self._ignored("notify for a queue that is not ready", index)
        else:
            self.device.queue_notify(index)
        if self._tracing:
            self._log.settle()

    def _signal_used(self, queue_index: int) -> None:
        if self.context is None:
            return
        wanted, why = self.context.queues[queue_index].needs_interrupt(self._tracing)
        if wanted:
            self._raise_interrupt(Interrupt.USED_BUFFER, queue_index, why)
        elif self._tracing:
            events = self._log
            events.record((events.next_seq(), _monotonic(), "irq", self.name, queue_index,
                           (_NO_IRQ, False, why)))

    def _config_changed(self) -> None:
        self.config_generation = (self.config_generation + 1) & _MASK32
        self._raise_interrupt(Interrupt.CONFIG_CHANGE, None, "config changed")

    def _raise_interrupt(self, bit: int, queue: int | None, why: str) -> None:
        self.interrupt_status |= bit
        if self._tracing:
            events = self._log
            events.record((events.next_seq(), _monotonic(), "irq", self.name, queue,
                           (_IRQ, True, why, self.interrupt_status)))
        self._update_irq()

    def _write_interrupt_ack(self, value: int) -> None:
        self.interrupt_status &= ~value
        if self._tracing:
            events = self._log
            events.record((events.next_seq(), _monotonic(), "irq_ack", self.name, None,
                           (_IRQ_ACK, value, self.interrupt_status)))
        self._update_irq()

    # ---- observers ------------------------------------------------------------------

    def query_status(self) -> dict[str, object]:
        """The device as QEMU's x-query-virtio-status answers it (its field names), plus
        each live queue's x-query-virtio-queue-status; plain values, changes nothing."""
        names = self.device.feature_bit_names
        return {
            "name": self.name, "device-id": self.device.device_id,
            "status": self.status, "status-names": status_names(self.status),
            "host-features": feature_names(self.offered_features, names),
            "guest-features": feature_names(self.driver_features, names),
            "isr": self.interrupt_status, "config-generation": self.config_generation,
            "num-vqs": self.device.num_queues,
            "queues": [queue.query_status() for queue in self.queues],
        }

    def attach_mirror(self, mirror: RegisterMirror) -> None:
        self._mirror = mirror
        mirror.publish(Reg.INTERRUPT_STATUS, self.interrupt_status)

    def _update_irq(self) -> None:
        """After every change of InterruptStatus: the line, and the published value."""
        if self._mirror is not None:
            self._mirror.publish(Reg.INTERRUPT_STATUS, self.interrupt_status)
        level = self.interrupt_status != 0
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)
