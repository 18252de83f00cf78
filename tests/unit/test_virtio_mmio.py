"""The virtio-mmio v2 transport: registers at their spec offsets, negotiation, reset,
queue setup rules, notifications and the level-triggered interrupt.

Offsets are written as literal numbers from the virtio 1.2 spec (section 4.2.2), not
taken from vmsim.devices.virtio.spec, so a wrong constant there fails here.
"""
from __future__ import annotations

import pytest

from vmsim.devices.bus import MirrorRecorder
from vmsim.devices.virtio.queue import ChainError
from vmsim.devices.virtio.spec import Feature, Status
from vmsim.testing.virtio_driver import DriverError, EchoDevice, make_rig

VERSION_1 = 1 << 32
INDIRECT_DESC = 1 << 28
EVENT_IDX = 1 << 29


def test_identity_registers_at_spec_offsets():
    rig = make_rig()
    t = rig.transport
    assert t.read(0x000, 4) == 0x74726976
    assert t.read(0x004, 4) == 2
    assert t.read(0x008, 4) == EchoDevice.device_id
    assert t.read(0x00C, 4) != 0


def test_device_features_words_and_selector():
    rig = make_rig(EchoDevice(features=0b101))
    t = rig.transport
    t.write(0x014, 4, 0)
    assert t.read(0x010, 4) == INDIRECT_DESC | EVENT_IDX | 0b101
    t.write(0x014, 4, 1)
    assert t.read(0x010, 4) == 1  # VERSION_1 is bit 32
    t.write(0x014, 4, 2)
    assert t.read(0x010, 4) == 0


def test_device_bits_above_23_are_not_offered():
    rig = make_rig(EchoDevice(features=(1 << 24) | (1 << 30) | 1))
    assert rig.driver.device_features() == VERSION_1 | INDIRECT_DESC | EVENT_IDX | 1


def test_driver_features_written_through_selector_at_0x20_0x24():
    rig = make_rig()
    t = rig.transport
    t.write(0x070, 4, Status.ACKNOWLEDGE | Status.DRIVER)
    t.write(0x024, 4, 1)
    t.write(0x020, 4, 1)
    t.write(0x024, 4, 0)
    t.write(0x020, 4, INDIRECT_DESC)
    assert t.driver_features == VERSION_1 | INDIRECT_DESC


def test_queue_registers_at_spec_offsets():
    rig = make_rig(EchoDevice(num_queues=2, queue_max_size=64))
    t, ram = rig.transport, rig.ram
    t.write(0x070, 4, 0)
    t.write(0x070, 4, Status.ACKNOWLEDGE | Status.DRIVER)
    rig.driver.write_driver_features(VERSION_1)
    t.write(0x070, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK)
    t.write(0x030, 4, 1)  # QueueSel
    assert t.read(0x044, 4) == 0  # QueueReady
    assert t.read(0x034, 4) == 64  # QueueNumMax
    t.write(0x038, 4, 16)  # QueueNum
    desc, avail, used = ram.base + 0x1000, ram.base + 0x2000, ram.base + 0x3000
    for low, addr in ((0x080, desc), (0x090, avail), (0x0A0, used)):
        t.write(low, 4, addr & 0xFFFF_FFFF)
        t.write(low + 4, 4, addr >> 32)
    t.write(0x044, 4, 1)
    assert t.read(0x044, 4) == 1
    t.write(0x070, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK
            | Status.DRIVER_OK)
    q = t.queues[1]
    assert (q.size, q.desc_addr, q.avail_addr, q.used_addr) == (16, desc, avail, used)
    assert q.ready and not t.queues[0].ready


def test_queue_num_max_is_zero_for_missing_queue():
    rig = make_rig(EchoDevice(num_queues=2))
    rig.transport.write(0x030, 4, 2)
    assert rig.transport.read(0x034, 4) == 0
    rig.transport.write(0x030, 4, 0xFFFF_FFFF)
    assert rig.transport.read(0x034, 4) == 0


def test_shm_regions_absent_and_config_generation_at_0xfc():
    rig = make_rig()
    t = rig.transport
    t.write(0x0AC, 4, 0)
    assert t.read(0x0B0, 4) == 0xFFFF_FFFF
    assert t.read(0x0B4, 4) == 0xFFFF_FFFF
    gen = t.read(0x0FC, 4)
    rig.driver.init()
    assert t.read(0x0FC, 4) == gen
    t.context.config_changed()
    assert t.read(0x0FC, 4) == gen + 1
    assert t.read(0x060, 4) & 2 and rig.irq.level


def test_config_space_at_0x100_with_8_16_32_and_64_bit_access():
    rig = make_rig()
    t = rig.transport
    assert t.read(0x100, 1) == 0x10
    assert t.read(0x101, 1) == 0x11
    assert t.read(0x102, 2) == 0x1312
    assert t.read(0x104, 4) == 0x17161514
    assert t.read(0x100, 8) == 0x1716151413121110
    t.write(0x101, 1, 0xAB)
    assert t.read(0x100, 4) == 0x1312AB10
    assert t.read(0x100 + 64, 4) == 0  # beyond the device's config


def test_unknown_registers_and_odd_sizes_are_harmless():
    rig = make_rig()
    t = rig.transport
    for offset in (0x018, 0x040, 0x0C0, 0x0F8):
        assert t.read(offset, 4) == 0
        t.write(offset, 4, 0xFFFF_FFFF)
    assert t.read(0x000, 2) == 0
    t.write(0x070, 1, Status.ACKNOWLEDGE)
    assert t.status == 0


def test_linux_negotiation_sequence():
    rig = make_rig()
    features = rig.driver.init()
    assert features == VERSION_1 | INDIRECT_DESC | EVENT_IDX
    assert rig.transport.status == (Status.ACKNOWLEDGE | Status.DRIVER
                                    | Status.FEATURES_OK | Status.DRIVER_OK)
    assert rig.device.ctx is not None
    assert rig.device.ctx.driver_features == features
    assert [q.ready for q in rig.device.ctx.queues] == [True, True]
    names = [e.fields["names"] for e in rig.kinds("status")]
    assert names[-1] == "ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK"
    [negotiation] = rig.kinds("features")
    assert negotiation.fields["ok"]


def test_features_ok_refused_without_version_1():
    rig = make_rig()
    with pytest.raises(DriverError):
        rig.driver.negotiate(wanted=INDIRECT_DESC)
    assert not rig.transport.status & Status.FEATURES_OK
    assert not rig.kinds("features")[-1].fields["ok"]


def test_features_ok_refused_for_bits_not_offered():
    rig = make_rig()
    rig.driver.write_reg(0x070, Status.ACKNOWLEDGE | Status.DRIVER)
    rig.driver.write_driver_features(VERSION_1 | (1 << 5))
    rig.driver.add_status(Status.FEATURES_OK)
    assert not rig.transport.status & Status.FEATURES_OK


def test_driver_features_frozen_after_features_ok():
    rig = make_rig()
    rig.driver.negotiate(wanted=VERSION_1)
    rig.driver.write_driver_features(VERSION_1 | INDIRECT_DESC)
    assert rig.transport.driver_features == VERSION_1


def test_driver_ok_without_features_ok_does_not_activate():
    rig = make_rig()
    rig.driver.write_reg(0x070, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK)
    assert rig.device.ctx is None
    assert rig.transport.status & Status.DEVICE_NEEDS_RESET


def test_reset_clears_everything():
    rig = make_rig()
    rig.driver.init()
    q = rig.driver.queues[0]
    q.submit([b"x"], [1])
    assert rig.irq.level
    rig.transport.context.needs_reset("test")
    rig.driver.write_reg(0x070, 0)
    t = rig.transport
    assert t.status == 0 and t.interrupt_status == 0 and not rig.irq.level
    assert t.driver_features == 0 and t.context is None and rig.device.resets >= 2
    for index in range(2):
        t.write(0x030, 4, index)
        assert t.read(0x044, 4) == 0
    # and the device can be brought up again from scratch
    rig.driver.init()
    request = rig.driver.queues[0].submit([b"again"], [5])
    assert request.written() == b"again"


def test_queue_num_must_be_power_of_two_up_to_max():
    rig = make_rig(EchoDevice(queue_max_size=64))
    rig.driver.negotiate()
    t = rig.transport
    t.write(0x030, 4, 0)
    for bad in (0, 3, 48, 128):
        t.write(0x038, 4, bad)
    assert t._queues[0].num == 64
    t.write(0x038, 4, 8)
    assert t._queues[0].num == 8
    assert len(rig.kinds("ignored")) == 4


def test_linux_sized_queue_is_used_as_written():
    rig = make_rig(EchoDevice(queue_max_size=256))
    rig.driver.init(queue_size=32)
    assert [q.size for q in rig.transport.queues] == [32, 32]
    request = rig.driver.queues[1].submit([b"abc"], [3])
    assert request.written() == b"abc"


def test_queue_registers_locked_while_ready_and_after_driver_ok():
    rig = make_rig()
    rig.driver.negotiate()
    q = rig.driver.setup_queue(0, 16)
    t = rig.transport
    t.write(0x038, 4, 8)
    t.write(0x080, 4, 0x1234)
    assert t._queues[0].num == 16 and t._queues[0].desc == q.desc
    rig.driver.setup_queue(1, 16)
    rig.driver.driver_ok()
    t.write(0x030, 4, 1)
    t.write(0x090, 4, 0)
    t.write(0x038, 4, 4)
    assert t._queues[1].num == 16 and t._queues[1].driver == rig.driver.queues[1].avail
    assert t.queues[1].avail_addr == rig.driver.queues[1].avail
    reasons = [e.fields["reason"] for e in rig.kinds("ignored")]
    assert any("while the queue is ready" in r for r in reasons)
    assert any("after DRIVER_OK" in r for r in reasons)


def test_queue_ready_can_be_cleared_before_driver_ok():
    rig = make_rig()
    rig.driver.negotiate()
    rig.driver.setup_queue(0, 16)
    rig.transport.write(0x044, 4, 0)
    assert rig.transport.read(0x044, 4) == 0
    rig.transport.write(0x038, 4, 8)
    assert rig.transport._queues[0].num == 8


def test_rings_outside_ram_refuse_ready_and_need_reset():
    rig = make_rig()
    rig.driver.negotiate()
    t = rig.transport
    t.write(0x030, 4, 0)
    t.write(0x038, 4, 16)
    t.write(0x080, 4, 0x1000_1000)  # the transport's own MMIO window
    t.write(0x090, 4, rig.ram.base & 0xFFFF_FFFF)
    t.write(0x0A0, 4, (rig.ram.base + 0x1000) & 0xFFFF_FFFF)
    t.write(0x044, 4, 1)
    assert t.read(0x044, 4) == 0
    assert t.status & Status.DEVICE_NEEDS_RESET
    assert "outside RAM" in rig.kinds("needs_reset")[0].fields["reason"]


def test_misaligned_rings_refused():
    rig = make_rig()
    rig.driver.negotiate()
    t = rig.transport
    t.write(0x030, 4, 0)
    t.write(0x080, 4, (rig.ram.base + 8) & 0xFFFF_FFFF)
    t.write(0x090, 4, (rig.ram.base + 0x2000) & 0xFFFF_FFFF)
    t.write(0x0A0, 4, (rig.ram.base + 0x4000) & 0xFFFF_FFFF)
    t.write(0x044, 4, 1)
    assert t.read(0x044, 4) == 0


def test_notify_before_driver_ok_is_ignored():
    rig = make_rig()
    rig.driver.negotiate()
    q = rig.driver.setup_queue(0)
    rig.driver.setup_queue(1)
    q.submit([b"early"], [5])  # kicks
    assert rig.device.notified == []
    assert any("before DRIVER_OK" in e.fields["reason"] for e in rig.kinds("ignored"))
    rig.driver.driver_ok()
    q.kick()
    assert rig.device.notified == [0]
    assert q.collect()[0].len == 5


@pytest.mark.parametrize("index", [2, 7, 0xFFFF, 0xFFFF_FFFF])
def test_notify_on_nonexistent_queue_is_ignored(index):
    rig = make_rig()
    rig.driver.init()
    rig.transport.write(0x050, 4, index)
    assert rig.device.notified == []
    assert rig.kinds("notify") and rig.kinds("ignored")


def test_notify_on_queue_that_is_not_ready_is_ignored():
    rig = make_rig()
    rig.driver.negotiate()
    rig.driver.setup_queue(0)
    rig.driver.driver_ok()  # queue 1 never enabled
    rig.transport.write(0x050, 4, 1)
    assert rig.device.notified == []
    assert rig.transport.queues[1].pop() is None
    assert "not ready" in rig.kinds("ignored")[-1].fields["reason"]


def test_interrupt_line_is_level_and_follows_ack():
    rig = make_rig(EchoDevice(queue_max_size=16))
    rig.driver.init(wanted=VERSION_1)
    q = rig.driver.queues[0]
    q.submit([b"a"], [1])
    assert rig.irq.level and rig.transport.read(0x060, 4) == 1
    rig.transport.context.config_changed()
    assert rig.transport.read(0x060, 4) == 3
    rig.transport.write(0x064, 4, 1)
    assert rig.irq.level and rig.transport.read(0x060, 4) == 2
    rig.transport.write(0x064, 4, 2)
    assert not rig.irq.level
    assert rig.irq.history == [True, False]


def test_interrupt_status_is_published_on_every_change():
    """InterruptStatus may be answered by the machine's read mirror: the published
    value follows used-buffer and config interrupts, acks and reset."""
    rig = make_rig(EchoDevice(queue_max_size=16))
    t = rig.transport
    mirror = MirrorRecorder()
    assert t.mirrored_registers == (0x060,)
    t.attach_mirror(mirror)
    assert mirror.values == {0x060: 0}

    def published_matches() -> bool:
        return mirror.values == {0x060: t.read(0x060, 4)}

    rig.driver.init(wanted=VERSION_1)
    rig.driver.queues[0].submit([b"a"], [1])
    assert mirror.values[0x060] == 1 and published_matches()
    t.context.config_changed()
    assert mirror.values[0x060] == 3 and published_matches()
    t.write(0x064, 4, 1)
    assert mirror.values[0x060] == 2 and published_matches()
    t.context.needs_reset("broken")
    t.write(0x064, 4, 2)
    assert mirror.values[0x060] == 0 and published_matches()
    t.context.config_changed()
    t.write(0x070, 4, 0)                                  # reset clears it
    assert mirror.values[0x060] == 0 and published_matches()


def test_needs_reset_sets_status_bit_and_config_interrupt():
    rig = make_rig()
    rig.driver.init()
    rig.transport.context.needs_reset("broken")
    assert rig.driver.status & 0x40
    assert rig.transport.read(0x060, 4) == 2 and rig.irq.level
    # a driver writing status back (with the bit) does not clear it
    rig.driver.add_status(Status.FAILED)
    assert rig.driver.status & 0x40
    # the device is stopped: notifies are ignored until reset
    rig.driver.queues[0].submit([b"a"], [1])
    assert rig.device.notified == []


def test_poll_reaches_the_device_before_and_after_activation():
    """Before DRIVER_OK too: a device may have host-side work to drain (its workers'
    READY messages on watched pipes) long before a driver shows up."""
    polled = []

    class Polled(EchoDevice):
        def poll(self):
            polled.append(rig.transport.context is not None)

    rig = make_rig(Polled())
    rig.transport.poll()
    rig.driver.init()
    rig.transport.poll()
    assert polled == [False, True]


def test_bad_queue_max_size_is_a_construction_error():
    with pytest.raises(ValueError):
        make_rig(EchoDevice(queue_max_size=100))


def test_transport_features_constant_matches_spec_bits():
    assert Feature.VERSION_1 == VERSION_1
    assert Feature.INDIRECT_DESC == INDIRECT_DESC
    assert Feature.EVENT_IDX == EVENT_IDX


def test_driver_cannot_clear_status_bits_without_reset():
    rig = make_rig()
    rig.driver.init()
    rig.driver.write_reg(0x070, Status.ACKNOWLEDGE)
    assert rig.transport.status & Status.DRIVER_OK
    rig.driver.queues[0].submit([b"still"], [5])
    assert rig.device.notified == [0]


def test_queue_can_be_stopped_after_driver_ok():
    rig = make_rig()
    rig.driver.init()
    q = rig.driver.queues[0]
    q.submit([b"one"], [3], kick=False)
    chain = rig.transport.queues[0].pop()
    rig.transport.write(0x030, 4, 0)
    rig.transport.write(0x044, 4, 0)
    assert rig.transport.read(0x044, 4) == 0
    rig.transport.write(0x044, 4, 1)  # re-enabling needs a reset
    assert rig.transport.read(0x044, 4) == 0
    q.submit([b"two"], [3])
    assert rig.device.notified == []
    used_ring = rig.ram.read(q.used, 4 + 8 * q.size)
    with pytest.raises(ChainError, match="stopped"):   # a stopped queue is never written
        rig.transport.queues[0].add_used(chain.head, 0)
    assert rig.ram.read(q.used, 4 + 8 * q.size) == used_ring and q.collect() == []


def test_needs_reset_stops_every_queue():
    """After DEVICE_NEEDS_RESET the device takes nothing more from a ring and writes
    nothing to one, whatever it still holds."""
    rig = make_rig()
    rig.driver.init()
    q = rig.driver.queues[0]
    q.submit([b"one"], [3], kick=False)
    chain = rig.transport.queues[0].pop()
    q.submit([b"two"], [3], kick=False)
    rig.transport.context.needs_reset("broken")
    assert [queue.ready for queue in rig.transport.queues] == [False, False]
    assert rig.transport.queues[0].pop() is None
    with pytest.raises(ChainError, match="stopped"):
        rig.transport.queues[0].add_used(chain.head, 3)
    assert q.used_idx() == 0
