"""A guest-side virtio driver written in Python, for driving devices in unit tests.

It plays the Linux 6.1 virtio-mmio driver's part over a devices.memory.Ram: the same
negotiation order, the same queue setup order, split rings laid out in RAM. It can submit
well-formed chains (direct or through an indirect table) and also hostile ones built from
raw descriptors, so bad-input tests describe exactly the bytes a malicious guest writes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from vmsim.devices.bus import LevelRecorder, MmioDevice
from vmsim.devices.events import TraceEvent, discard
from vmsim.devices.memory import Ram
from vmsim.devices.virtio.device import DeviceContext, VirtioDevice
from vmsim.devices.virtio.mmio import MmioTransport
from vmsim.devices.virtio.queue import ChainError
from vmsim.devices.virtio.strict.rules import Finding, Rule
from vmsim.devices.virtio.strict.transport import CheckedTransport
from vmsim.devices.virtio.spec import (
    Desc,
    Feature,
    Reg,
    Status,
    avail_ring_bytes,
    used_ring_bytes,
)

_DESC = struct.Struct("<QIHH")


class DriverError(AssertionError):
    """The device did not behave as the Linux driver requires."""


class Descriptor(NamedTuple):
    """One raw split-ring descriptor, exactly as written to guest memory."""

    addr: int
    len: int
    flags: int = 0
    next: int = 0

    def pack(self) -> bytes:
        return _DESC.pack(self.addr & (2**64 - 1), self.len & 0xFFFF_FFFF,
                          self.flags & 0xFFFF, self.next & 0xFFFF)


class Used(NamedTuple):
    head: int
    len: int


class Heap:
    """A bump allocator over guest RAM: tests never free, RAM is re-created per test."""

    def __init__(self, ram: Ram, start: int | None = None) -> None:
        self.ram = ram
        self.next = ram.base if start is None else start

    def alloc(self, size: int, align: int = 16) -> int:
        addr = (self.next + align - 1) & ~(align - 1)
        if addr + size > self.ram.end:
            raise MemoryError(f"test heap exhausted allocating {size} bytes")
        self.next = addr + max(size, 1)
        return addr

    def put(self, data: bytes, align: int = 16) -> int:
        addr = self.alloc(len(data), align)
        self.ram.write(addr, data)
        return addr


@dataclass
class Request:
    """A chain the driver submitted; its writable buffers can be read back."""

    head: int
    descriptors: list[int]
    writable: list[tuple[int, int]] = field(default_factory=list)
    ram: Ram | None = None

    def written(self, length: int | None = None) -> bytes:
        """The writable buffers' bytes, concatenated (the first `length` of them)."""
        assert self.ram is not None
        data = b"".join(self.ram.read(addr, size) for addr, size in self.writable)
        return data if length is None else data[:length]


class DriverQueue:
    """The driver's half of one split virtqueue."""

    def __init__(self, driver: "VirtioDriver", index: int, size: int) -> None:
        self.driver = driver
        self.ram = driver.ram
        self.index = index
        self.size = size
        heap = driver.heap
        self.desc = heap.alloc(16 * size, 16)
        self.avail = heap.alloc(avail_ring_bytes(size), 2)
        self.used = heap.alloc(used_ring_bytes(size), 4)
        self.ram.write(self.desc, bytes(16 * size))
        self.ram.write(self.avail, bytes(avail_ring_bytes(size)))
        self.ram.write(self.used, bytes(used_ring_bytes(size)))
        self.avail_idx = 0
        self.last_used = 0
        self.interrupts_wanted = True  # False: leave used_event / flags to the test
        self._free = list(range(size))
        self._requests: dict[int, Request] = {}

    # ---- well-formed submissions ------------------------------------------------------

    def submit(self, readable: list[bytes], writable: list[int], *,
               indirect: bool = False, kick: bool = True) -> Request:
        """Queue one request: device-readable buffers, then writable ones (sizes)."""
        heap = self.driver.heap
        segments = [Descriptor(heap.put(data), len(data)) for data in readable]
        out = [(heap.alloc(size), size) for size in writable]
        for addr, size in out:
            self.ram.write(addr, bytes(size))
        segments += [Descriptor(addr, size, Desc.WRITE) for addr, size in out]
        if not segments:
            raise ValueError("a request needs at least one buffer")
        if indirect:
            table_addr, table_len = self.indirect_table(segments)
            head = self._take(1)[0]
            self.write_desc(head, Descriptor(table_addr, table_len, Desc.INDIRECT))
            used = [head]
        else:
            used = self._take(len(segments))
            for i, seg in enumerate(segments):
                last = i == len(segments) - 1
                flags = seg.flags | (0 if last else Desc.NEXT)
                self.write_desc(used[i], Descriptor(seg.addr, seg.len, flags,
                                                    0 if last else used[i + 1]))
        request = Request(used[0], used, out, self.ram)
        self._requests[used[0]] = request
        self.make_available(used[0])
        if kick:
            self.kick()
        return request

    def _take(self, count: int) -> list[int]:
        if count > len(self._free):
            raise DriverError(f"queue {self.index}: no {count} free descriptors")
        taken, self._free = self._free[:count], self._free[count:]
        return taken

    def indirect_table(self, entries: list[Descriptor]) -> tuple[int, int]:
        """Write an indirect table whose entries chain in order; returns (addr, len)."""
        raw = b"".join(
            Descriptor(e.addr, e.len,
                       e.flags | (Desc.NEXT if i < len(entries) - 1 else 0),
                       i + 1 if i < len(entries) - 1 else 0).pack()
            for i, e in enumerate(entries))
        return self.driver.heap.put(raw), len(raw)

    # ---- raw access for hostile chains -------------------------------------------------

    def write_desc(self, index: int, desc: Descriptor) -> None:
        """Write descriptor `index` of the table verbatim (no checks)."""
        self.ram.write(self.desc + 16 * index, desc.pack())

    def raw_table(self, entries: list[Descriptor]) -> int:
        """Write a verbatim indirect table (flags and next as given); returns its address."""
        return self.driver.heap.put(b"".join(e.pack() for e in entries))

    def make_available(self, head: int) -> None:
        """Put `head` in the next avail slot and publish avail.idx."""
        slot = self.avail + 4 + 2 * (self.avail_idx % self.size)
        self.ram.write_u16(slot, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.ram.write_u16(self.avail + 2, self.avail_idx)

    def set_avail_idx(self, value: int) -> None:
        """Publish an arbitrary avail.idx, e.g. one that runs ahead of the ring."""
        self.avail_idx = value & 0xFFFF
        self.ram.write_u16(self.avail + 2, self.avail_idx)

    def kick(self) -> None:
        self.driver.write_reg(Reg.QUEUE_NOTIFY, self.index)

    # ---- notification fields -------------------------------------------------------------

    def set_avail_flags(self, flags: int) -> None:
        self.ram.write_u16(self.avail, flags)

    def set_used_event(self, value: int) -> None:
        self.ram.write_u16(self.avail + 4 + 2 * self.size, value)

    def avail_event(self) -> int:
        return self.ram.read_u16(self.used + 4 + 8 * self.size)

    def used_flags(self) -> int:
        return self.ram.read_u16(self.used)

    def used_idx(self) -> int:
        return self.ram.read_u16(self.used + 2)

    # ---- completions -----------------------------------------------------------------

    def collect(self) -> list[Used]:
        """New used entries since the last call; their descriptors become free again."""
        entries = []
        end = self.used_idx()
        while self.last_used != end:
            slot = self.used + 4 + 8 * (self.last_used % self.size)
            head, length = struct.unpack("<II", self.ram.read(slot, 8))
            entries.append(Used(head, length))
            self.last_used = (self.last_used + 1) & 0xFFFF
            request = self._requests.pop(head, None)
            if request is not None:
                self._free.extend(request.descriptors)
        if self.driver.has(Feature.EVENT_IDX) and self.interrupts_wanted:
            self.set_used_event(self.last_used)  # as Linux's get_buf: "next one, please"
        return entries


class VirtioDriver:
    """Drives one virtio-mmio transport the way Linux 6.1's virtio_mmio + virtio core do."""

    def __init__(self, mmio: MmioDevice, ram: Ram, heap_start: int | None = None) -> None:
        self.mmio = mmio
        self.ram = ram
        self.heap = Heap(ram, heap_start)
        self.queues: list[DriverQueue] = []
        self.features = 0

    def read_reg(self, offset: int, size: int = 4) -> int:
        return self.mmio.read(offset, size)

    def write_reg(self, offset: int, value: int, size: int = 4) -> None:
        self.mmio.write(offset, size, value)

    @property
    def status(self) -> int:
        return self.read_reg(Reg.STATUS)

    def add_status(self, bits: int) -> None:
        self.write_reg(Reg.STATUS, self.status | bits)

    def reset(self) -> None:
        self.write_reg(Reg.STATUS, 0)
        self.queues = []

    def device_features(self) -> int:
        """Read the 64-bit feature word, high half first, as Linux does."""
        self.write_reg(Reg.DEVICE_FEATURES_SEL, 1)
        high = self.read_reg(Reg.DEVICE_FEATURES)
        self.write_reg(Reg.DEVICE_FEATURES_SEL, 0)
        low = self.read_reg(Reg.DEVICE_FEATURES)
        return (high << 32) | low

    def write_driver_features(self, features: int) -> None:
        self.write_reg(Reg.DRIVER_FEATURES_SEL, 1)
        self.write_reg(Reg.DRIVER_FEATURES, features >> 32)
        self.write_reg(Reg.DRIVER_FEATURES_SEL, 0)
        self.write_reg(Reg.DRIVER_FEATURES, features & 0xFFFF_FFFF)

    def identify(self) -> tuple[int, int, int]:
        """MagicValue, Version and DeviceID, read first as every driver must (4.2.3.1.1)."""
        return (self.read_reg(Reg.MAGIC_VALUE), self.read_reg(Reg.VERSION),
                self.read_reg(Reg.DEVICE_ID))

    def negotiate(self, wanted: int | None = None) -> int:
        """Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (read back).

        `wanted` defaults to every transport feature plus the device's own; the result
        is what both sides agreed on. Raises DriverError if FEATURES_OK does not stick.
        """
        self.identify()
        self.reset()
        self.add_status(Status.ACKNOWLEDGE)
        self.add_status(Status.DRIVER)
        offered = self.device_features()
        if wanted is None:
            wanted = offered
        features = offered & wanted
        self.write_driver_features(features)
        self.add_status(Status.FEATURES_OK)
        if not self.status & Status.FEATURES_OK:
            raise DriverError(f"device refused features {features:#x}")
        self.features = features
        return features

    def setup_queue(self, index: int, size: int | None = None) -> DriverQueue:
        """QueueSel, QueueReady == 0, QueueNumMax, QueueNum, addresses, QueueReady = 1."""
        self.write_reg(Reg.QUEUE_SEL, index)
        if self.read_reg(Reg.QUEUE_READY):
            raise DriverError(f"queue {index} is already ready")
        max_size = self.read_reg(Reg.QUEUE_NUM_MAX)
        if max_size == 0:
            raise DriverError(f"queue {index} does not exist")
        if max_size & (max_size - 1):
            raise DriverError(f"bad virtqueue length {max_size}")
        size = min(size or max_size, max_size)
        queue = DriverQueue(self, index, size)
        self.write_reg(Reg.QUEUE_NUM, size)
        for low, addr in ((Reg.QUEUE_DESC_LOW, queue.desc),
                          (Reg.QUEUE_DRIVER_LOW, queue.avail),
                          (Reg.QUEUE_DEVICE_LOW, queue.used)):
            self.write_reg(low, addr & 0xFFFF_FFFF)
            self.write_reg(low + 4, addr >> 32)
        self.write_reg(Reg.QUEUE_READY, 1)
        self.queues.append(queue)
        return queue

    def driver_ok(self) -> None:
        self.add_status(Status.DRIVER_OK)

    def init(self, num_queues: int | None = None, queue_size: int | None = None,
             wanted: int | None = None) -> int:
        """The whole Linux probe sequence; returns the negotiated features."""
        features = self.negotiate(wanted)
        if num_queues is None:
            num_queues = 0
            while True:
                self.write_reg(Reg.QUEUE_SEL, num_queues)
                if not self.read_reg(Reg.QUEUE_NUM_MAX):
                    break
                num_queues += 1
        for index in range(num_queues):
            self.setup_queue(index, queue_size)
        self.driver_ok()
        return features

    def ack_interrupt(self) -> int:
        """What Linux's vm_interrupt does first: read InterruptStatus, ACK the same bits."""
        status = self.read_reg(Reg.INTERRUPT_STATUS)
        if status:
            self.write_reg(Reg.INTERRUPT_ACK, status)
        return status

    def has(self, feature: int) -> bool:
        return bool(self.features & feature)


class EchoDevice(VirtioDevice):
    """A loopback device for transport tests: each chain's readable bytes are copied
    into its writable bytes (as far as they fit), used.len = bytes written.

    A broken chain makes it call needs_reset, as a real device should.
    """

    device_id = 0x7E  # not a registered virtio type; Linux would skip it
    CONFIG = bytes(range(0x10, 0x18))

    def __init__(self, num_queues: int = 2, queue_max_size: int = 256,
                 features: int = 0) -> None:
        self.num_queues = num_queues
        self.queue_max_size = queue_max_size
        self._features = features
        self.ctx: DeviceContext | None = None
        self.notified: list[int] = []
        self.resets = 0
        self.errors: list[ChainError] = []
        self.config = bytearray(self.CONFIG)

    def device_features(self) -> int:
        return self._features

    def read_config(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > len(self.config):
            return 0
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write_config(self, offset: int, size: int, value: int) -> None:
        if 0 <= offset and offset + size <= len(self.config):
            self.config[offset:offset + size] = value.to_bytes(size, "little")

    def activate(self, ctx: DeviceContext) -> None:
        self.ctx = ctx

    def queue_notify(self, index: int) -> None:
        assert self.ctx is not None
        self.notified.append(index)
        queue = self.ctx.queues[index]
        try:
            while (chain := queue.pop()) is not None:
                data = chain.read_all()[:chain.writable_len]
                chain.write(0, data)
                queue.add_used(chain.head, len(data))
                self.ctx.signal_used(index)
        except ChainError as err:
            self.errors.append(err)
            self.ctx.needs_reset(str(err))

    def reset(self) -> None:
        self.ctx = None
        self.resets += 1


RAM_BASE = 0x8000_0000


@dataclass
class Rig:
    """A device on a transport over fresh RAM, with a driver and a trace recorder."""

    device: VirtioDevice
    ram: Ram
    irq: LevelRecorder
    transport: MmioTransport
    driver: VirtioDriver
    events: list[TraceEvent]

    def kinds(self, kind: str) -> list[TraceEvent]:
        return [e for e in self.events if e.kind == kind]


def make_rig(device: VirtioDevice | None = None, ram_size: int = 1 << 20,
             trace: bool = True, sink: Callable[[TraceEvent], None] | None = None,
             name: str | None = None, strict: Callable[[Finding], None] | None = None,
             strict_rules: tuple[Rule, ...] = ()) -> Rig:
    """Wire `device` (an EchoDevice by default) the way the machine will, minus the CPU.
    `sink` also gets the transport's events (a TraceHub shared with the device); with
    `trace` False it is the transport's sink itself, as on a machine. `name` names the
    transport as a machine's model would ("virtio-crypto"). With
    `strict`, the driver goes through the strict checker (the core's rules plus
    `strict_rules`), which reports its findings there, as `--strict` does."""
    device = device if device is not None else EchoDevice()
    ram = Ram(RAM_BASE, ram_size)
    irq = LevelRecorder()
    events: list[TraceEvent] = []
    record = events.append if trace else discard
    if sink is not None and not trace:
        record = sink
    elif sink is not None:
        def record(event: TraceEvent, _keep=events.append, _sink=sink) -> None:
            _keep(event)
            _sink(event)
    transport = MmioTransport(device, ram, irq, trace=record, name=name)
    front: MmioDevice = transport
    if strict is not None:
        front = CheckedTransport(transport, strict, strict_rules)
    return Rig(device, ram, irq, transport, VirtioDriver(front, ram), events)


__all__ = ["Descriptor", "DriverError", "DriverQueue", "EchoDevice", "Feature", "Heap",
           "RAM_BASE", "Request", "Rig", "Used", "VirtioDriver", "make_rig"]
