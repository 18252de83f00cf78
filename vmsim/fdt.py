"""The device tree vmsim hands to the kernel in a1: a flattened DTB, version 17.

Two parts: a minimal DTB writer (a node tree, flattened into the header, the memory
reservation map, the structure block and the strings block), and `build_device_tree`,
which describes the machine the way QEMU `virt` does for one hart, so that kernels and
habits carry over. Writing the format ourselves keeps a dependency (and a C toolchain
at run time) out of the boot path; it is small and fully specified.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from devices.plic import WINDOW_SIZE as PLIC_SIZE
from devices.power import FINISHER_PASS, FINISHER_RESET
from devices.power import WINDOW_SIZE as POWER_SIZE

# -- the machine map (QEMU virt addresses) ---------------------------------------------------

POWER_BASE = 0x10_0000
PLIC_BASE = 0x0C00_0000
UART_BASE, UART_SIZE, UART_IRQ = 0x1000_0000, 0x100, 10
UART_CLOCK_HZ = 3_686_400
VIRTIO_BASE, VIRTIO_STRIDE, VIRTIO_SIZE = 0x1000_1000, 0x1000, 0x1000
PLIC_NUM_SOURCES = 95

# Hart-local interrupt numbers the PLIC contexts are wired to.
IRQ_M_EXT, IRQ_S_EXT = 11, 9


def virtio_slot(index: int) -> tuple[int, int]:
    """(base, irq) of virtio-mmio slot `index`."""
    return VIRTIO_BASE + VIRTIO_STRIDE * index, 1 + index


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


# -- the board -------------------------------------------------------------------------------

PHANDLE_CPU, PHANDLE_CPU_INTC, PHANDLE_PLIC, PHANDLE_POWER = 1, 2, 3, 4


@dataclass
class BoardSpec:
    """What varies between boots; everything else is the fixed machine map."""

    ram_base: int
    ram_size: int
    bootargs: str
    initrd: tuple[int, int] | None            # (start, end) guest-physical
    virtio_slots: list[tuple[int, int]]       # (base, irq) of populated slots only
    timebase_hz: int = 10_000_000
    isa: str = "rv64imafdc"


def _uart_path() -> str:
    return f"/soc/serial@{UART_BASE:x}"


def _chosen(spec: BoardSpec) -> Node:
    chosen = Node("chosen").prop("bootargs", string(spec.bootargs))
    chosen.prop("stdout-path", string(_uart_path()))
    if spec.initrd is not None:
        start, end = spec.initrd
        chosen.prop("linux,initrd-start", u64(start)).prop("linux,initrd-end", u64(end))
    return chosen


def _cpus(spec: BoardSpec) -> Node:
    cpus = Node("cpus").prop("#address-cells", cells(1)).prop("#size-cells", cells(0))
    cpus.prop("timebase-frequency", cells(spec.timebase_hz))
    cpu = cpus.child("cpu@0")
    cpu.prop("phandle", cells(PHANDLE_CPU)).prop("device_type", string("cpu"))
    cpu.prop("reg", cells(0)).prop("status", string("okay"))
    cpu.prop("compatible", string("riscv")).prop("riscv,isa", string(spec.isa))
    cpu.prop("mmu-type", string("riscv,sv39"))
    intc = cpu.child("interrupt-controller")
    intc.prop("#address-cells", cells(0)).prop("#interrupt-cells", cells(1))
    intc.prop("interrupt-controller", EMPTY).prop("compatible", string("riscv,cpu-intc"))
    intc.prop("phandle", cells(PHANDLE_CPU_INTC))
    return cpus


def _irq_device(soc: Node, name: str, base: int, size: int, irq: int, compatible: bytes) -> Node:
    node = soc.child(f"{name}@{base:x}")
    node.prop("interrupts", cells(irq)).prop("interrupt-parent", cells(PHANDLE_PLIC))
    node.prop("reg", u64(base, size)).prop("compatible", compatible)
    return node


def _soc(spec: BoardSpec) -> Node:
    soc = Node("soc").prop("#address-cells", cells(2)).prop("#size-cells", cells(2))
    soc.prop("compatible", string("simple-bus")).prop("ranges", EMPTY)

    test = soc.child(f"test@{POWER_BASE:x}")
    test.prop("phandle", cells(PHANDLE_POWER)).prop("reg", u64(POWER_BASE, POWER_SIZE))
    test.prop("compatible", strings("sifive,test1", "sifive,test0", "syscon"))

    uart = _irq_device(soc, "serial", UART_BASE, UART_SIZE, UART_IRQ, string("ns16550a"))
    uart.prop("clock-frequency", cells(UART_CLOCK_HZ))

    for base, irq in spec.virtio_slots:
        _irq_device(soc, "virtio_mmio", base, VIRTIO_SIZE, irq, string("virtio,mmio"))

    plic = soc.child(f"plic@{PLIC_BASE:x}")
    plic.prop("phandle", cells(PHANDLE_PLIC)).prop("riscv,ndev", cells(PLIC_NUM_SOURCES))
    plic.prop("reg", u64(PLIC_BASE, PLIC_SIZE))
    # Context 0 is the hart's M mode, context 1 its S mode: the order matters to Linux.
    plic.prop("interrupts-extended",
              cells(PHANDLE_CPU_INTC, IRQ_M_EXT, PHANDLE_CPU_INTC, IRQ_S_EXT))
    plic.prop("interrupt-controller", EMPTY)
    plic.prop("compatible", strings("sifive,plic-1.0.0", "riscv,plic0"))
    plic.prop("#address-cells", cells(0)).prop("#interrupt-cells", cells(1))
    return soc


def _syscon_action(name: str, compatible: str, value: int) -> Node:
    node = Node(name).prop("value", cells(value)).prop("offset", cells(0))
    return node.prop("regmap", cells(PHANDLE_POWER)).prop("compatible", string(compatible))


def build_device_tree(spec: BoardSpec) -> bytes:
    """A valid DTB (version 17) describing the machine for one hart."""
    root = Node("").prop("#address-cells", cells(2)).prop("#size-cells", cells(2))
    root.prop("compatible", string("riscv-virtio")).prop("model", string("riscv-virtio,vmsim"))
    root.children.append(_chosen(spec))
    root.child("aliases").prop("serial0", string(_uart_path()))
    memory = root.child(f"memory@{spec.ram_base:x}")
    memory.prop("device_type", string("memory")).prop("reg", u64(spec.ram_base, spec.ram_size))
    root.children.append(_cpus(spec))
    # Outside /soc, as QEMU 7.2 does: they have no registers of their own.
    root.children.append(_syscon_action("poweroff", "syscon-poweroff", FINISHER_PASS))
    root.children.append(_syscon_action("reboot", "syscon-reboot", FINISHER_RESET))
    root.children.append(_soc(spec))
    return flatten(root)
