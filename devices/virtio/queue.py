"""Split virtqueues, seen from the device side.

Every index, length and address in a ring is written by the guest, so the chain walker
checks all of them before a device sees a chain: next indices stay inside their table,
chains cannot loop, indirect tables are well formed and every buffer lies in guest RAM.
The result is a `DescriptorChain` holding a private copy of the (addr, len) segments, so
later guest writes to the descriptor table cannot change what was validated.
"""
from __future__ import annotations

import functools
import re
import struct
import sys
import time
from array import array
from typing import Callable, Sequence

from vmsim.devices.bus import GuestMemory, GuestMemoryError
from vmsim.devices.events import TraceSink, discard, event_log
from vmsim.devices.virtio import native_capture, native_table, native_walk
from vmsim.devices.virtio.spec import (
    AVAIL_F_NO_INTERRUPT,
    USED_F_NO_NOTIFY,
    Desc,
    need_event,
)

_DESC = struct.Struct("<QIHH")
_USED_ELEM = struct.Struct("<II")
_U16 = struct.Struct("<H")
# The fields of the pop and fill events, in the order their values are sent
# (vmsim.devices.events.Fields).
_POP = ("head", "descriptors", "readable", "writable", "indirect", "avail_idx",
        "last_avail_idx", "in_flight", "used_event", "chain")
_FILL = ("head", "len", "used_idx", "in_flight")
_monotonic = time.monotonic       # per traced event: one global lookup
_MAX_TOTAL_LEN = 0xFFFF_FFFF  # used.len is 32 bits; no chain may carry more than that
# Plain module constants: the walker tests them for every descriptor.
_NEXT, _WRITE, _INDIRECT, _DESC_SIZE = Desc.NEXT, Desc.WRITE, Desc.INDIRECT, Desc.SIZE
# Indirect tables at least this long are first tried in bulk (_linear_table); below it
# the per-descriptor loop is as fast.
_BULK_MIN = 32
_LITTLE_ENDIAN = sys.byteorder == "little"  # _linear_table reads the table natively
_NEXT_BYTE = bytes([_NEXT])


_Segments = list[tuple[int, int]]
_native_linear_table: native_table.LinearTable | None | bool = None   # loaded on first use


@functools.lru_cache(maxsize=64)
def _in_order(n: int) -> bytes:
    """The next fields 1..n-1 of an n-entry table chained in order, as its bytes hold them
    (little-endian u16): one comparison instead of a list of n ints."""
    return array("H", range(1, n)).tobytes()


def _linear_table(table: bytes, in_ram: Callable[[int, int], bool], after_writable: bool,
                  ) -> tuple[list[int], list[int], int, int, int] | None:
    """Resolve a whole indirect table at C speed when it has the shape Linux builds.

    That shape: entries 0..n-1 chained in order, each flagged NEXT (readable) or
    NEXT|WRITE and the last 0 or WRITE (in the flags' low byte), readable entries
    first (none at all after earlier writable ones), no empty buffer, and every buffer
    inside one span that is all RAM. The descriptor loop would walk such a table
    without error and produce exactly these segments: returned as their addresses and
    lengths, how many are readable (they come first), and the readable and writable
    totals. Any other
    table gives None: the caller then walks it descriptor by descriptor, so whatever is
    wrong with it is found and reported exactly as before. For a long chain (Linux's
    64 KiB requests carry ~270 descriptors) this is about twice as fast as the loop,
    and no (addr, len) pair is built for the ~250 entries a request never touches.
    """
    if not _LITTLE_ENDIAN:
        return None
    view = memoryview(table)
    halves = view.cast("H")
    # The flags' low bytes, checked with byte operations rather than as a list of ints.
    # (NEXT, WRITE and INDIRECT are all there; the walk gives the high bits no meaning.)
    flags = halves[6::8].tobytes()[0::2]
    n = len(flags)
    if halves[7::8][:-1].tobytes() != _in_order(n):
        return None
    last = flags[-1]
    if last not in (0, _WRITE):
        return None
    readable = n - len(flags.lstrip(_NEXT_BYTE))     # NEXT alone, from the start
    if flags.count(_NEXT | _WRITE, readable, n - 1) != n - 1 - readable:
        return None
    if last == 0:  # the last entry is readable too: then there must be no writable one
        if readable != n - 1:
            return None
        readable = n
    if readable and after_writable:
        return None
    lengths = view.cast("I")[2::4].tolist()
    addrs = view.cast("Q")[0::2].tolist()
    # A bound of the span (the last buffer's start plus the longest length) rather than
    # each buffer's end. sorted() rather than min() and max(): it compares a list of
    # ints at C speed, they call the generic comparison for each (4 us against 16 for
    # Linux's 276 entries). A table whose bound leaves RAM while its buffers do not is
    # only walked the slow way.
    by_length = sorted(lengths)
    if not by_length[0]:
        return None
    by_addr = sorted(addrs)
    low, high = by_addr[0], by_addr[-1] + by_length[-1]
    if not in_ram(low, high - low):
        return None
    readable_len = sum(lengths[:readable])
    return addrs, lengths, readable, readable_len, sum(lengths) - readable_len


def _resolve_table(table: bytes, in_ram: Callable[[int, int], bool], after_writable: bool,
                   ) -> tuple[Sequence[int], Sequence[int], int, int, int] | None:
    """_linear_table's answer, from its C form when vmsim's native library is built."""
    global _native_linear_table
    if _native_linear_table is None:
        _native_linear_table = native_table.load() or False
    if _native_linear_table:
        return _native_linear_table(table, in_ram, after_writable)
    return _linear_table(table, in_ram, after_writable)


PREVIEW_BYTES = 32  # bytes of each buffer a trace event carries (hex), before and after
MAX_LISTED = 16     # entries of an indirect table a trace event lists one by one


def describe_chain(mem: GuestMemory, desc_addr: int, size: int, head: int,
                   preview: int = PREVIEW_BYTES) -> list[dict[str, object]]:
    """Every descriptor of chain `head` as plain values, for snapshots (QEMU's
    x-query-virtio-queue-element) and trace viewers: index, addr, len, flags, whether
    it sits in an indirect table, and the first `preview` bytes of its buffer as hex
    (a long indirect table: its first MAX_LISTED entries, {"indirect": True, "more": n},
    its last). The pop event carries chain_entries() instead; this is its readable form."""
    return chain_dicts(chain_entries(mem, desc_addr, size, head, preview))


ChainEntry = tuple   # (index, addr, len, flags, in_table, preview bytes | None) or (None, more)


def chain_entries(mem: GuestMemory, desc_addr: int, size: int, head: int,
                  preview: int = PREVIEW_BYTES) -> tuple[ChainEntry, ...]:
    """describe_chain() as raw tuples: it keeps bytes and leaves dicts and hex to the
    observer (chain_dicts). The indirect descriptor itself has no preview (None). It is
    bounded the same way as the walker and never raises."""
    out: list[ChainEntry] = []
    read, unpack = mem.read, mem.unpack_from

    def preview_of(_index: int, addr: int, length: int) -> bytes:
        try:
            return read(addr, length if length < preview else preview) if preview else b""
        except GuestMemoryError:
            return b""

    index = head
    for _ in range(size):
        try:
            addr, length, flags, nxt = unpack(_DESC, desc_addr + _DESC_SIZE * index)
        except GuestMemoryError:
            break
        if flags & _INDIRECT:
            out.append((index, addr, length, flags, False, None))
            try:
                table = read(addr, min(length, _DESC_SIZE * 0x10000))
            except GuestMemoryError:
                break
            _list_table(table, preview_of, out)
            break
        out.append((index, addr, length, flags, False, preview_of(index, addr, length)))
        if not flags & _NEXT or nxt >= size:
            break
        index = nxt
    return tuple(out)


def _list_table(table: bytes, preview_of: Callable[[int, int, int], bytes | None],
                out: list[ChainEntry]) -> None:
    """The entries of an indirect table in chain order, each with preview_of(index,
    addr, len); a long table (Linux's 64 KiB requests carry ~270 entries): its first
    MAX_LISTED entries and its last, with a count of the rest."""
    table_len = len(table) // _DESC_SIZE
    index = 0
    for _ in range(table_len + 1):
        if not table_len:
            break
        addr, length, flags, nxt = _DESC.unpack_from(table, _DESC_SIZE * index)
        if index >= MAX_LISTED and flags & _NEXT and nxt < table_len:
            out.append((None, table_len - 1 - index))
            index = table_len - 1
            continue
        out.append((index, addr, length, flags, True, preview_of(index, addr, length)))
        if not flags & _NEXT or nxt >= table_len:
            break
        index = nxt


_TABLE = "table"      # chain_capture's tag for a chain it left for the observer to list


@functools.lru_cache(maxsize=MAX_LISTED + 1)
def _table_layout(count: int) -> struct.Struct:
    """`count` descriptors in a row: a whole short table decoded in one call."""
    return struct.Struct("<" + "QIHH" * count)


def chain_capture(mem: GuestMemory, desc_addr: int, size: int, head: int) -> tuple:
    """The pop event's chain, taken as cheaply as the CPU thread can: chain_entries
    lists it observer-side (chain_dicts) from what this copies.

    Linux puts each request in one short indirect table (a 16-byte request: five
    entries) named by the head descriptor. For that shape this copies the table and the
    start of every buffer it names, in three calls, and returns (_TABLE, head, the
    head descriptor, table, previews by table index): the whole chain is in there, so
    the observer lists it exactly as chain_entries would have. Anything else (a direct
    chain, a table longer than MAX_LISTED + 1 entries) is listed by chain_entries."""
    try:
        addr, length, flags, _ = mem.unpack_from(_DESC, desc_addr + _DESC_SIZE * head)
        if (flags & (_INDIRECT | _NEXT) == _INDIRECT and length and not length % _DESC_SIZE
                and length <= _DESC_SIZE * (MAX_LISTED + 1)):
            table = mem.read(addr, length)
            fields = _table_layout(length // _DESC_SIZE).unpack(table)
            return (_TABLE, head, addr, length, flags, table,
                    mem.previews(zip(fields[0::4], fields[1::4]), PREVIEW_BYTES))
    except GuestMemoryError:
        pass
    return chain_entries(mem, desc_addr, size, head)


def _table_entries(capture: tuple) -> list[ChainEntry]:
    """chain_capture's short form as chain_entries lists the same chain."""
    _, head, addr, length, flags, table, previews = capture
    out: list[ChainEntry] = [(head, addr, length, flags, False, None)]
    _list_table(table, lambda index, _addr, _len: previews[index], out)
    return out


def _no_copy(_head: int) -> None:
    """packed_chain where the C copy does not apply."""


def packed_writable_previews(packed: tuple) -> tuple[bytes, ...]:
    """The start of each writable buffer of a packed copy (packed_chain), in chain
    order: what `written` previews are for a chain copied after the device wrote it."""
    entries = _table_entries((_TABLE, *native_capture.unpack(packed)))
    return tuple(entry[5] for entry in entries[1:] if entry[0] is not None and entry[3] & _WRITE)


def chain_dicts(entries: tuple[ChainEntry, ...] | list) -> list[dict[str, object]]:
    """chain_entries() (or chain_capture()) as describe_chain() lists them (previews in
    hex). Entries that are dicts already (a chain read back from a trace file) are kept
    as they are."""
    if entries and entries[0] == _TABLE:
        entries = _table_entries(tuple(entries))
    elif entries and entries[0] == native_capture.PACKED:
        entries = _table_entries((_TABLE, *native_capture.unpack(tuple(entries))))
    out: list[dict[str, object]] = []
    for entry in entries:
        if isinstance(entry, dict):
            out.append(entry)
        elif entry[0] is None:
            out.append({"indirect": True, "more": entry[1]})
        elif entry[5] is None:
            out.append({"index": entry[0], "addr": entry[1], "len": entry[2],
                        "flags": entry[3], "indirect": entry[4]})
        else:
            out.append({"index": entry[0], "addr": entry[1], "len": entry[2],
                        "flags": entry[3], "indirect": entry[4], "data": entry[5].hex()})
    return out


# The low flag byte of an entry that continues a chain in Linux's shape: NEXT, with or
# without WRITE. The first other byte ends the chain.
_NOT_CHAINED = re.compile(b"[^" + re.escape(bytes([_NEXT, _NEXT | _WRITE])) + b"]")
_NEXT_PATTERN = b""


def _linear_next_pattern(count: int) -> bytes:
    """The next fields (u16 LE) of entries 0..count-2 of a linearly chained table."""
    global _NEXT_PATTERN
    if len(_NEXT_PATTERN) < 2 * (count - 1):
        _NEXT_PATTERN = struct.pack("<65536H", *((i + 1) & 0xFFFF for i in range(0x10000)))
    return _NEXT_PATTERN[:2 * (count - 1)]


class ChainError(Exception):
    """A descriptor chain (or the ring around it) is structurally broken.

    `head` is the chain's head index, or None when the ring itself is at fault.
    `last_writable`, set by `SplitQueue.pop()`, is the guest address of the refused
    chain's last device-writable byte when its end could still be found (see
    `SplitQueue._locate_last_writable`); the chain then counts as in flight, and a
    device may answer it there (with an error status) and return it with add_used.
    Otherwise the device is expected to stop using the queue and call
    `ctx.needs_reset(...)`.
    """

    def __init__(self, head: int | None, reason: str) -> None:
        where = "ring" if head is None else f"chain {head}"
        super().__init__(f"{where}: {reason}")
        self.head = head
        self.reason = reason
        self.last_writable: int | None = None


class DescriptorChain:
    """One available chain, validated and resolved into readable and writable segments.

    The segments are kept as two sequences, addresses and lengths (lists, or arrays
    from the C table check), readable ones first: a Linux request of 64 KiB names ~270
    buffers and touches ~35 of them, so an (addr, len) pair is made only for a segment
    that is read or written (and for whoever asks for `readable` or `writable` as
    lists)."""

    __slots__ = (
        "head", "readable_len", "writable_len", "readable_count", "descriptor_count",
        "indirect", "_mem", "_addrs", "_lengths",
    )

    def __init__(
        self,
        mem: GuestMemory,
        head: int,
        addrs: Sequence[int],
        lengths: Sequence[int],
        readable_count: int,
        descriptor_count: int,
        indirect: bool,
        readable_len: int,
        writable_len: int,
    ) -> None:
        self._mem = mem
        self.head = head
        self._addrs = addrs
        self._lengths = lengths
        self.readable_count = readable_count
        self.readable_len = readable_len
        self.writable_len = writable_len
        self.descriptor_count = descriptor_count
        self.indirect = indirect

    def __repr__(self) -> str:
        return (f"DescriptorChain(head={self.head}, readable={self.readable_len}B"
                f"/{self.readable_count}, writable={self.writable_len}B/{self.writable_count})")

    @property
    def readable(self) -> _Segments:
        """The device-readable segments as (addr, len), in chain order."""
        count = self.readable_count
        return list(zip(self._addrs[:count], self._lengths[:count]))

    @property
    def writable(self) -> _Segments:
        """The device-writable segments as (addr, len), in chain order."""
        count = self.readable_count
        return list(zip(self._addrs[count:], self._lengths[count:]))

    @property
    def writable_count(self) -> int:
        return len(self._lengths) - self.readable_count

    def segment(self, index: int) -> tuple[int, int]:
        """Segment `index` as (addr, len), counting the readable ones first (negative:
        from the end)."""
        return self._addrs[index], self._lengths[index]

    def read(self, offset: int, size: int) -> bytes:
        """Copy `size` bytes starting `offset` bytes into the readable part."""
        if offset < 0 or size < 0 or offset + size > self.readable_len:
            raise ChainError(self.head, f"read of {size} bytes at {offset} past the "
                                        f"{self.readable_len} readable bytes")
        lengths = self._lengths
        for index in range(self.readable_count):
            length = lengths[index]
            if offset < length:
                if offset + size <= length:   # the common case: a field inside one segment
                    return self._mem.read(self._addrs[index] + offset, size)
                return self._mem.gather(self._pieces(index, offset, size))
            offset -= length
        return b""                            # nothing, at the very end

    def unpack_from(self, layout: struct.Struct) -> tuple:
        """Decode `layout` at the start of the readable part: in place when the first
        segment holds it (a request header, usually), else from a copy."""
        if self.readable_count and self._lengths[0] >= layout.size:
            return self._mem.unpack_from(layout, self._addrs[0])
        return layout.unpack(self.read(0, layout.size))

    def read_all(self) -> bytes:
        """Copy all readable bytes, in chain order."""
        return self._mem.gather(self.readable)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Scatter `data` into the writable part starting `offset` bytes in."""
        size = len(data)
        if offset < 0 or offset + size > self.writable_len:
            raise ChainError(self.head, f"write of {size} bytes at {offset} past the "
                                        f"{self.writable_len} writable bytes")
        if not size:
            return
        # Common cases first, one write each: output in the first segment, status
        # byte in the last.
        lengths, first = self._lengths, self.readable_count
        if offset + size <= lengths[first]:
            self._mem.write(self._addrs[first] + offset, data)
            return
        start = self.writable_len - lengths[-1]
        if offset >= start:
            self._mem.write(self._addrs[-1] + offset - start, data)
            return
        self._mem.scatter(self._pieces(first, offset, size), data)

    def _pieces(self, first: int, offset: int, size: int) -> _Segments:
        """The (addr, len) pieces of the segments from `first` on that hold bytes
        [offset, offset + size) of them, which the caller has checked they have: a
        64 KiB request's data spans ~17 segments, and one gather or scatter moves them
        all."""
        addrs, lengths = self._addrs, self._lengths
        out = []
        for index in range(first, len(lengths)):
            length = lengths[index]
            if offset >= length:
                offset -= length
                continue
            take = length - offset
            if take >= size:
                out.append((addrs[index] + offset, size))
                break
            out.append((addrs[index] + offset, take))
            size -= take
            offset = 0
        return out


class SplitQueue:
    """The device's half of one split virtqueue (virtio 1.x, section 2.7).

    Built by the transport from the addresses the driver programmed. Single-threaded:
    only the CPU thread calls it, so the memory barriers of the spec are implicit.
    """

    def __init__(
        self,
        index: int,
        size: int,
        mem: GuestMemory,
        desc_addr: int,
        avail_addr: int,
        used_addr: int,
        *,
        indirect: bool = False,
        event_idx: bool = False,
        ready: bool = True,
        trace: TraceSink = discard,
        device: str = "virtio",
    ) -> None:
        if size <= 0 or size & (size - 1) or size > 0x8000:
            raise ValueError(f"queue size {size} is not a power of two up to 32768")
        self.index = index
        self.size = size
        # False: not (or no longer) enabled, or the device needs a reset: pop() finds
        # nothing and add_used() refuses.
        self.ready = ready
        self._rings_checked = ready  # the transport validated the ring areas
        self.desc_addr = desc_addr
        self.avail_addr = avail_addr
        self.used_addr = used_addr
        self.indirect = indirect
        self.event_idx = event_idx
        self._mem = mem
        self._in_ram = mem.contains
        self._unpack = mem.unpack_from
        self._trace = trace
        self._tracing = trace is not discard
        self._log = event_log(trace)
        # packed_chain(head): chain `head` as it stands, copied in C for a trace event
        # (native_capture: Linux's indirect table and the start of each listed buffer),
        # or None where the C copy does not apply (another shape, no native library,
        # nothing observing).
        self.packed_chain: Callable[[int], tuple | None] = (
            self._tracing and native_capture.for_table(mem, desc_addr, MAX_LISTED,
                                                       PREVIEW_BYTES)) or _no_copy
        # The chain walk in C for chains that break no rule (native_walk), else None:
        # _walk then walks every chain.
        self._native_walk = native_walk.for_queue(mem, desc_addr, size, indirect)
        self._device = device
        self._last_avail = 0
        self._used_idx = 0
        self._in_flight = 0
        self._signalled_used = 0  # used.idx when the last interrupt decision was made
        self._notifications = True
        self._used_event_addr = avail_addr + 4 + 2 * size
        self._avail_event_addr = used_addr + 4 + 8 * size
        self._published_avail_event = -1  # what we last wrote there; -1: nothing yet
        self._heads_in_flight: set[int] = set()  # for snapshots: which chains the device holds

    # ---- ring access ------------------------------------------------------------

    def _read_u16(self, addr: int) -> int:
        try:
            return self._unpack(_U16, addr)[0]
        except GuestMemoryError as err:
            raise ChainError(None, f"ring at {addr:#x} is outside RAM") from err

    def _write(self, addr: int, data: bytes) -> None:
        try:
            self._mem.write(addr, data)
        except GuestMemoryError as err:
            raise ChainError(None, f"ring at {addr:#x} is outside RAM") from err

    def _peek_u16(self, addr: int) -> int | None:
        """A ring field for observers: None instead of an error when it is not in RAM."""
        try:
            return self._unpack(_U16, addr)[0]
        except GuestMemoryError:
            return None

    # ---- device API -------------------------------------------------------------

    @property
    def last_avail_idx(self) -> int:
        return self._last_avail

    @property
    def used_idx(self) -> int:
        return self._used_idx

    def in_flight(self) -> int:
        """Chains popped but not yet returned with add_used."""
        return self._in_flight

    def snapshot(self) -> dict[str, int | bool]:
        """The ring indices as both sides see them, as plain values for observers."""
        state: dict[str, int | bool] = {
            "size": self.size, "ready": self.ready, "last_avail_idx": self._last_avail,
            "used_idx": self._used_idx, "in_flight": self._in_flight,
        }
        if self._rings_checked:
            state["avail_idx"] = self._read_u16(self.avail_addr + 2)
            state["avail_flags"] = self._read_u16(self.avail_addr)
            if self.event_idx:
                state["used_event"] = self._read_u16(self._used_event_addr)
        return state

    def published_avail_idx(self) -> int | None:
        """avail.idx as the driver last wrote it (None before the rings were checked, or
        outside RAM). Read for every traced notify: no call it could do without."""
        if not self._rings_checked:
            return None
        try:
            return self._unpack(_U16, self.avail_addr + 2)[0]
        except GuestMemoryError:
            return None

    def query_status(self) -> dict[str, int | bool | None]:
        """This queue as QEMU's x-query-virtio-queue-status answers it (its field names),
        for observers; reads the driver's fields from RAM and changes nothing."""
        checked = self._rings_checked
        return {
            "queue-index": self.index, "vring-num": self.size, "ready": self.ready,
            "vring-desc": self.desc_addr, "vring-avail": self.avail_addr,
            "vring-used": self.used_addr, "last-avail-idx": self._last_avail,
            "shadow-avail-idx": self._peek_u16(self.avail_addr + 2) if checked else None,
            "avail-flags": self._peek_u16(self.avail_addr) if checked else None,
            "used-idx": self._used_idx, "signalled-used": self._signalled_used,
            "used-event": (self._peek_u16(self._used_event_addr)
                           if checked and self.event_idx else None),
            "inuse": self._in_flight, "event-idx": self.event_idx,
            "indirect": self.indirect,
        }

    def query_element(self, head: int) -> dict[str, object]:
        """One chain as x-query-virtio-queue-element shows it: its descriptors."""
        return {"index": head, "descs": describe_chain(self._mem, self.desc_addr,
                                                       self.size, head % self.size)}

    def descriptor_owners(self) -> list[str]:
        """Who holds each descriptor of the table right now: "avail" (published by the
        driver, not yet popped), "device" (popped, not yet used), "used" (returned,
        not yet reclaimed by the driver), or "free". The device cannot see the driver's
        reclaim, so "used" covers used entries past used_event (EVENT_IDX drivers set
        it to the last entry they reclaimed); without EVENT_IDX they count as free."""
        owners = ["free"] * self.size
        if not self._rings_checked:
            return owners

        def mark(head: int, owner: str) -> None:
            for item in describe_chain(self._mem, self.desc_addr, self.size, head, 0):
                if not item["indirect"] and owners[item["index"]] == "free":  # type: ignore[index]
                    owners[item["index"]] = owner  # type: ignore[index]

        for head in sorted(self._heads_in_flight):
            mark(head, "device")
        shadow = self._peek_u16(self.avail_addr + 2)
        if shadow is not None:
            for step in range(min((shadow - self._last_avail) & 0xFFFF, self.size)):
                slot = self.avail_addr + 4 + 2 * ((self._last_avail + step) & (self.size - 1))
                head = self._peek_u16(slot)
                if head is not None and head < self.size:
                    mark(head, "avail")
        used_event = self._peek_u16(self._used_event_addr) if self.event_idx else None
        if used_event is not None:
            for step in range(min((self._used_idx - used_event) & 0xFFFF, self.size)):
                entry = self.used_addr + 4 + 8 * ((used_event + step) & (self.size - 1))
                head = self._peek_u16(entry)
                if head is not None and head < self.size:
                    mark(head, "used")
        return owners

    def pending(self) -> int:
        """Chains the driver has made available that pop() has not taken yet."""
        return (self._read_u16(self.avail_addr + 2) - self._last_avail) & 0xFFFF

    def pop(self) -> DescriptorChain | None:
        """Take the next available chain, or None when the ring is empty.

        Raises ChainError for a broken ring or chain; a broken chain is consumed, so a
        device that chooses to carry on does not see it again.
        """
        if not self.ready:
            return None
        last = self._last_avail
        try:  # the ring reads inline, as _read_u16 would do them: this runs per request
            avail_idx = self._unpack(_U16, self.avail_addr + 2)[0]
            pending = (avail_idx - last) & 0xFFFF
            if pending == 0:
                if last != self._published_avail_event:  # (usually: already published)
                    self._publish_avail_event()
                return None
            if pending > self.size:
                raise ChainError(None, f"avail.idx {avail_idx} is {pending} ahead of "
                                       f"{last}, more than the queue size {self.size}")
            if self._in_flight >= self.size:
                raise ChainError(None, f"more than {self.size} chains in flight")
            head = self._unpack(_U16, self.avail_addr + 4 + 2 * (last & (self.size - 1)))[0]
        except GuestMemoryError as err:
            raise ChainError(None, f"ring at {err.addr:#x} is outside RAM") from err
        self._last_avail = (last + 1) & 0xFFFF
        self._publish_avail_event()
        walked = self._native_walk(head) if self._native_walk is not None else None
        try:
            chain = (DescriptorChain(self._mem, head, *walked) if walked is not None
                     else self._walk(head))
        except ChainError as err:
            err.last_writable = self._locate_last_writable(head)
            if err.last_writable is not None:     # the device holds it until it answers
                self._in_flight += 1
                self._heads_in_flight.add(head)
            raise
        self._in_flight += 1
        self._heads_in_flight.add(head)
        if self._tracing:
            listed = (self.packed_chain(head)
                      or chain_capture(self._mem, self.desc_addr, self.size, head))
            used_event = None
            if self.event_idx:      # _peek_u16 inline: a call less per traced request
                try:
                    used_event = self._unpack(_U16, self._used_event_addr)[0]
                except GuestMemoryError:
                    pass
            events = self._log
            events.record((events.next_seq(), _monotonic(), "pop", self._device, self.index, (
                _POP, head, chain.descriptor_count, chain.readable_len, chain.writable_len,
                chain.indirect, avail_idx, self._last_avail, self._in_flight, used_event,
                listed)))
        return chain

    def add_used(self, head: int, length: int) -> None:
        """Return chain `head` to the driver, reporting `length` bytes written.

        A stopped queue (QueueReady written 0, or the device needing a reset) is never
        written: the driver may already be reusing that memory."""
        if not self._rings_checked:
            raise ChainError(head, f"queue {self.index} was never enabled")
        if not self.ready:
            raise ChainError(head, f"queue {self.index} is stopped; its used ring is not written")
        used = self._used_idx
        write = self._mem.write
        try:
            write(self.used_addr + 4 + 8 * (used & (self.size - 1)),
                  _USED_ELEM.pack(head & 0xFFFF_FFFF, length & 0xFFFF_FFFF))
            self._used_idx = used = (used + 1) & 0xFFFF
            write(self.used_addr + 2, _U16.pack(used))
        except GuestMemoryError as err:
            raise ChainError(None, f"ring at {err.addr:#x} is outside RAM") from err
        if self._in_flight:
            self._in_flight -= 1
        self._heads_in_flight.discard(head)
        if self._tracing:
            events = self._log
            events.record((events.next_seq(), _monotonic(), "fill", self._device, self.index,
                           (_FILL, head, length, used, self._in_flight)))

    def needs_interrupt(self, explain: bool = True) -> tuple[bool, str]:
        """Should the driver be interrupted for the used entries added so far?

        Returns the decision and the reason, for the trace (formatted only if `explain`:
        nobody reads it when tracing is off). With EVENT_IDX the answer follows
        used_event; otherwise the NO_INTERRUPT flag in avail.flags.
        """
        used = self._used_idx
        if self.event_idx:
            old, self._signalled_used = self._signalled_used, used
            if old == used:
                return False, "no new used entries"
            try:
                used_event = self._unpack(_U16, self._used_event_addr)[0]
            except GuestMemoryError as err:
                raise ChainError(None, f"ring at {err.addr:#x} is outside RAM") from err
            if need_event(used_event, used, old):
                return True, f"used_event {used_event} crossed" if explain else ""
            return False, f"used_event {used_event} not reached" if explain else ""
        if self._read_u16(self.avail_addr) & AVAIL_F_NO_INTERRUPT:
            return False, "NO_INTERRUPT set by driver"
        return True, "used buffer"

    def set_notifications(self, enabled: bool) -> bool:
        """Ask the driver to kick (or not) when it adds buffers.

        A device draining a busy queue can switch kicks off while it works. Returns True
        when buffers are pending, so a device re-enabling kicks polls once more instead
        of missing what arrived while they were off.
        """
        self._notifications = enabled
        if self.event_idx:
            self._publish_avail_event()
        else:
            self._write(self.used_addr, _U16.pack(0 if enabled else USED_F_NO_NOTIFY))
        return enabled and self.pending() != 0

    def _publish_avail_event(self) -> None:
        """Tell the driver to kick once it makes entry last_avail available. pop()
        calls this again when it finds the ring empty, usually with the same value:
        only the driver reads this field, so an unchanged value is not rewritten."""
        last = self._last_avail
        if self.event_idx and self._notifications and last != self._published_avail_event:
            self._write(self._avail_event_addr, _U16.pack(last))
            self._published_avail_event = last

    # ---- chain walking ----------------------------------------------------------

    def _walk(self, head: int) -> DescriptorChain:
        if head >= self.size:
            raise ChainError(head, f"head index {head} is not below the queue size {self.size}")
        # Descriptors are decoded in place from RAM (or the copied indirect table), with
        # the memory's methods in locals: this loop runs for every descriptor.
        unpack = self._unpack
        in_ram = self._in_ram
        desc_addr = self.desc_addr
        addrs: list[int] = []
        lengths: list[int] = []
        readable_count = -1  # -1 until the first writable segment: then how many precede
        total = 0
        writable_len = 0
        count = 0
        outer = 0  # descriptors walked before entering an indirect table
        indirect = False
        table: bytes | None = None  # the copied indirect table, once we are inside one
        table_len = self.size
        index = head
        while True:
            count += 1
            if count > table_len:
                raise ChainError(head, f"chain longer than its table of {table_len} "
                                       "descriptors (a loop?)")
            if table is None:
                try:
                    addr, length, flags, nxt = unpack(_DESC, desc_addr + _DESC_SIZE * index)
                except GuestMemoryError as err:
                    raise ChainError(head, "descriptor table is outside RAM") from err
            else:
                addr, length, flags, nxt = _DESC.unpack_from(table, _DESC_SIZE * index)

            if flags & _INDIRECT:
                table = self._indirect_table(head, addr, length, flags, table is not None)
                table_len = length // _DESC_SIZE
                indirect = True
                index = 0
                outer, count = count, 0
                if table_len >= _BULK_MIN:
                    linear = _resolve_table(table, in_ram, readable_count >= 0)
                    if linear is not None and total + linear[3] + linear[4] <= _MAX_TOTAL_LEN:
                        table_addrs, table_lengths, table_readable = linear[:3]
                        if readable_count < 0:
                            readable_count = len(addrs) + table_readable
                        if addrs:                       # direct descriptors came first
                            table_addrs = [*addrs, *table_addrs]
                            table_lengths = [*lengths, *table_lengths]
                        return DescriptorChain(self._mem, head, table_addrs, table_lengths,
                                               readable_count, outer + table_len, True,
                                               total - writable_len + linear[3],
                                               writable_len + linear[4])
                continue

            if length:
                if not in_ram(addr, length):
                    raise ChainError(head, f"buffer {addr:#x}+{length:#x} is outside RAM")
                total += length
                if total > _MAX_TOTAL_LEN:
                    raise ChainError(head, "chain carries more than 4 GiB")
            if flags & _WRITE:
                if length:
                    if readable_count < 0:
                        readable_count = len(addrs)
                    addrs.append(addr)
                    lengths.append(length)
                    writable_len += length
            elif readable_count >= 0:
                raise ChainError(head, "device-readable descriptor after a writable one")
            elif length:
                addrs.append(addr)
                lengths.append(length)

            if not flags & _NEXT:
                break
            if nxt >= table_len:
                raise ChainError(head, f"next index {nxt} is not below {table_len}")
            index = nxt
        if readable_count < 0:
            readable_count = len(addrs)
        return DescriptorChain(self._mem, head, addrs, lengths, readable_count,
                               outer + count, indirect, total - writable_len, writable_len)

    def _locate_last_writable(self, head: int) -> int | None:
        """Where a refused chain ends, if that can be known: the address of its last
        device-writable byte, or None.

        Known means: the descriptors chain from `head` without a loop and with every
        next index in range, an indirect descriptor (negotiated, without NEXT) ends the
        direct part and its table has the shape Linux writes (`_linear_table_end`), and
        the last descriptor is device-writable, not empty and in RAM. What made the
        walker refuse the chain (a buffer outside RAM, an order violation, too many
        descriptors, a table longer than 65536 entries) does not matter here. The walk
        is bounded by the queue size, and at most 1 MiB of a table is read."""
        if head >= self.size:
            return None
        index, last = head, None
        for _ in range(self.size):
            try:
                addr, length, flags, nxt = self._unpack(_DESC, self.desc_addr + _DESC_SIZE * index)
            except GuestMemoryError:
                return None
            if flags & _INDIRECT:
                if flags & _NEXT or not self.indirect:
                    return None
                last = self._linear_table_end(addr, length)
                break
            last = (addr, length, flags)
            if not flags & _NEXT:
                break
            if nxt >= self.size:
                return None
            index = nxt
        else:
            return None                              # longer than the ring: a loop
        if last is None:
            return None
        addr, length, flags = last
        if flags & _WRITE and length and self._in_ram(addr, length):
            return addr + length - 1
        return None

    def _linear_table_end(self, addr: int, length: int) -> tuple[int, int, int] | None:
        """Where the chain through an indirect table ends, as (addr, len, flags) of its
        last entry, when the table has the shape Linux writes; None for any other.

        That shape: from entry 0, each entry has NEXT (with or without WRITE) and
        next = i + 1, up to the first entry without NEXT, which ends the chain. Entries
        after it are not part of the chain and are not looked at. (Linux writes next as
        a 16-bit i + 1, so past 65536 sgs its table wraps onto itself: what the chain
        then holds is its last sgs, status byte last, and only that end matters here.)
        The chain cannot reach past entry 65535, so at most 1 MiB of table is read, and
        it is examined with byte operations, not a loop over entries."""
        count = min(length // _DESC_SIZE, 0x10000)
        if not count or length % _DESC_SIZE:
            return None
        try:
            table = memoryview(self._mem.read(addr, count * _DESC_SIZE))
        except GuestMemoryError:
            return None
        flags = bytes(table[12::_DESC_SIZE])           # the low flag byte of each entry
        found = _NOT_CHAINED.search(flags)
        if found is None:
            return None                                 # every entry goes on: no end
        end = found.start()
        pattern = _linear_next_pattern(end + 1)
        if (flags[end] & (_NEXT | _INDIRECT)
                or bytes(table[13:(end + 1) * _DESC_SIZE:_DESC_SIZE]).count(0) != end + 1
                or bytes(table[14:end * _DESC_SIZE:_DESC_SIZE]) != pattern[0::2]
                or bytes(table[15:end * _DESC_SIZE:_DESC_SIZE]) != pattern[1::2]):
            return None
        entry_addr, entry_len, entry_flags, _ = _DESC.unpack_from(table, end * _DESC_SIZE)
        return entry_addr, entry_len, entry_flags

    def _indirect_table(self, head: int, addr: int, length: int, flags: int,
                        nested: bool) -> bytes:
        """Validate and copy an indirect table (section 2.7.5.3)."""
        if not self.indirect:
            raise ChainError(head, "INDIRECT descriptor but VIRTIO_F_INDIRECT_DESC "
                                   "was not negotiated")
        if nested:
            raise ChainError(head, "nested INDIRECT descriptor")
        if flags & Desc.NEXT:
            raise ChainError(head, "INDIRECT combined with NEXT")
        if length == 0 or length % Desc.SIZE:
            raise ChainError(head, f"indirect table length {length} is not a non-zero "
                                   "multiple of 16")
        if length > Desc.SIZE * 0x10000:
            raise ChainError(head, f"indirect table length {length} exceeds 65536 entries")
        try:
            return self._mem.read(addr, length)
        except GuestMemoryError as err:
            raise ChainError(head, f"indirect table {addr:#x}+{length:#x} is outside "
                                   "RAM") from err
