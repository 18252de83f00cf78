"""A minimal writer of flattened device trees (DTB, version 17), for every board.

A node tree is flattened into the header, the memory reservation map, the structure
block and the strings block. Writing the format ourselves keeps a dependency (and a C
toolchain at run time) out of the boot path; it is small and fully specified. What a
board's tree says is the board module's business (vmsim.boards.riscv64_virt).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field


# -- property values -------------------------------------------------------------------------

def cells(*values: int) -> bytes:
    """A list of 32-bit big-endian cells."""
    return b"".join(struct.pack(">I", v & 0xFFFF_FFFF) for v in values)


def u64(*values: int) -> bytes:
    """64-bit values, each as two cells (for #address-cells = #size-cells = 2)."""
    return b"".join(struct.pack(">Q", v) for v in values)


def string(text: str) -> bytes:
    return text.encode() + b"\0"


def strings(*texts: str) -> bytes:
    """A string list, such as a `compatible` with fallbacks."""
    return b"".join(string(t) for t in texts)


EMPTY = b""  # a boolean property: present means true


def linux_chosen(bootargs: str, stdout_path: str, initrd: tuple[int, int] | None) -> Node:
    """/chosen as Linux reads it on every architecture: command line, console, initrd."""
    chosen = Node("chosen").prop("bootargs", string(bootargs))
    chosen.prop("stdout-path", string(stdout_path))
    if initrd is not None:
        start, end = initrd
        chosen.prop("linux,initrd-start", u64(start)).prop("linux,initrd-end", u64(end))
    return chosen


# -- the DTB writer --------------------------------------------------------------------------

FDT_MAGIC = 0xD00DFEED
FDT_VERSION = 17
FDT_LAST_COMPATIBLE_VERSION = 16
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_END = 1, 2, 3, 9
HEADER_SIZE = 40


@dataclass
class Node:
    """A device tree node: ordered properties and children."""

    name: str
    props: list[tuple[str, bytes]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def prop(self, name: str, value: bytes) -> Node:
        self.props.append((name, value))
        return self

    def child(self, name: str) -> Node:
        node = Node(name)
        self.children.append(node)
        return node


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


class _StringTable:
    """The strings block: each property name once, referenced by offset."""

    def __init__(self) -> None:
        self._offsets: dict[str, int] = {}
        self._data = bytearray()

    def offset(self, name: str) -> int:
        if name not in self._offsets:
            self._offsets[name] = len(self._data)
            self._data += string(name)
        return self._offsets[name]

    def data(self) -> bytes:
        return bytes(self._data)


def _structure_block(root: Node, names: _StringTable) -> bytes:
    out = bytearray()

    def emit(node: Node) -> None:
        out.extend(cells(FDT_BEGIN_NODE) + _pad4(string(node.name)))
        for name, value in node.props:
            out.extend(cells(FDT_PROP, len(value), names.offset(name)) + _pad4(value))
        for child in node.children:
            emit(child)
        out.extend(cells(FDT_END_NODE))

    emit(root)
    out.extend(cells(FDT_END))
    return bytes(out)


def flatten(root: Node, reserved: list[tuple[int, int]] | None = None) -> bytes:
    """Serialise a tree (root name "") into a DTB, with optional (address, size) reservations."""
    names = _StringTable()
    structure = _structure_block(root, names)
    strings_block = names.data()
    rsvmap = b"".join(u64(addr, size) for addr, size in reserved or []) + u64(0, 0)

    off_rsvmap = HEADER_SIZE  # already 8-byte aligned
    off_struct = off_rsvmap + len(rsvmap)
    off_strings = off_struct + len(structure)
    total = off_strings + len(strings_block)
    header = struct.pack(">10I", FDT_MAGIC, total, off_struct, off_strings, off_rsvmap,
                         FDT_VERSION, FDT_LAST_COMPATIBLE_VERSION, 0,
                         len(strings_block), len(structure))
    return header + rsvmap + structure + strings_block
