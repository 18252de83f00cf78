"""Walk a chain the driver made available, the way the spec says it must look.

The device's own walker (queue.py) refuses what it cannot use; this one names what the
driver broke, as rule ids with the offending values, and keeps the first bytes of the
readable part so device-type rules can read the request header. It reads guest memory
only, walks at most twice the queue size of descriptors, and never raises.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from vmsim.devices.bus import GuestMemory, GuestMemoryError
from vmsim.devices.virtio.spec import Desc
from vmsim.devices.virtio.strict import rules

_DESC = struct.Struct("<QIHH")
_MAX_TOTAL = 1 << 32        # "no chain longer than 2^32 bytes in total"
PREFIX = 256                # readable bytes kept for device-type rules


@dataclass
class ChainWalk:
    """What one walk found: broken rules (id -> values) and the readable prefix."""

    queue: int
    head: int
    problems: dict[str, dict[str, Any]] = field(default_factory=dict)
    prefix: bytes = b""
    readable_len: int = 0
    writable_len: int = 0


def walk(mem: GuestMemory, queue: Any, head: int) -> ChainWalk:
    """Walk chain `head` of `queue` (a SplitQueue: size, desc_addr, indirect)."""
    found = ChainWalk(queue.index, head)
    if head >= queue.size:
        found.problems[rules.HEAD_RANGE] = {"head": head, "size": queue.size}
        return found
    prefix = bytearray()
    table: bytes | None = None
    table_len = queue.size
    index, visited, total, writable = head, set(), 0, False
    while True:
        if index in visited:
            found.problems[rules.LOOP] = {"head": head, "index": index,
                                          "indirect": table is not None}
            break
        visited.add(index)
        try:
            if table is None:
                addr, length, flags, nxt = mem.unpack_from(_DESC, queue.desc_addr + 16 * index)
            else:
                addr, length, flags, nxt = _DESC.unpack_from(table, 16 * index)
        except GuestMemoryError:
            break                      # the device refuses it; not a rule of its own
        if flags & Desc.INDIRECT:
            table = _enter_table(mem, queue, found, table is not None, index, addr, length, flags)
            if table is None:
                break
            table_len, index, visited = length // 16, 0, set()
            continue
        total += length
        if total > _MAX_TOTAL and rules.TOO_LONG not in found.problems:
            found.problems[rules.TOO_LONG] = {"head": head, "bytes": total}
        if flags & Desc.WRITE:
            writable = True
            found.writable_len += length
        elif writable:
            found.problems.setdefault(rules.WRITE_ORDER, {"head": head, "index": index,
                                                          "indirect": table is not None})
        else:
            found.readable_len += length
            if len(prefix) < PREFIX and length:
                try:
                    prefix += mem.read(addr, min(length, PREFIX - len(prefix)))
                except GuestMemoryError:
                    pass
        if not flags & Desc.NEXT:
            break
        if nxt >= table_len:
            found.problems[rules.NEXT_RANGE] = {"head": head, "index": index, "next": nxt,
                                                "table_len": table_len}
            break
        if table is not None and 16 * nxt >= len(table):
            break                      # past what is read of a table already too long
        index = nxt
    found.prefix = bytes(prefix)
    return found


def _enter_table(mem: GuestMemory, queue: Any, found: ChainWalk, nested: bool, index: int,
                 addr: int, length: int, flags: int) -> bytes | None:
    """Check an INDIRECT descriptor; return its table when it can be walked."""
    where = {"head": found.head, "index": index}
    if not queue.indirect:
        found.problems[rules.INDIRECT_FEATURE] = where
    if nested:
        found.problems[rules.INDIRECT_NESTED] = where
        return None
    if flags & Desc.NEXT:
        found.problems[rules.INDIRECT_NEXT] = {**where, "flags": flags}
    if length // 16 > queue.size:
        found.problems[rules.INDIRECT_SIZE] = {**where, "len": length, "entries": length // 16,
                                               "size": queue.size}
    # A chain longer than the queue is reported above; walking further finds nothing
    # the device does not refuse itself, so a hostile table costs at most a queue's worth.
    count = min(length // 16, queue.size)
    if not count:
        return None
    try:
        return mem.read(addr, 16 * count)
    except GuestMemoryError:
        return None
