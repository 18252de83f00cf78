"""Split virtqueue chains: well-formed ones resolve correctly, and every hostile shape
from the numbered bad-input cases listed in tests/unit/test_crypto_bad_input.py
(4, 16, 18, 20) raises ChainError before a device can act on it."""
from __future__ import annotations

import pytest

from vmsim.devices.virtio.queue import ChainError, SplitQueue
from vmsim.devices.virtio.spec import Desc, Status
from vmsim.testing.virtio_driver import Descriptor, EchoDevice, make_rig

NEXT, WRITE, INDIRECT = Desc.NEXT, Desc.WRITE, Desc.INDIRECT
MMIO_WINDOW = 0x1000_1000


@pytest.fixture
def rig():
    rig = make_rig(EchoDevice(num_queues=1, queue_max_size=16))
    rig.driver.init()
    return rig


def device_queue(rig) -> SplitQueue:
    return rig.transport.queues[0]


def offer_raw(rig, descriptors: dict[int, Descriptor], head: int = 0) -> SplitQueue:
    """Write raw descriptors and make `head` available, without kicking."""
    q = rig.driver.queues[0]
    for index, desc in descriptors.items():
        q.write_desc(index, desc)
    q.make_available(head)
    return device_queue(rig)


def buf(rig, size: int = 16) -> int:
    return rig.driver.heap.alloc(size)


def pop_error(queue: SplitQueue) -> ChainError:
    with pytest.raises(ChainError) as info:
        queue.pop()
    return info.value


# ---- well-formed chains -------------------------------------------------------------

def test_next_chain_resolves_segments_in_order(rig):
    a, b, c = buf(rig), buf(rig), buf(rig)
    rig.ram.write(a, b"0123456789abcdef")
    rig.ram.write(b, b"ghij")
    q = offer_raw(rig, {
        3: Descriptor(a, 16, NEXT, 7),
        7: Descriptor(b, 4, NEXT, 1),
        1: Descriptor(c, 8, WRITE, 0),
    }, head=3)
    chain = q.pop()
    assert chain.head == 3
    assert chain.readable == [(a, 16), (b, 4)] and chain.writable == [(c, 8)]
    assert (chain.readable_len, chain.writable_len) == (20, 8)
    assert chain.read_all() == b"0123456789abcdefghij"
    assert chain.read(14, 4) == b"efgh"
    assert chain.read(20, 0) == b""
    assert q.pop() is None
    assert q.in_flight() == 1
    q.add_used(3, 5)
    assert q.in_flight() == 0
    assert rig.driver.queues[0].collect() == [(3, 5)]


def test_chain_write_scatters_across_segments_and_stays_inside(rig):
    w1, gap, w2 = buf(rig, 3), buf(rig, 16), buf(rig, 5)
    rig.ram.write(gap, b"\xee" * 16)
    q = offer_raw(rig, {0: Descriptor(w1, 3, WRITE | NEXT, 1), 1: Descriptor(w2, 5, WRITE)})
    chain = q.pop()
    chain.write(1, b"ABCDEF")
    assert rig.ram.read(w1, 3) == b"\x00AB"
    assert rig.ram.read(w2, 5) == b"CDEF\x00"
    assert rig.ram.read(gap, 16) == b"\xee" * 16
    with pytest.raises(ChainError):
        chain.write(6, b"xyz")  # 6 + 3 > 8
    with pytest.raises(ChainError):
        chain.read(0, 1)  # nothing readable


def test_chain_access_inside_one_segment_or_across_them(rig):
    """read/write take a one-copy path when the range lies in one segment (any segment
    for reads; the first or the last for writes) and scatter otherwise: same bytes,
    same bounds."""
    r1, r2, r3 = (rig.driver.heap.put(data) for data in (b"head", b"iv", b"payload"))
    w1, w2, w3 = buf(rig, 4), buf(rig, 4), buf(rig, 1)
    q = offer_raw(rig, {0: Descriptor(r1, 4, NEXT, 1), 1: Descriptor(r2, 2, NEXT, 2),
                        2: Descriptor(r3, 7, NEXT, 3), 3: Descriptor(w1, 4, WRITE | NEXT, 4),
                        4: Descriptor(w2, 4, WRITE | NEXT, 5), 5: Descriptor(w3, 1, WRITE)})
    chain = q.pop()
    assert [chain.read(o, n) for o, n in ((0, 4), (4, 2), (6, 7), (7, 3), (13, 0))] == [
        b"head", b"iv", b"payload", b"ayl", b""]
    assert chain.read(2, 5) == b"adivp" and chain.read(0, 13) == b"headivpayload"
    for offset, size in ((-1, 1), (0, -1), (12, 2), (13, 1), (0, 14)):
        with pytest.raises(ChainError):
            chain.read(offset, size)
    chain.write(1, b"AB")          # first segment
    chain.write(8, b"!")           # last segment
    chain.write(4, bytearray(b"CDEF"))  # second: the scattering path
    chain.write(2, memoryview(b"xyz"))  # across the first two
    assert rig.ram.read(w1, 4) + rig.ram.read(w2, 4) + rig.ram.read(w3, 1) == b"\x00Axyz" + b"DEF!"
    chain.write(9, b"")
    for offset, data in ((-1, b"a"), (8, b"ab"), (9, b"a"), (0, bytes(10))):
        with pytest.raises(ChainError):
            chain.write(offset, data)
    assert rig.ram.read(w1, 4) + rig.ram.read(w2, 4) + rig.ram.read(w3, 1) == b"\x00Axyz" + b"DEF!"


def test_indirect_chain_resolves(rig):
    q = rig.driver.queues[0]
    request = q.submit([b"header", b"payload"], [4, 9], indirect=True, kick=False)
    chain = device_queue(rig).pop()
    assert chain.indirect and chain.head == request.head
    assert chain.read_all() == b"headerpayload"
    assert chain.writable_len == 13 and chain.descriptor_count == 5


def test_indirect_after_direct_descriptors(rig):
    q = rig.driver.queues[0]
    hdr = rig.driver.heap.put(b"HDR")
    out = buf(rig, 4)
    table = q.raw_table([Descriptor(out, 4, WRITE)])
    dq = offer_raw(rig, {0: Descriptor(hdr, 3, NEXT, 1), 1: Descriptor(table, 16, INDIRECT)})
    chain = dq.pop()
    assert chain.readable == [(hdr, 3)] and chain.writable == [(out, 4)]
    assert chain.descriptor_count == 3


def test_zero_length_descriptors_are_skipped(rig):
    a = buf(rig)
    q = offer_raw(rig, {0: Descriptor(a, 0, NEXT, 1), 1: Descriptor(a, 4, WRITE)})
    chain = q.pop()
    assert chain.readable == [] and chain.writable == [(a, 4)]


def test_write_flag_on_indirect_descriptor_is_ignored(rig):
    q = rig.driver.queues[0]
    src = rig.driver.heap.put(b"in")
    table = q.raw_table([Descriptor(src, 2)])
    chain = offer_raw(rig, {0: Descriptor(table, 16, INDIRECT | WRITE)}).pop()
    assert chain.readable == [(src, 2)]


def test_chain_copy_is_immune_to_later_guest_writes(rig):
    """TOCTOU (case 11): what was validated is what the device uses."""
    a = buf(rig)
    q = offer_raw(rig, {0: Descriptor(a, 4, WRITE)})
    chain = q.pop()
    rig.driver.queues[0].write_desc(0, Descriptor(MMIO_WINDOW, 4, WRITE))
    chain.write(0, b"okay")
    assert rig.ram.read(a, 4) == b"okay"


# ---- hostile chains (ChainError) -----------------------------------------------------

def test_descriptor_loop(rig):
    a = buf(rig)
    err = pop_error(offer_raw(rig, {0: Descriptor(a, 4, NEXT, 1), 1: Descriptor(a, 4, NEXT, 0)}))
    assert err.head == 0 and "loop" in err.reason


def test_self_loop(rig):
    err = pop_error(offer_raw(rig, {5: Descriptor(buf(rig), 4, NEXT, 5)}, head=5))
    assert "loop" in err.reason


def test_next_out_of_range(rig):
    err = pop_error(offer_raw(rig, {0: Descriptor(buf(rig), 4, NEXT, 16)}))
    assert "next index 16" in err.reason


def test_head_out_of_range(rig):
    err = pop_error(offer_raw(rig, {}, head=16))
    assert "head index" in err.reason


def test_nested_indirect(rig):
    q = rig.driver.queues[0]
    inner = q.raw_table([Descriptor(buf(rig), 4)])
    outer = q.raw_table([Descriptor(inner, 16, INDIRECT)])
    err = pop_error(offer_raw(rig, {0: Descriptor(outer, 16, INDIRECT)}))
    assert "nested" in err.reason


def test_indirect_with_next(rig):
    table = rig.driver.queues[0].raw_table([Descriptor(buf(rig), 4)])
    err = pop_error(offer_raw(rig, {0: Descriptor(table, 16, INDIRECT | NEXT, 1),
                                    1: Descriptor(buf(rig), 4, WRITE)}))
    assert "NEXT" in err.reason


@pytest.mark.parametrize("length", [0, 8, 17, 31])
def test_indirect_length_not_a_nonzero_multiple_of_16(rig, length):
    table = rig.driver.queues[0].raw_table([Descriptor(buf(rig), 4)] * 2)
    err = pop_error(offer_raw(rig, {0: Descriptor(table, length, INDIRECT)}))
    assert "multiple of 16" in err.reason


def test_indirect_table_loop_capped_by_table_length(rig):
    a = buf(rig)
    table = rig.driver.queues[0].raw_table([Descriptor(a, 4, NEXT, 1), Descriptor(a, 4, NEXT, 0)])
    err = pop_error(offer_raw(rig, {0: Descriptor(table, 32, INDIRECT)}))
    assert "loop" in err.reason


def test_indirect_next_beyond_table(rig):
    a = buf(rig)
    table = rig.driver.queues[0].raw_table([Descriptor(a, 4, NEXT, 2), Descriptor(a, 4)])
    err = pop_error(offer_raw(rig, {0: Descriptor(table, 32, INDIRECT)}))
    assert "next index 2 is not below 2" in err.reason


@pytest.mark.parametrize("addr", [MMIO_WINDOW, 0x0, 0x8000_0000 - 8])
def test_indirect_table_outside_ram(rig, addr):
    err = pop_error(offer_raw(rig, {0: Descriptor(addr, 16, INDIRECT)}))
    assert "outside RAM" in err.reason


def test_indirect_without_negotiation():
    rig = make_rig(EchoDevice(num_queues=1, queue_max_size=16))
    rig.driver.init(wanted=1 << 32)
    table = rig.driver.queues[0].raw_table([Descriptor(buf(rig), 4)])
    err = pop_error(offer_raw(rig, {0: Descriptor(table, 16, INDIRECT)}))
    assert "not negotiated" in err.reason


@pytest.mark.parametrize("where", ["mmio", "below", "straddles end", "huge", "wraps"])
def test_buffer_outside_ram(rig, where):
    end = rig.ram.end
    addr, length = {
        "mmio": (MMIO_WINDOW, 0x100),
        "below": (rig.ram.base - 0x1000, 16),
        "straddles end": (end - 8, 16),
        "huge": (rig.ram.base, 0xFFFF_FFFF),
        "wraps": (2**64 - 8, 16),
    }[where]
    err = pop_error(offer_raw(rig, {0: Descriptor(addr, length, WRITE)}))
    assert "outside RAM" in err.reason


def test_readable_after_writable(rig):
    a = buf(rig)
    err = pop_error(offer_raw(rig, {0: Descriptor(a, 4, WRITE | NEXT, 1), 1: Descriptor(a, 4)}))
    assert "readable descriptor after a writable" in err.reason


def test_readable_after_writable_inside_indirect(rig):
    a = buf(rig)
    table = rig.driver.queues[0].raw_table([Descriptor(a, 4, WRITE | NEXT, 1), Descriptor(a, 4)])
    err = pop_error(offer_raw(rig, {0: Descriptor(table, 32, INDIRECT)}))
    assert "after a writable" in err.reason


def test_avail_index_running_ahead_of_queue_size(rig):
    rig.driver.queues[0].set_avail_idx(17)
    err = pop_error(device_queue(rig))
    assert err.head is None and "more than the queue size" in err.reason


def test_avail_index_exactly_queue_size_ahead_is_fine(rig):
    q = rig.driver.queues[0]
    a = buf(rig)
    for i in range(16):
        q.write_desc(i, Descriptor(a, 4, WRITE))
        q.make_available(i)
    dq = device_queue(rig)
    heads = [dq.pop().head for _ in range(16)]
    assert heads == list(range(16)) and dq.pop() is None


def test_more_chains_in_flight_than_queue_size(rig):
    """A guest re-offering heads without waiting for completions (CVE-2016-5403 shape)."""
    q = rig.driver.queues[0]
    q.write_desc(0, Descriptor(buf(rig), 4, WRITE))
    dq = device_queue(rig)
    for _ in range(16):
        q.make_available(0)
        assert dq.pop() is not None
    q.make_available(0)
    err = pop_error(dq)
    assert "in flight" in err.reason


def test_avail_index_wraps_around_16_bits(rig):
    q = rig.driver.queues[0]
    dq = device_queue(rig)
    a = buf(rig)
    q.write_desc(0, Descriptor(a, 4, WRITE))
    dq._last_avail = q.avail_idx = 0xFFFE
    for expected_idx in (0xFFFF, 0x0000, 0x0001):
        q.make_available(0)
        assert dq.pop().head == 0
        dq.add_used(0, 0)
        assert dq.last_avail_idx == expected_idx


def test_broken_chain_is_consumed_not_repeated(rig):
    a = buf(rig)
    q = rig.driver.queues[0]
    offer_raw(rig, {0: Descriptor(a, 4, NEXT, 0)})
    q.write_desc(1, Descriptor(a, 4, WRITE))
    q.make_available(1)
    dq = device_queue(rig)
    pop_error(dq)
    assert dq.pop().head == 1


def test_hostile_chain_end_to_end_sets_needs_reset(rig):
    """Through the transport: the echo device catches ChainError and asks for a reset,
    and nothing is written anywhere."""
    a = buf(rig)
    offer_raw(rig, {0: Descriptor(a, 4, WRITE | NEXT, 0)})
    before = bytes(rig.ram.buffer)
    rig.driver.queues[0].kick()
    assert rig.device.errors and rig.transport.status & Status.DEVICE_NEEDS_RESET
    assert rig.transport.read(0x060, 4) == 2
    after = bytes(rig.ram.buffer)
    # at most avail_event (the device's "kick me at" hint) changed
    dq = device_queue(rig)
    changed = [i for i in range(len(before)) if before[i] != after[i]]
    avail_event = dq.used_addr + 4 + 8 * dq.size - rig.ram.base
    assert changed == [] or set(changed) <= {avail_event, avail_event + 1}


def test_snapshot_reports_both_sides_of_the_ring(rig):
    q = rig.driver.queues[0]
    q.submit([b"a"], [1], kick=False)
    q.submit([b"b"], [1], kick=False)
    dq = device_queue(rig)
    chain = dq.pop()
    dq.add_used(chain.head, 1)
    dq.pop()
    state = dq.snapshot()
    assert state == {"size": 16, "ready": True, "last_avail_idx": 2, "used_idx": 1,
                     "in_flight": 1, "avail_idx": 2, "avail_flags": 0, "used_event": 0}


def test_ring_areas_outside_ram_raise_chain_errors():
    """A queue built around the transport's checks: every ring access is still
    bounds-checked and names the address that is outside RAM."""
    rig = make_rig(EchoDevice(num_queues=1, queue_max_size=16))
    ram = rig.ram
    desc = ram.base
    avail_outside = ram.end - 4  # flags and idx fit, the ring does not
    q = SplitQueue(0, 16, ram, desc, ram.base + 0x400, ram.end + 0x1000, event_idx=True)
    ram.write(q.avail_addr + 2, (1).to_bytes(2, "little"))  # one chain available
    with pytest.raises(ChainError, match=rf"ring at {q._avail_event_addr:#x} is outside RAM"):
        q.pop()  # publishing avail_event fails
    with pytest.raises(ChainError, match=rf"ring at {ram.end + 0x1000 + 4:#x} is outside RAM"):
        q.add_used(0, 1)
    ram.write(avail_outside + 2, (1).to_bytes(2, "little"))
    with pytest.raises(ChainError, match=rf"ring at {ram.end:#x} is outside RAM"):
        SplitQueue(0, 16, ram, desc, avail_outside, ram.base + 0x800).pop()  # the ring slot
    q = SplitQueue(0, 16, ram, desc, ram.end - 0x10, ram.base + 0x800, event_idx=True)
    q._used_idx = 1
    with pytest.raises(ChainError, match=rf"ring at {ram.end - 0x10 + 4 + 32:#x} is outside RAM"):
        q.needs_interrupt()


# ---- where a refused chain ends ---------------------------------------------------------

def test_a_refused_chain_whose_end_is_known_names_its_last_writable_byte(rig):
    status = buf(rig, 4)
    q = offer_raw(rig, {0: Descriptor(MMIO_WINDOW, 16, NEXT, 5), 5: Descriptor(status, 4, WRITE)})
    err = pop_error(q)
    assert err.head == 0 and err.last_writable == status + 3
    assert q.in_flight() == 1                 # the device holds it until it answers
    q.add_used(0, 0)
    assert q.in_flight() == 0


@pytest.mark.parametrize("descriptors", [
    {0: Descriptor(0, 16, NEXT, 1), 1: Descriptor(0, 16, NEXT, 0)},          # a loop
    {0: Descriptor(0, 16, NEXT, 99)},                                         # next out of range
    {0: Descriptor(MMIO_WINDOW, 16, WRITE)},                                  # the end is not RAM
    {0: Descriptor(MMIO_WINDOW, 16, NEXT, 1), 1: Descriptor(0x8000_0000, 8)},  # the end is readable
])
def test_a_refused_chain_whose_end_is_unknown_has_none(rig, descriptors):
    q = offer_raw(rig, descriptors)
    err = pop_error(q)
    assert err.last_writable is None and q.in_flight() == 0


def test_an_indirect_table_is_followed_to_its_first_entry_without_next(rig):
    """Linux's shape: entry i goes on to i + 1 until one without NEXT; the entries after
    that are not part of the chain, whatever they hold."""
    status, data = buf(rig, 1), buf(rig, 32)
    entries = [Descriptor(MMIO_WINDOW, 16, NEXT, 1), Descriptor(data, 32, NEXT | WRITE, 2),
               Descriptor(status, 1, WRITE, 3), Descriptor(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF)]
    table = rig.driver.queues[0].raw_table(entries)
    q = offer_raw(rig, {0: Descriptor(table, 16 * len(entries), INDIRECT)})
    assert pop_error(q).last_writable == status
    # Not Linux's shape (entry 0 goes on to 2): nobody can say where it ends.
    entries[0] = Descriptor(MMIO_WINDOW, 16, NEXT, 2)
    table = rig.driver.queues[0].raw_table(entries)
    q = offer_raw(rig, {1: Descriptor(table, 16 * len(entries), INDIRECT)}, head=1)
    assert pop_error(q).last_writable is None
