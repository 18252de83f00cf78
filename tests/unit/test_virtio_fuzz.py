"""Property test: a guest writing arbitrary bytes into the rings and descriptor tables
cannot make pop() raise anything but ChainError, and a device writing through a chain
never touches guest memory outside that chain's device-writable descriptors."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsim.devices.memory import Ram
from vmsim.devices.virtio import native_table, native_walk
from vmsim.devices.virtio.queue import ChainError, DescriptorChain, SplitQueue
from vmsim.devices.virtio.spec import Desc
from vmsim.testing.virtio_driver import EchoDevice, make_rig

BASE = 0x8000_0000
RAM_SIZE = 0x4000
SIZE = 8
DESC_AT, AVAIL_AT, USED_AT = BASE, BASE + 0x200, BASE + 0x300
TABLES_AT = (BASE + 0x400, BASE + 0x600)  # two indirect tables of up to 16 entries
DATA_AT, DATA_END = BASE + 0x1000, BASE + RAM_SIZE

addresses = st.one_of(
    st.integers(DATA_AT, DATA_END - 96),
    st.integers(DATA_AT - 64, DATA_END + 64),
    st.sampled_from([*TABLES_AT, BASE, 0, 0x1000_1000, 2**64 - 8, DATA_END - 1]),
    st.integers(0, 2**64 - 1),
)
lengths = st.one_of(st.integers(0, 96), st.sampled_from([16, 32, 48, 0xFFFF_FFFF]),
                    st.integers(0, 2**32 - 1))
flags = st.one_of(st.integers(0, 7), st.sampled_from([0, Desc.NEXT, Desc.WRITE]),
                  st.integers(0, 0xFFFF))
nexts = st.one_of(st.integers(0, SIZE - 1), st.integers(0, 17), st.integers(0, 0xFFFF),
                  st.sampled_from([SIZE, 16]))        # just past the ring or a table
heads = st.one_of(st.integers(0, SIZE - 1), st.integers(0, 0xFFFF))
avail_indices = st.one_of(st.integers(0, SIZE + 1), st.integers(0, 0xFFFF))
plausible = st.tuples(st.integers(DATA_AT, DATA_END - 96), st.integers(0, 96),
                      st.sampled_from([0, Desc.NEXT, Desc.WRITE, Desc.WRITE | Desc.NEXT]),
                      st.integers(0, 4))
to_table = st.tuples(st.sampled_from(TABLES_AT), st.sampled_from([16, 32, 48, 64]),
                     st.sampled_from([Desc.INDIRECT, Desc.INDIRECT | Desc.WRITE]), nexts)
to_no_table = st.tuples(st.sampled_from([DATA_END - 16, DATA_END, BASE - 16, 2**64 - 16]),
                        st.sampled_from([16, 32]), st.just(Desc.INDIRECT), nexts)
descriptor = st.one_of(st.tuples(addresses, lengths, flags, nexts), plausible, to_table,
                       to_no_table)
table = st.lists(descriptor, min_size=SIZE, max_size=SIZE)
indirect_table = st.lists(descriptor, min_size=0, max_size=16)


def pack(entries) -> bytes:
    return b"".join(struct.pack("<QIHH", *e) for e in entries)


def writable_descriptors(*tables) -> set[tuple[int, int]]:
    """Every (addr, len) a guest marked device-writable anywhere it could be reached."""
    return {(a, n) for t in tables for a, n, f, _ in t if f & Desc.WRITE and n}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    descs=table,
    tables=st.tuples(indirect_table, indirect_table),
    ring=st.lists(heads, min_size=SIZE, max_size=SIZE),
    avail_idx=avail_indices,
    negotiated=st.tuples(st.booleans(), st.booleans()),
)
def test_pop_raises_only_chain_error_and_writes_stay_in_writable_buffers(
        descs, tables, ring, avail_idx, negotiated):
    ram = Ram(BASE, RAM_SIZE)
    try:
        ram.write(DESC_AT, pack(descs))
        for at, entries in zip(TABLES_AT, tables):
            ram.write(at, pack(entries))
        ram.write(AVAIL_AT, struct.pack(f"<HH{SIZE}H", 0, avail_idx, *ring))
        indirect, event_idx = negotiated
        queue = SplitQueue(0, SIZE, ram, DESC_AT, AVAIL_AT, USED_AT,
                           indirect=indirect, event_idx=event_idx)
        allowed = writable_descriptors(descs, *tables)
        for _ in range(2 * SIZE):
            try:
                chain = queue.pop()
            except ChainError as err:
                if err.head is None:
                    break  # the ring itself is broken: pop() will keep saying so
                continue
            if chain is None:
                break
            assert set(chain.writable) <= allowed
            assert all(ram.contains(a, n) for a, n in chain.readable + chain.writable)
            chain.read_all()
            before = bytes(ram.buffer)
            chain.write(0, b"\xa5" * chain.writable_len)
            after = bytes(ram.buffer)
            inside = set()
            for addr, length in chain.writable:
                inside.update(range(addr - BASE, addr - BASE + length))
            changed = {i for i in range(RAM_SIZE) if before[i] != after[i]}
            assert changed <= inside
            queue.add_used(chain.head, chain.writable_len)
    finally:
        ram.close()


register_offsets = st.one_of(st.sampled_from([
    0x010, 0x014, 0x020, 0x024, 0x030, 0x034, 0x038, 0x044, 0x050, 0x060, 0x064, 0x070,
    0x080, 0x084, 0x090, 0x094, 0x0A0, 0x0A4, 0x0AC, 0x0FC, 0x100, 0x104]),
    st.integers(0, 0xFFF))
accesses = st.lists(st.tuples(st.booleans(), register_offsets, st.sampled_from([1, 2, 4, 8]),
                              st.integers(0, 2**64 - 1)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(script=accesses, kick_with_rings=st.booleans())
def test_arbitrary_register_traffic_never_raises(script, kick_with_rings):
    """Bad guest input never raises out of the transport, whatever the access order."""
    rig = make_rig(EchoDevice(num_queues=2, queue_max_size=16), ram_size=0x10000)
    try:
        if kick_with_rings:
            rig.driver.init()
            rig.driver.queues[0].submit([b"seed"], [4], kick=False)
        for is_write, offset, size, value in script:
            if is_write:
                rig.transport.write(offset, size, value & ((1 << (8 * size)) - 1))
            else:
                assert 0 <= rig.transport.read(offset, size) < 1 << (8 * size)
        assert rig.irq.level == (rig.transport.interrupt_status != 0)
    finally:
        rig.ram.close()


# ---- long indirect tables: the bulk path agrees with the descriptor loop ---------------

LONG_TABLE_AT = BASE + 0x800  # up to 80 entries (0x500 bytes), ends below DATA_AT
long_entry_mutations = st.lists(
    st.tuples(st.integers(0, 79), st.sampled_from(["addr", "len", "flags", "next"]),
              st.one_of(st.integers(0, 3), st.integers(0, 0xFFFF), addresses, lengths)),
    max_size=3)


def linux_table(readable: int, writable: int, seed: int) -> list[tuple[int, int, int, int]]:
    """What Linux writes for a request: entries in order, readable ones first."""
    n = readable + writable
    entries = []
    for i in range(n):
        addr = DATA_AT + (i * 37 + seed) % (DATA_END - DATA_AT - 96)
        flags = (Desc.WRITE if i >= readable else 0) | (Desc.NEXT if i < n - 1 else 0)
        entries.append((addr, 1 + (i + seed) % 96, flags, i + 1 if i < n - 1 else 0))
    return entries


def one_table(entries) -> list[tuple[int, int, int, int]]:
    """A descriptor table whose descriptor 0 names `entries` as an indirect table at
    LONG_TABLE_AT (written there by the caller)."""
    return [(LONG_TABLE_AT, 16 * len(entries), Desc.INDIRECT, 0)] + [(0, 0, 0, 0)] * (SIZE - 1)


def native_linear_table():
    """The C table check; its library is part of every setup (`make unicorn`)."""
    function = native_table.load()
    assert function is not None, "vmsim's native helper library is not built: run `make unicorn`"
    return function


C_WALK = native_walk.for_queue    # as imported: the tests below replace it at times


def walk_outcome(ram: Ram, head_descs, mode: str, monkeypatch) -> tuple:
    """Pop the chain with the whole walk in C ("walk"), or in Python with long tables
    checked in C ("native"), by _linear_table ("python") or by the descriptor loop
    ("loop")."""
    import vmsim.devices.virtio.queue as queue_module

    monkeypatch.setattr(native_walk, "for_queue", C_WALK if mode == "walk" else lambda *_: None)
    monkeypatch.setattr(queue_module, "_BULK_MIN", 1 << 30 if mode == "loop" else 32)
    monkeypatch.setattr(queue_module, "_native_linear_table",
                        native_linear_table() if mode == "native" else False)
    ram.write(DESC_AT, pack(head_descs))
    ram.write(AVAIL_AT, struct.pack("<HHH", 0, 1, 0))
    queue = SplitQueue(0, SIZE, ram, DESC_AT, AVAIL_AT, USED_AT, indirect=True)
    try:
        chain = queue.pop()
    except ChainError as err:
        return ("error", err.head, err.reason)
    return ("chain", chain.head, chain.readable, chain.writable, chain.readable_len,
            chain.writable_len, chain.descriptor_count, chain.indirect)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(n=st.integers(32, 80), split=st.integers(0, 80), seed=st.integers(0, 999),
       mutations=long_entry_mutations,
       before=st.sampled_from([(), (0,), (Desc.WRITE,)]), ram_size=st.sampled_from([RAM_SIZE, 0x2000]))
def test_long_indirect_tables_resolve_as_the_descriptor_loop_does(
        n, split, seed, mutations, before, ram_size, monkeypatch):
    """Differential: the walk in C, the bulk path in C and in Python and the descriptor
    loop give the same chain or the same error."""
    entries = linux_table(min(split, n), n - min(split, n), seed)
    for index, field, value in mutations:
        if index < len(entries):
            entry = list(entries[index])
            slot = ("addr", "len", "flags", "next").index(field)
            entry[slot] = value & ((1 << 64) - 1, (1 << 32) - 1, 0xFFFF, 0xFFFF)[slot]
            entries[index] = tuple(entry)
    to_table = (LONG_TABLE_AT, 16 * len(entries), Desc.INDIRECT, 0)
    head_descs = [(DATA_AT + 8 * i, 8, flags | Desc.NEXT, i + 1) for i, flags in enumerate(before)]
    head_descs.append(to_table)
    head_descs += [(0, 0, 0, 0)] * (SIZE - len(head_descs))
    outcomes = []
    for mode in ("walk", "native", "python", "loop"):
        ram = Ram(BASE, ram_size)  # 0x2000: many buffers are (partly) outside RAM
        try:
            ram.write(LONG_TABLE_AT, pack(entries))
            outcomes.append(walk_outcome(ram, head_descs, mode, monkeypatch))
        finally:
            ram.close()
    assert outcomes[0] == outcomes[1] == outcomes[2] == outcomes[3]


entry_index = st.one_of(st.integers(0, 79), st.just(-1))   # -1: the last entry
table_mutations = st.lists(st.one_of(
    st.tuples(st.just("flags"), entry_index,
              st.sampled_from([0, Desc.NEXT, Desc.WRITE, Desc.NEXT | Desc.WRITE, Desc.INDIRECT,
                               0x100 | Desc.NEXT, 0x8000 | Desc.WRITE])),
    st.tuples(st.just("next"), entry_index, st.sampled_from([0, -1, 1, 0xFFFF])),
    st.tuples(st.just("addr"), entry_index,
              st.sampled_from([0, DATA_AT - 1, DATA_END, 2**64 - 4096, 2**64 - 1])),
    st.tuples(st.just("len"), entry_index, st.sampled_from([0, 1, 4096, 2**32 - 1]))),
    max_size=4)


@settings(max_examples=1000, deadline=None)
@given(readable=st.integers(0, 40), writable=st.integers(0, 40), seed=st.integers(0, 999),
       mutations=table_mutations, after_writable=st.booleans(),
       ram=st.sampled_from([(0, 2**64), (DATA_AT, DATA_END - DATA_AT), (DATA_AT, 64)]))
def test_the_c_table_check_answers_as_the_python_one(readable, writable, seed, mutations,
                                                     after_writable, ram):
    """vmsim/native/linear_table.c against _linear_table: Linux-shaped tables with a few
    fields changed (flags, next fields relative to their place, empty or huge buffers,
    spans reaching 2^64), whatever RAM is."""
    entries = ([list(entry) for entry in linux_table(readable, writable, seed)]
               or [[DATA_AT, 1, 0, 0]])
    for field, index, value in mutations:
        if index < len(entries):
            slot = ("addr", "len", "flags", "next").index(field)
            place = index % len(entries)
            entries[index][slot] = (place + 1 + value) & 0xFFFF if field == "next" else value
    table = pack(entries)
    start, size = ram

    def in_ram(addr: int, length: int) -> bool:
        return start <= addr and addr + length <= start + size

    from vmsim.devices.virtio.queue import _linear_table
    native = native_linear_table()(table, in_ram, after_writable)
    if native is not None:
        native = (list(native[0]), list(native[1]), *native[2:])
    assert native == _linear_table(table, in_ram, after_writable)


def test_a_long_linux_table_is_checked_in_c(monkeypatch):
    """The walk takes the C check whenever the library is built (every setup): with the
    Python check made to fail, an 80-entry Linux table still resolves, to the same
    chain the descriptor loop gives."""
    import vmsim.devices.virtio.queue as queue_module

    native_linear_table()
    entries = linux_table(40, 40, 7)
    head_descs = one_table(entries)
    ram = Ram(BASE, RAM_SIZE)
    try:
        ram.write(LONG_TABLE_AT, pack(entries))
        expected = walk_outcome(ram, head_descs, "loop", monkeypatch)
        monkeypatch.setattr(queue_module, "_native_linear_table", None)   # as at start-up
        monkeypatch.setattr(queue_module, "_BULK_MIN", 32)
        monkeypatch.setattr(queue_module, "_linear_table", lambda *_: pytest.fail("Python check"))
        queue = SplitQueue(0, SIZE, ram, DESC_AT, AVAIL_AT, USED_AT, indirect=True)
        chain = queue.pop()
    finally:
        ram.close()
    assert expected[0] == "chain" and expected[2][0] == (entries[0][0], entries[0][1])
    assert ("chain", chain.head, chain.readable, chain.writable, chain.readable_len,
            chain.writable_len, chain.descriptor_count, chain.indirect) == expected


def chain_fields(chain) -> tuple:
    return (chain.head, chain.readable, chain.writable, chain.readable_count,
            chain.readable_len, chain.writable_len, chain.descriptor_count, chain.indirect)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(descs=table, tables=st.tuples(indirect_table, indirect_table),
       head=st.integers(0, SIZE - 1), indirect=st.booleans(), cap=st.sampled_from([2, 4096]))
def test_the_c_walk_gives_the_python_walks_chain_or_declines_its_errors(
        descs, tables, head, indirect, cap):
    """vmsim/native/chain_walk.c against SplitQueue._walk on arbitrary tables: where the
    C walk answers, it is the chain the Python walk gives; where it declines, the Python
    walk raises ChainError, or the chain has more segments than the C walk's arrays."""
    ram = Ram(BASE, RAM_SIZE)
    try:
        ram.write(DESC_AT, pack(descs))
        for at, entries in zip(TABLES_AT, tables):
            ram.write(at, pack(entries))
        queue = SplitQueue(0, SIZE, ram, DESC_AT, AVAIL_AT, USED_AT, indirect=indirect)
        walk = C_WALK(ram, DESC_AT, SIZE, indirect, cap)
        assert walk is not None, "vmsim's native helper library is not built: run `make unicorn`"
        walked = walk(head)
        try:
            expected = chain_fields(queue._walk(head))
        except ChainError:
            expected = None
        if walked is None:
            assert expected is None or len(expected[1]) + len(expected[2]) > cap
        else:
            assert chain_fields(DescriptorChain(ram, head, *walked)) == expected
    finally:
        ram.close()


def test_a_linux_request_is_walked_in_c(monkeypatch):
    """pop() takes the C walk whenever the library is built (every setup): with the
    Python walk made to fail, a Linux-shaped request (one indirect table: header, IV
    and data readable, output and status writable) still pops, to the chain the Python
    walk gives."""
    entries = linux_table(3, 2, 5)
    head_descs = one_table(entries)
    ram = Ram(BASE, RAM_SIZE)
    try:
        ram.write(LONG_TABLE_AT, pack(entries))
        expected = walk_outcome(ram, head_descs, "loop", monkeypatch)
        monkeypatch.setattr(SplitQueue, "_walk", lambda *_: pytest.fail("Python walk"))
        actual = walk_outcome(ram, head_descs, "walk", monkeypatch)
    finally:
        ram.close()
    assert expected[0] == "chain" and len(expected[2]) == 3 and len(expected[3]) == 2
    assert actual == expected


def test_the_c_walk_declines_a_chain_of_more_than_4_gib():
    """used.len is 32 bits: three buffers of 2 GiB in (lazily mapped) RAM are one chain
    too many for it, in C as in Python."""
    big = 2 << 30
    ram = Ram(BASE, 2 * big)
    try:
        ram.write(DESC_AT, pack([(BASE + 0x1000, big - 0x1000, Desc.NEXT, 1),
                                 (BASE + big, big, Desc.NEXT | Desc.WRITE, 2),
                                 (BASE + big, big, Desc.WRITE, 0)] + [(0, 0, 0, 0)] * (SIZE - 3)))
        queue = SplitQueue(0, SIZE, ram, DESC_AT, AVAIL_AT, USED_AT)
        with pytest.raises(ChainError, match="more than 4 GiB"):
            queue._walk(0)
        assert C_WALK(ram, DESC_AT, SIZE, False)(0) is None
        ram.write(DESC_AT + 16, pack([(BASE + big, big - 0x1000, Desc.WRITE, 0)]))
        assert C_WALK(ram, DESC_AT, SIZE, False)(0)[6] == big - 0x1000
    finally:
        ram.close()
