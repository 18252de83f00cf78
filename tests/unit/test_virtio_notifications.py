"""Interrupt and kick suppression: VIRTIO_F_EVENT_IDX (used_event, avail_event) and the
NO_INTERRUPT / NO_NOTIFY flags of the split ring (virtio 1.2, sections 2.7.7 and 2.7.10)."""
from __future__ import annotations

from vmsim.devices.virtio.spec import need_event
from vmsim.testing.virtio_driver import EchoDevice, make_rig

VERSION_1 = 1 << 32
EVENT_IDX = 1 << 29


def rig_with(features: int):
    rig = make_rig(EchoDevice(num_queues=1, queue_max_size=16))
    rig.driver.init(wanted=features)
    queue = rig.driver.queues[0]
    queue.interrupts_wanted = False  # the test drives used_event and flags itself
    return rig, queue


def irq_decisions(rig) -> list[bool]:
    return [e.fields["raised"] for e in rig.kinds("irq")]


def test_need_event_wraps_around():
    assert need_event(0, 1, 0)
    assert not need_event(5, 3, 2)
    assert need_event(0xFFFF, 0x0000, 0xFFFF)
    assert need_event(0xFFFE, 0x0001, 0xFFFD)
    assert not need_event(0x0002, 0x0001, 0xFFFD)


def test_event_idx_interrupts_only_when_used_event_is_crossed():
    rig, q = rig_with(VERSION_1 | EVENT_IDX)
    q.set_used_event(2)  # "interrupt me when used entry #2 (the third) is written"
    for n in range(4):
        q.submit([b"x"], [1])
        if n < 2:
            assert not rig.irq.level, n
    assert irq_decisions(rig) == [False, False, True, False]
    assert rig.irq.level
    reasons = [e.fields["reason"] for e in rig.kinds("irq")]
    assert "not reached" in reasons[0] and "crossed" in reasons[2]


def test_event_idx_batched_completions_cross_in_one_signal():
    rig, q = rig_with(VERSION_1 | EVENT_IDX)
    dq = rig.transport.queues[0]
    for _ in range(3):
        q.submit([b"y"], [1], kick=False)
    q.set_used_event(1)
    for _ in range(3):
        chain = dq.pop()
        dq.add_used(chain.head, 0)
    rig.transport.context.signal_used(0)
    assert rig.irq.level
    # nothing new since: a second signal is suppressed
    rig.driver.ack_interrupt()
    rig.transport.context.signal_used(0)
    assert not rig.irq.level
    assert rig.kinds("irq")[-1].fields["reason"] == "no new used entries"


def test_event_idx_ignores_no_interrupt_flag():
    rig, q = rig_with(VERSION_1 | EVENT_IDX)
    q.set_avail_flags(1)
    q.submit([b"z"], [1])  # used_event 0 is crossed by the first entry
    assert rig.irq.level


def test_linux_style_driver_gets_an_interrupt_for_every_completion():
    rig = make_rig(EchoDevice(num_queues=1, queue_max_size=16))
    rig.driver.init()
    q = rig.driver.queues[0]
    for _ in range(5):
        q.submit([b"a"], [1])
        assert rig.driver.ack_interrupt() == 1
        assert len(q.collect()) == 1
    assert irq_decisions(rig) == [True] * 5


def test_avail_event_tracks_consumption():
    rig, q = rig_with(VERSION_1 | EVENT_IDX)
    dq = rig.transport.queues[0]
    for _ in range(3):
        q.submit([b"k"], [1], kick=False)
    assert q.avail_event() == 0
    dq.pop()
    assert q.avail_event() == 1
    dq.pop(), dq.pop()
    assert dq.pop() is None and q.avail_event() == 3


def test_no_interrupt_flag_without_event_idx():
    rig, q = rig_with(VERSION_1)
    q.set_avail_flags(1)
    q.submit([b"a"], [1])
    assert not rig.irq.level
    assert rig.kinds("irq")[-1].fields["reason"] == "NO_INTERRUPT set by driver"
    q.set_avail_flags(0)
    q.submit([b"b"], [1])
    assert rig.irq.level
    assert irq_decisions(rig) == [False, True]


def test_without_event_idx_used_event_is_ignored():
    rig, q = rig_with(VERSION_1)
    q.set_used_event(100)
    q.submit([b"a"], [1])
    assert rig.irq.level
    assert q.avail_event() == 0  # the device does not publish avail_event either


def test_no_notify_flag_without_event_idx():
    rig, q = rig_with(VERSION_1)
    dq = rig.transport.queues[0]
    assert dq.set_notifications(False) is False
    assert q.used_flags() == 1
    q.submit([b"a"], [1], kick=False)
    assert dq.set_notifications(True) is True  # a buffer arrived while kicks were off
    assert q.used_flags() == 0


def test_suppressed_kicks_with_event_idx_freeze_avail_event():
    rig, q = rig_with(VERSION_1 | EVENT_IDX)
    dq = rig.transport.queues[0]
    dq.set_notifications(False)
    for _ in range(2):
        q.submit([b"a"], [1], kick=False)
    dq.pop(), dq.pop()
    assert q.avail_event() == 0
    assert dq.set_notifications(True) is False
    assert q.avail_event() == 2
