"""Guest RAM as one host buffer, shared by the CPU engine and the devices.

The machine maps the same buffer into the CPU engine (zero copy), so a device's DMA is
a plain slice of host memory. Writes are reported to listeners, which is how the machine
drops stale translated code for pages a device has written.
"""
from __future__ import annotations

import ctypes
import mmap
import struct
from typing import Any, Callable, Iterable, Sequence

from vmsim.devices.bus import GuestMemoryError

WriteListener = Callable[[int, int], None]


class Ram:
    """A GuestMemory over an anonymous mmap that starts at guest-physical `base`."""

    def __init__(self, base: int, size: int) -> None:
        if size <= 0 or size % mmap.PAGESIZE:
            raise ValueError(f"RAM size must be a positive multiple of {mmap.PAGESIZE}")
        self.base = base
        self.size = size
        self.end = base + size
        self._map = mmap.mmap(-1, size)
        self.buffer = memoryview(self._map)
        self._write_listeners: list[WriteListener] = []
        self._written_pages: set[int] | None = None    # see track_written_pages
        self._page_shift = 12

    @property
    def host_address(self) -> int:
        """Host address of the buffer, for mapping it into the CPU engine."""
        return ctypes.addressof(ctypes.c_char.from_buffer(self._map))

    def add_write_listener(self, listener: WriteListener) -> None:
        self._write_listeners.append(listener)

    def track_written_pages(self, pages: set[int], page_shift: int) -> None:
        """Add to `pages` the number (address >> page_shift) of every page written from
        now on. What a listener would hear, without a Python call per write: a request
        makes about five (output, status byte, used entry and index, avail_event), and
        each call cost about a microsecond right after the guest had run. The machine
        drops the code translated from those pages before the guest runs again."""
        self._written_pages, self._page_shift = pages, page_shift

    def _note_written(self, addr: int, size: int) -> None:
        pages, shift = self._written_pages, self._page_shift
        if pages is not None and size > 0:
            pages.update(range(addr >> shift, ((addr + size - 1) >> shift) + 1))
        for listener in self._write_listeners:
            listener(addr, size)

    def contains(self, addr: int, size: int) -> bool:
        return size >= 0 and self.base <= addr and addr + size <= self.end

    # The accessors below check bounds inline rather than through contains(): they run
    # several times per virtqueue request, and a call per check is a measurable share.

    def read(self, addr: int, size: int) -> bytes:
        off = addr - self.base
        if size < 0 or off < 0 or off + size > self.size:
            raise GuestMemoryError(addr, size)
        return self._map[off:off + size]      # the mmap's own slice: one copy, no view

    def view(self, addr: int, size: int) -> memoryview:
        """A live, zero-copy window; only for data the device copies right away."""
        off = addr - self.base
        if size < 0 or off < 0 or off + size > self.size:
            raise GuestMemoryError(addr, size)
        return self.buffer[off:off + size]

    def previews(self, ranges: Iterable[tuple[int, int]], cap: int) -> tuple[bytes, ...]:
        """The first `cap` bytes of each (addr, length) range, b"" for one not all in
        RAM: the buffer previews of a trace event, in one call rather than one read each
        (while something observes, each request takes several)."""
        base, size, ram = self.base, self.size, self._map
        return tuple([
            ram[off:end]
            if 0 <= (off := addr - base) <= (end := off + (length if length < cap else cap)) <= size
            else b"" for addr, length in ranges])

    def gather(self, ranges: Sequence[tuple[int, int]]) -> bytes:
        """The bytes of every (addr, length) range, in order, as one bytes: a chain's
        data in one call instead of a read per buffer (a 64 KiB request has ~140)."""
        base, size, buffer = self.base, self.size, self.buffer
        parts = [buffer[off:end]
                 if 0 <= (off := addr - base) <= (end := off + length) <= size else None
                 for addr, length in ranges]
        try:
            return b"".join(parts)          # a None (a range outside RAM) raises here
        except TypeError:
            addr, length = next(r for r, part in zip(ranges, parts) if part is None)
            for part in parts:          # the error's frame must not pin the mapping
                if part is not None:
                    part.release()
            raise GuestMemoryError(addr, length) from None

    def scatter(self, ranges: Sequence[tuple[int, int]],
                data: bytes | bytearray | memoryview) -> None:
        """Write `data` across the (addr, length) ranges in order (their lengths add up
        to len(data)); nothing is written if one is not all RAM, and the listeners hear
        of each run of adjacent ranges once. One call for a 64 KiB output's 16 or more
        buffers."""
        base, size, buffer = self.base, self.size, self.buffer
        for addr, length in ranges:
            if length < 0 or addr < base or addr + length > base + size:
                raise GuestMemoryError(addr, length)
        view = memoryview(data).cast("B")
        done = 0
        runs: list[list[int]] = []
        for addr, length in ranges:
            off = addr - base
            buffer[off:off + length] = view[done:done + length]
            done += length
            if runs and runs[-1][1] == addr:
                runs[-1][1] = addr + length
            elif runs and runs[-1][0] == addr + length:    # Linux's pages often descend
                runs[-1][0] = addr
            else:
                runs.append([addr, addr + length])
        for start, end in runs:
            self._note_written(start, end - start)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        off = addr - self.base
        if off < 0 or off + size > self.size:
            raise GuestMemoryError(addr, size)
        self.buffer[off:off + size] = data
        # _note_written's work inline for the usual write, within one page: it runs
        # several times per request.
        pages = self._written_pages
        if pages is not None and size and not (addr ^ (addr + size - 1)) >> self._page_shift:
            pages.add(addr >> self._page_shift)
            for listener in self._write_listeners:
                listener(addr, size)
        else:
            self._note_written(addr, size)

    def unpack_from(self, layout: struct.Struct, addr: int) -> tuple[Any, ...]:
        """Decode one fixed-layout record in place, without copying it out first."""
        off = addr - self.base
        if off < 0 or off + layout.size > self.size:
            raise GuestMemoryError(addr, layout.size)
        return layout.unpack_from(self.buffer, off)

    def read_u16(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 2), "little")

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u16(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFF).to_bytes(2, "little"))

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFF_FFFF).to_bytes(4, "little"))

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))

    def close(self) -> None:
        self.buffer.release()
        self._map.close()
