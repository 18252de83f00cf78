"""Guest RAM: every accessor, including the in-place fast paths the virtqueues use,
refuses a range that is not entirely RAM, and writes are reported to listeners."""
from __future__ import annotations

import struct

import pytest

from vmsim.devices.bus import GuestMemoryError
from vmsim.devices.memory import Ram

BASE, SIZE = 0x8000_0000, 0x2000
U16, DESC = struct.Struct("<H"), struct.Struct("<QIHH")

# (addr, size) pairs that leave RAM: below, straddling either end, past the end, negative.
OUTSIDE = [
    (BASE - 1, 1), (BASE - 2, 4), (BASE + SIZE - 1, 2), (BASE + SIZE, 1),
    (0, 2), (BASE - SIZE, SIZE), (BASE, SIZE + 1), ((1 << 64) - 1, 2),
]


@pytest.fixture
def ram():
    ram = Ram(BASE, SIZE)
    yield ram
    ram.close()


def test_contains(ram):
    assert ram.contains(BASE, SIZE) and ram.contains(BASE + SIZE - 1, 1)
    assert ram.contains(BASE + SIZE, 0)
    assert not ram.contains(BASE, -1)
    for addr, size in OUTSIDE:
        assert not ram.contains(addr, size), (hex(addr), size)


def test_unpack_from_decodes_in_place(ram):
    ram.write(BASE + 0x10, DESC.pack(0x8000_1000, 4096, 3, 7))
    assert ram.unpack_from(DESC, BASE + 0x10) == (0x8000_1000, 4096, 3, 7)
    ram.write(BASE + SIZE - 2, b"\x34\x12")
    assert ram.unpack_from(U16, BASE + SIZE - 2) == (0x1234,)


@pytest.mark.parametrize("addr, size", OUTSIDE)
def test_unpack_from_refuses_ranges_outside_ram(ram, addr, size):
    layout = struct.Struct(f"<{size}s")
    with pytest.raises(GuestMemoryError):
        ram.unpack_from(layout, addr)


@pytest.mark.parametrize("addr, size", OUTSIDE)
def test_read_write_view_refuse_ranges_outside_ram(ram, addr, size):
    before = bytes(ram.buffer)
    with pytest.raises(GuestMemoryError):
        ram.read(addr, size)
    with pytest.raises(GuestMemoryError):
        ram.view(addr, size)
    with pytest.raises(GuestMemoryError):
        ram.write(addr, bytes(size))
    assert bytes(ram.buffer) == before


def test_negative_sizes_are_refused(ram):
    with pytest.raises(GuestMemoryError):
        ram.read(BASE + 8, -1)
    with pytest.raises(GuestMemoryError):
        ram.view(BASE + 8, -1)


def test_writes_are_reported_and_reads_copy(ram):
    heard = []
    ram.add_write_listener(lambda addr, size: heard.append((addr, size)))
    ram.write(BASE + 4, b"abc")
    assert heard == [(BASE + 4, 3)]
    copy = ram.read(BASE + 4, 3)
    ram.write(BASE + 4, b"xyz")
    assert copy == b"abc" and ram.read(BASE + 4, 3) == b"xyz"
    with pytest.raises(GuestMemoryError):
        ram.write(BASE + SIZE - 1, b"no")
    assert heard == [(BASE + 4, 3), (BASE + 4, 3)]  # a refused write is not reported


def test_gather_and_scatter_move_a_chains_buffers_in_one_call(ram):
    """A 64 KiB request's data lies in ~140 buffers: one gather reads them in order, one
    scatter writes them, and the listeners hear of each run of adjacent ranges once."""
    heard = []
    ram.add_write_listener(lambda addr, size: heard.append((addr, size)))
    ranges = [(BASE + 0x100, 3), (BASE + 0x103, 2), (BASE + 0x1000, 4), (BASE, 1)]
    ram.scatter(ranges, b"abcdefghij")
    assert ram.read(BASE + 0x100, 5) == b"abcde" and ram.read(BASE + 0x1000, 4) == b"fghi"
    assert ram.read(BASE, 1) == b"j"
    assert heard == [(BASE + 0x100, 5), (BASE + 0x1000, 4), (BASE, 1)]
    assert ram.gather(ranges) == b"abcdefghij" and ram.gather([]) == b""
    heard.clear()
    descending = [(BASE + 0x1800, 0x800), (BASE + 0x1000, 0x800), (BASE + 0x800, 0x800)]
    ram.scatter(descending, bytes(range(256)) * 24)
    assert heard == [(BASE + 0x800, 0x1800)]         # one run, its pages in either order
    assert ram.gather(descending) == bytes(range(256)) * 24


@pytest.mark.parametrize("addr, size", OUTSIDE)
def test_gather_and_scatter_refuse_ranges_outside_ram(ram, addr, size):
    """One bad range fails the whole call, and a scatter then writes nothing at all."""
    before = bytes(ram.buffer)
    with pytest.raises(GuestMemoryError) as refused:
        ram.gather([(BASE, 4), (addr, size)])
    assert (refused.value.addr, refused.value.size) == (addr, size)
    with pytest.raises(GuestMemoryError):
        ram.scatter([(BASE, 4), (addr, size)], bytes(4 + max(size, 0)))
    assert bytes(ram.buffer) == before


def test_previews_take_the_start_of_each_range(ram):
    ram.write(BASE, bytes(range(64)))
    assert ram.previews([(BASE, 40), (BASE + 8, 3), (BASE - 1, 4), (BASE + SIZE - 2, 4)],
                        16) == (bytes(range(16)), bytes([8, 9, 10]), b"", b"")


def test_written_pages_are_tracked_as_a_listener_would_hear_them():
    """track_written_pages: every page a write, a scatter or a sized write touches is in
    the set, and the listeners still hear each write."""
    ram = Ram(BASE, 0x10000)
    pages: set[int] = set()
    heard = []
    ram.track_written_pages(pages, 12)
    ram.add_write_listener(lambda addr, size: heard.append((addr, size)))
    ram.write(BASE + 4, b"abc")                          # inside page 0
    ram.write(BASE + 0x1FFF, b"xy")                      # pages 1 and 2
    ram.write(BASE + 0x3000, b"")                        # nothing written
    ram.write_u32(BASE + 0x4FFC, 7)
    ram.scatter([(BASE + 0x6FFF, 2), (BASE + 0x9000, 1)], b"abc")
    first = BASE >> 12
    assert pages == {first, first + 1, first + 2, first + 4, first + 6, first + 7, first + 9}
    assert heard == [(BASE + 4, 3), (BASE + 0x1FFF, 2), (BASE + 0x3000, 0), (BASE + 0x4FFC, 4),
                     (BASE + 0x6FFF, 2), (BASE + 0x9000, 1)]
    with pytest.raises(GuestMemoryError):
        ram.write(BASE + 0xFFFF, b"no")
    assert first + 15 not in pages                        # a refused write marks nothing
    ram.close()
