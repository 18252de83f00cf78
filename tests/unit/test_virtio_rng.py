"""virtio-rng (vmsim.devices.virtio.rng) through the real virtio-mmio transport, driven
by the Python test driver the way Linux's virtio_rng driver drives it: negotiation,
requests filled from the entropy source with used.len = bytes written, the per-chain
cap, chains with nothing to write, malformed chains, and reset.

The device's entropy source is replaced by a counting one where a test needs to know
the exact bytes; one test keeps the default (os.urandom).
"""
from __future__ import annotations

import logging

import pytest

from vmsim.devices.bus import LevelRecorder
from vmsim.devices.memory import Ram
from vmsim.devices.model import SlotContext
from vmsim.devices.virtio.rng.device import MAX_BYTES_PER_CHAIN, RngDevice
from vmsim.devices.virtio.rng.model import MODEL
from vmsim.devices.virtio.spec import Desc, Status
from vmsim.testing.virtio_driver import RAM_BASE, Descriptor, Rig, VirtioDriver, make_rig

VERSION_1 = 1 << 32
INDIRECT_DESC = 1 << 28
EVENT_IDX = 1 << 29
NEEDS_RESET = 0x40
USED_BUFFER_IRQ, CONFIG_CHANGE_IRQ = 1, 2


class Counting:
    """An entropy source whose bytes are known: 0, 1, 2, ... (mod 256) across calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.next = 0

    def __call__(self, size: int) -> bytes:
        self.calls.append(size)
        data = bytes((self.next + i) & 0xFF for i in range(size))
        self.next += size
        return data

    def expected(self, start: int, size: int) -> bytes:
        return bytes((start + i) & 0xFF for i in range(size))


def rng_rig(**kwargs: object) -> tuple[Rig, Counting]:
    """An RngDevice with a counting source, brought up by the driver."""
    source = Counting()
    rig = make_rig(RngDevice(entropy=source, **kwargs))  # type: ignore[arg-type]
    rig.driver.init()
    return rig, source


def test_identity_and_negotiation():
    """Device ID 4 at 0x008, no device feature bits, no config space, one queue."""
    rig = make_rig(RngDevice())
    t = rig.transport
    assert t.read(0x000, 4) == 0x74726976 and t.read(0x004, 4) == 2
    assert t.read(0x008, 4) == 4
    # Only what the transport adds itself: VERSION_1, INDIRECT_DESC, EVENT_IDX.
    assert rig.driver.device_features() == VERSION_1 | INDIRECT_DESC | EVENT_IDX
    assert [t.read(0x100 + offset, 4) for offset in range(0, 16, 4)] == [0, 0, 0, 0]
    features = rig.driver.init()
    assert features == VERSION_1 | INDIRECT_DESC | EVENT_IDX
    assert len(rig.driver.queues) == 1 and rig.driver.queues[0].size == 256
    assert rig.driver.status & Status.DRIVER_OK and not rig.driver.status & NEEDS_RESET
    assert rig.device.ctx is not None


def test_linux_probe_with_only_version_1():
    """A driver that takes none of the optional transport features still gets a device."""
    rig = make_rig(RngDevice(entropy=Counting()))
    assert rig.driver.init(wanted=VERSION_1) == VERSION_1
    request = rig.driver.queues[0].submit([], [64])
    assert [u.len for u in rig.driver.queues[0].collect()] == [64]
    assert request.written() == bytes(range(64))


def test_request_is_filled_and_used_len_is_bytes_written():
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    request = q.submit([], [64])          # what Linux's virtio_rng queues: one 64-byte buffer
    (used,) = q.collect()
    assert used == (request.head, 64)
    assert request.written() == source.expected(0, 64)
    assert source.calls == [64]
    assert rig.irq.level and rig.transport.read(0x060, 4) == USED_BUFFER_IRQ
    assert rig.device.bytes_served == 64


def test_chain_of_several_writable_buffers_is_filled_in_order():
    """Direct and indirect chains: the bytes run on across the buffers."""
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    first = q.submit([], [3, 5, 8])
    second = q.submit([], [10, 6], indirect=True)
    used = q.collect()
    assert used == [(first.head, 16), (second.head, 16)]
    assert first.written() == source.expected(0, 16)
    assert second.written() == source.expected(16, 16)


def test_every_available_chain_is_served_on_one_kick():
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    requests = [q.submit([], [32], kick=False) for _ in range(4)]
    q.kick()
    assert [(u.head, u.len) for u in q.collect()] == [(r.head, 32) for r in requests]
    assert source.calls == [32] * 4


def test_default_source_gives_random_bytes():
    """With os.urandom two 4 KiB requests are neither constant nor equal."""
    rig = make_rig(RngDevice())
    rig.driver.init()
    q = rig.driver.queues[0]
    a, b = q.submit([], [4096]), q.submit([], [4096])
    assert [u.len for u in q.collect()] == [4096, 4096]
    data_a, data_b = a.written(), b.written()
    assert data_a != data_b
    assert len(set(data_a)) > 200 and len(set(data_b)) > 200


def test_cap_per_chain_is_honoured():
    """A buffer bigger than max_bytes_per_chain gets exactly the cap, the rest untouched."""
    rig, source = rng_rig(max_bytes_per_chain=100)
    q = rig.driver.queues[0]
    request = q.submit([], [60, 60, 180])
    (used,) = q.collect()
    assert used.len == 100 and source.calls == [100]
    written = request.written()
    assert written[:100] == source.expected(0, 100)
    assert written[100:] == bytes(200)
    # a buffer below the cap is filled whole
    small = q.submit([], [99])
    assert [u.len for u in q.collect()] == [99]
    assert small.written() == source.expected(100, 99)


def test_default_cap_is_64_kib():
    rig, source = rng_rig()
    assert MAX_BYTES_PER_CHAIN == 64 << 10
    q = rig.driver.queues[0]
    request = q.submit([], [MAX_BYTES_PER_CHAIN + 4096])
    assert [u.len for u in q.collect()] == [MAX_BYTES_PER_CHAIN]
    assert source.calls == [MAX_BYTES_PER_CHAIN]
    assert request.written()[MAX_BYTES_PER_CHAIN:] == bytes(4096)


def test_model_option_sets_the_cap():
    """`-device virtio-rng,max-bytes=N` reaches the device through the model."""
    ram = Ram(RAM_BASE, 1 << 20)
    irq = LevelRecorder()
    transport = MODEL.create(SlotContext(ram, irq, waker=None),  # type: ignore[arg-type]
                             MODEL.resolve({"max-bytes": "48"}))
    assert isinstance(transport.device, RngDevice) and transport.name == "virtio-rng"
    driver = VirtioDriver(transport, ram)
    driver.init()
    request = driver.queues[0].submit([], [64])
    assert [u.len for u in driver.queues[0].collect()] == [48]
    assert len(set(request.written()[:48])) > 1 and request.written()[48:] == bytes(16)
    assert irq.level


def test_chain_with_nothing_writable_is_returned_with_len_0():
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    readable_only = q.submit([b"driver bytes"], [])
    (used,) = q.collect()
    assert used == (readable_only.head, 0)
    assert source.calls == []
    # readable bytes before writable ones are skipped, the writable part is filled
    mixed = q.submit([b"ignored"], [16])
    assert [u.len for u in q.collect()] == [16]
    assert mixed.written() == source.expected(0, 16)
    assert not rig.driver.status & NEEDS_RESET


def test_zero_length_writable_descriptor_gets_len_0():
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    head = 0
    q.write_desc(head, Descriptor(rig.driver.heap.alloc(16), 0, Desc.WRITE))
    q.make_available(head)
    q.kick()
    assert q.collect() == [(head, 0)]
    assert source.calls == [] and not rig.driver.status & NEEDS_RESET


@pytest.mark.parametrize("bad", ["outside-ram", "loop", "readable-after-writable", "head-index"])
def test_malformed_chain_needs_reset_without_an_exception(bad):
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    good = q.submit([], [8], kick=False)
    buf = rig.driver.heap.alloc(64)
    head = 10
    if bad == "outside-ram":
        q.write_desc(head, Descriptor(rig.ram.end - 8, 64, Desc.WRITE))
    elif bad == "loop":
        q.write_desc(head, Descriptor(buf, 8, Desc.WRITE | Desc.NEXT, 11))
        q.write_desc(11, Descriptor(buf + 8, 8, Desc.WRITE | Desc.NEXT, head))
    elif bad == "readable-after-writable":
        q.write_desc(head, Descriptor(buf, 8, Desc.WRITE | Desc.NEXT, 11))
        q.write_desc(11, Descriptor(buf + 8, 8, 0))
    else:
        head = q.size + 3                    # not a descriptor of this queue
    q.make_available(head)
    q.kick()                                 # must not raise
    assert rig.driver.status & NEEDS_RESET
    assert rig.transport.read(0x060, 4) & CONFIG_CHANGE_IRQ and rig.irq.level
    # the good chain ahead of the bad one was still completed
    assert q.collect() == [(good.head, 8)] and good.written() == source.expected(0, 8)
    # nothing was written outside RAM or into the bad buffers
    assert rig.ram.read(buf, 64) == bytes(64)
    # and the device is stopped: later kicks are not served
    q.submit([], [8])
    assert q.collect() == [] and source.calls == [8]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_failing_entropy_source_needs_reset_and_is_logged_as_internal():
    """An exception from the source is vmsim's problem, not the guest's: the device
    logs it as an internal error and stops, and nothing raises into the machine."""
    def broken(size: int) -> bytes:
        raise OSError("no entropy today")

    rig = make_rig(RngDevice(entropy=broken))
    rig.driver.init()
    records = _Records()
    internal = logging.getLogger("vmsim.internal")
    internal.addHandler(records)
    try:
        request = rig.driver.queues[0].submit([], [32])     # must not raise
    finally:
        internal.removeHandler(records)
    assert rig.driver.status & NEEDS_RESET
    assert rig.transport.read(0x060, 4) & CONFIG_CHANGE_IRQ
    assert rig.driver.queues[0].collect() == [] and request.written() == bytes(32)
    assert [r.getMessage() for r in records.records] == [
        "virtio-rng: request queue: OSError('no entropy today'); the device now needs a reset"]


def test_reset_drops_the_context_and_the_device_comes_back():
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    q.submit([], [16])
    q.collect()
    rig.driver.reset()
    t = rig.transport
    assert rig.device.ctx is None and t.status == 0 and t.interrupt_status == 0
    assert not rig.irq.level
    # a kick after reset reaches nothing
    t.write(0x050, 4, 0)
    assert source.calls == [16]
    rig.driver.init()
    request = rig.driver.queues[0].submit([], [16])
    assert [u.len for u in rig.driver.queues[0].collect()] == [16]
    assert request.written() == source.expected(16, 16)


def test_reset_after_needs_reset_recovers():
    rig, source = rng_rig()
    q = rig.driver.queues[0]
    q.write_desc(0, Descriptor(rig.ram.end, 16, Desc.WRITE))
    q.make_available(0)
    q.kick()
    assert rig.driver.status & NEEDS_RESET
    rig.driver.init()
    assert not rig.driver.status & NEEDS_RESET and rig.device.ctx is not None
    request = rig.driver.queues[0].submit([], [32])
    assert [u.len for u in rig.driver.queues[0].collect()] == [32]
    assert request.written() == source.expected(0, 32)


def test_kick_for_a_queue_it_does_not_have_is_ignored():
    rig, source = rng_rig()
    rig.driver.queues[0].submit([], [8], kick=False)
    rig.transport.write(0x050, 4, 1)
    rig.transport.write(0x050, 4, 7)
    # The transport filters these; the device must also ignore one handed to it directly.
    rig.device.queue_notify(1)
    assert source.calls == [] and not rig.driver.status & NEEDS_RESET
    rig.driver.queues[0].kick()
    assert [u.len for u in rig.driver.queues[0].collect()] == [8]


def test_served_requests_are_traced():
    events = []
    device = RngDevice(entropy=Counting(), trace=events.append)
    rig = make_rig(device)
    rig.driver.init()
    request = rig.driver.queues[0].submit([], [24])
    rig.driver.queues[0].collect()
    served = [e for e in events if e.kind == "request"]
    assert len(served) == 1
    assert served[0].device == "virtio-rng" and served[0].queue == 0
    assert served[0].fields == {"head": request.head, "used": 24}
