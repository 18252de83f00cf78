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
