"""The riscv64 `virt` board: one hart, QEMU `virt` addresses, so kernels and habits carry over.

Every window, size and interrupt of the board is declared once, in `BOARD`; the machine
maps its devices from it and `device_tree` describes it to the kernel.

    RAM             0x8000_0000
    sifive-test     0x0010_0000          poweroff / reboot (syscon)
    PLIC            0x0c00_0000          95 sources; context 0 = M mode, 1 = S mode
    UART 16550A     0x1000_0000, IRQ 10
    virtio-mmio     0x1000_1000 + 0x1000 * i, IRQ 1 + i  (8 slots)
"""
from __future__ import annotations

from dataclasses import dataclass

from vmsim.boards.fdt import EMPTY, Node, cells, flatten, linux_chosen, string, strings, u64
from vmsim.boards.layout import BootInfo, SlotRow, Window
from vmsim.devices.plic import WINDOW_SIZE as PLIC_REGISTERS
from vmsim.devices.power import FINISHER_PASS, FINISHER_RESET


@dataclass(frozen=True)
class RiscvVirtBoard:
    """A riscv64 board with a PLIC, a 16550A UART, a sifive-test power device and a row
    of virtio-mmio slots."""

    name: str
    arch: str
    console: str                   # the kernel's console= for the board's UART
    summary: str                   # one line for `vmsim run -M help`
    ram_base: int
    timebase_hz: int
    isa: str
    mmu: str
    power: Window
    plic: Window
    plic_sources: int
    plic_contexts: int
    plic_s_mode_context: int
    uart: Window
    uart_clock_hz: int
    virtio: SlotRow


BOARD = RiscvVirtBoard(
    name="riscv64-virt",
    arch="riscv64",
    console="ttyS0",
    summary="one riscv64 hart, PLIC, 16550 UART, sifive-test power, SBI firmware",
    ram_base=0x8000_0000,
    timebase_hz=10_000_000,
    isa="rv64imafdc",
    mmu="riscv,sv39",
    power=Window(0x10_0000, 0x1000),
    plic=Window(0x0C00_0000, PLIC_REGISTERS),
    plic_sources=95,
    plic_contexts=2,
    plic_s_mode_context=1,
    uart=Window(0x1000_0000, 0x100, irq=10),
    uart_clock_hz=3_686_400,
    virtio=SlotRow(base=0x1000_1000, stride=0x1000, size=0x1000, first_irq=1, count=8),
)

# Hart-local interrupt numbers the PLIC contexts are wired to (the privileged spec's).
IRQ_M_EXT, IRQ_S_EXT = 11, 9
PHANDLE_CPU, PHANDLE_CPU_INTC, PHANDLE_PLIC, PHANDLE_POWER = 1, 2, 3, 4


def device_tree(board: RiscvVirtBoard, boot: BootInfo) -> bytes:
    """A valid DTB (version 17) describing the board for one hart, as QEMU `virt` does."""
    root = Node("").prop("#address-cells", cells(2)).prop("#size-cells", cells(2))
    root.prop("compatible", string("riscv-virtio")).prop("model", string("riscv-virtio,vmsim"))
    root.children.append(linux_chosen(boot.bootargs, _uart_path(board), boot.initrd))
    root.child("aliases").prop("serial0", string(_uart_path(board)))
    memory = root.child(f"memory@{board.ram_base:x}")
    memory.prop("device_type", string("memory")).prop("reg", u64(board.ram_base, boot.ram_size))
    root.children.append(_cpus(board))
    # Outside /soc, as QEMU 7.2 does: they have no registers of their own.
    root.children.append(_syscon_action("poweroff", "syscon-poweroff", FINISHER_PASS))
    root.children.append(_syscon_action("reboot", "syscon-reboot", FINISHER_RESET))
    root.children.append(_soc(board, boot))
    return flatten(root)


def _uart_path(board: RiscvVirtBoard) -> str:
    return f"/soc/serial@{board.uart.base:x}"


def _cpus(board: RiscvVirtBoard) -> Node:
    cpus = Node("cpus").prop("#address-cells", cells(1)).prop("#size-cells", cells(0))
    cpus.prop("timebase-frequency", cells(board.timebase_hz))
    cpu = cpus.child("cpu@0")
    cpu.prop("phandle", cells(PHANDLE_CPU)).prop("device_type", string("cpu"))
    cpu.prop("reg", cells(0)).prop("status", string("okay"))
    cpu.prop("compatible", string("riscv")).prop("riscv,isa", string(board.isa))
    cpu.prop("mmu-type", string(board.mmu))
    intc = cpu.child("interrupt-controller")
    intc.prop("#address-cells", cells(0)).prop("#interrupt-cells", cells(1))
    intc.prop("interrupt-controller", EMPTY).prop("compatible", string("riscv,cpu-intc"))
    intc.prop("phandle", cells(PHANDLE_CPU_INTC))
    return cpus


def _irq_device(soc: Node, name: str, window: Window, compatible: bytes) -> Node:
    node = soc.child(f"{name}@{window.base:x}")
    node.prop("interrupts", cells(window.irq or 0)).prop("interrupt-parent", cells(PHANDLE_PLIC))
    node.prop("reg", u64(window.base, window.size)).prop("compatible", compatible)
    return node


def _soc(board: RiscvVirtBoard, boot: BootInfo) -> Node:
    soc = Node("soc").prop("#address-cells", cells(2)).prop("#size-cells", cells(2))
    soc.prop("compatible", string("simple-bus")).prop("ranges", EMPTY)

    test = soc.child(f"test@{board.power.base:x}")
    test.prop("phandle", cells(PHANDLE_POWER)).prop("reg", u64(board.power.base, board.power.size))
    test.prop("compatible", strings("sifive,test1", "sifive,test0", "syscon"))

    uart = _irq_device(soc, "serial", board.uart, string("ns16550a"))
    uart.prop("clock-frequency", cells(board.uart_clock_hz))

    for index in boot.virtio_slots:
        _irq_device(soc, "virtio_mmio", board.virtio[index], string("virtio,mmio"))

    plic = soc.child(f"plic@{board.plic.base:x}")
    plic.prop("phandle", cells(PHANDLE_PLIC)).prop("riscv,ndev", cells(board.plic_sources))
    plic.prop("reg", u64(board.plic.base, board.plic.size))
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
