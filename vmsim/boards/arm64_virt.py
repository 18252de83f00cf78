"""The arm64 `virt` board: one Cortex-A72, QEMU `virt` addresses, so kernels and habits carry over.

Every window, size and interrupt of the board is declared once, in `BOARD`; the machine
maps its devices from it and `device_tree` describes it to the kernel the way
`qemu-system-aarch64 -M virt -cpu cortex-a72` does (node names and interrupt flags
included), less what the board does not have (flash, PCIe, RTC, GPIO, fw-cfg, PMU).

    GIC distributor    0x0800_0000          GICv2, 256 SPIs
    GIC CPU interface  0x0801_0000
    PL011 UART         0x0900_0000, SPI 1   (interrupt ID 33)
    virtio-mmio        0x0a00_0000 + 0x200 * n, SPI 16 + n  (32 slots)
    RAM                0x4000_0000

Interrupt numbers in windows and slot rows are SPI numbers, as a device tree names
them; the GIC's interrupt ID is 32 more (`Gicv2.spi`). Slots are 0x200 apart, less
than a page, so the machine maps the whole row (`SlotRow.span`) as one region.
"""
from __future__ import annotations

from dataclasses import dataclass

from vmsim.boards.fdt import EMPTY, Node, cells, flatten, linux_chosen, string, strings, u64
from vmsim.boards.layout import BootInfo, SlotRow, Window


@dataclass(frozen=True)
class Arm64VirtBoard:
    """An arm64 board with a GICv2, a PL011 UART, the architected timer, PSCI and a row
    of virtio-mmio slots."""

    name: str
    arch: str
    console: str                   # the kernel's console= for the board's UART
    summary: str                   # one line for `vmsim run -M help`
    ram_base: int
    cpu: str
    gic_distributor: Window
    gic_cpu_interface: Window
    gic_interrupts: int            # interrupt IDs, SGIs and PPIs included
    timer_ppis: tuple[int, int, int, int]   # secure, non-secure physical, virtual, hyp
    uart: Window
    uart_clock_hz: int
    psci_method: str
    virtio: SlotRow


BOARD = Arm64VirtBoard(
    name="arm64-virt",
    arch="arm64",
    console="ttyAMA0",
    summary="one Cortex-A72, GICv2, PL011 UART, architected timer, PSCI",
    ram_base=0x4000_0000,
    cpu="arm,cortex-a72",
    gic_distributor=Window(0x0800_0000, 0x1_0000),
    gic_cpu_interface=Window(0x0801_0000, 0x1_0000),
    gic_interrupts=32 + 256,
    timer_ppis=(13, 14, 11, 10),
    uart=Window(0x0900_0000, 0x1000, irq=1),
    uart_clock_hz=24_000_000,
    psci_method="hvc",
    virtio=SlotRow(base=0x0A00_0000, stride=0x200, size=0x200, first_irq=16, count=32),
)

PPI_BASE, SPI_BASE = 16, 32


def timer_interrupt_id(board: Arm64VirtBoard, which: str = "virtual") -> int:
    """The GIC interrupt ID of one of the architected timer's outputs."""
    names = ("secure", "physical", "virtual", "hyp")
    return PPI_BASE + board.timer_ppis[names.index(which)]


# Device tree interrupt specifiers (bindings/interrupt-controller/arm,gic.yaml).
GIC_SPI, GIC_PPI = 0, 1
IRQ_EDGE_RISING, IRQ_LEVEL_HIGH = 1, 4
GIC_CPU_MASK_SHIFT = 8          # PPI flags: which CPUs' interface the PPI is wired to
PHANDLE_CPU, PHANDLE_GIC, PHANDLE_CLOCK = 1, 2, 3


def device_tree(board: Arm64VirtBoard, boot: BootInfo) -> bytes:
    """A valid DTB (version 17) describing the board for one CPU, as QEMU `virt` does."""
    root = Node("").prop("interrupt-parent", cells(PHANDLE_GIC))
    root.prop("#address-cells", cells(2)).prop("#size-cells", cells(2))
    root.prop("compatible", string("linux,dummy-virt")).prop("model", string("linux,dummy-virt,vmsim"))
    root.children.append(_psci(board))
    memory = root.child(f"memory@{board.ram_base:x}")
    memory.prop("reg", u64(board.ram_base, boot.ram_size)).prop("device_type", string("memory"))
    for index in boot.virtio_slots:
        slot = board.virtio[index]
        node = root.child(f"virtio_mmio@{slot.base:x}").prop("dma-coherent", EMPTY)
        node.prop("interrupts", cells(GIC_SPI, slot.irq or 0, IRQ_EDGE_RISING))
        node.prop("reg", u64(slot.base, slot.size)).prop("compatible", string("virtio,mmio"))
    root.children.append(_uart(board))
    root.children.append(_gic(board))
    root.children.append(_cpus(board))
    root.children.append(_timer(board))
    root.children.append(_clock(board))
    root.children.append(linux_chosen(boot.bootargs, _uart_path(board), boot.initrd))
    return flatten(root)


def _uart_path(board: Arm64VirtBoard) -> str:
    return f"/pl011@{board.uart.base:x}"


def _psci(board: Arm64VirtBoard) -> Node:
    psci = Node("psci").prop("method", string(board.psci_method))
    return psci.prop("compatible", strings("arm,psci-1.0", "arm,psci-0.2"))


def _uart(board: Arm64VirtBoard) -> Node:
    uart = Node(f"pl011@{board.uart.base:x}")
    uart.prop("clock-names", strings("uartclk", "apb_pclk"))
    uart.prop("clocks", cells(PHANDLE_CLOCK, PHANDLE_CLOCK))
    uart.prop("interrupts", cells(GIC_SPI, board.uart.irq or 0, IRQ_LEVEL_HIGH))
    uart.prop("reg", u64(board.uart.base, board.uart.size))
    return uart.prop("compatible", strings("arm,pl011", "arm,primecell"))


def _gic(board: Arm64VirtBoard) -> Node:
    gic = Node(f"intc@{board.gic_distributor.base:x}").prop("phandle", cells(PHANDLE_GIC))
    gic.prop("reg", u64(board.gic_distributor.base, board.gic_distributor.size,
                        board.gic_cpu_interface.base, board.gic_cpu_interface.size))
    gic.prop("compatible", string("arm,cortex-a15-gic"))
    gic.prop("interrupt-controller", EMPTY).prop("#interrupt-cells", cells(3))
    # As QEMU's: room for child frames (GICv2m), and what dtc wants of a provider.
    gic.prop("ranges", EMPTY).prop("#size-cells", cells(2)).prop("#address-cells", cells(2))
    return gic


def _cpus(board: Arm64VirtBoard) -> Node:
    cpus = Node("cpus").prop("#size-cells", cells(0)).prop("#address-cells", cells(1))
    cpu = cpus.child("cpu@0").prop("phandle", cells(PHANDLE_CPU)).prop("reg", cells(0))
    cpu.prop("enable-method", string("psci"))
    cpu.prop("compatible", string(board.cpu)).prop("device_type", string("cpu"))
    return cpus


def _timer(board: Arm64VirtBoard) -> Node:
    flags = (1 << GIC_CPU_MASK_SHIFT) | IRQ_LEVEL_HIGH     # CPU 0's interface, level-high
    interrupts = [value for ppi in board.timer_ppis for value in (GIC_PPI, ppi, flags)]
    timer = Node("timer").prop("interrupts", cells(*interrupts)).prop("always-on", EMPTY)
    return timer.prop("compatible", strings("arm,armv8-timer", "arm,armv7-timer"))


def _clock(board: Arm64VirtBoard) -> Node:
    """The fixed APB clock the PL011's driver asks for (its baud rate divisor base)."""
    clock = Node("apb-pclk").prop("phandle", cells(PHANDLE_CLOCK))
    clock.prop("clock-output-names", string("clk24mhz"))
    clock.prop("clock-frequency", cells(board.uart_clock_hz)).prop("#clock-cells", cells(0))
    return clock.prop("compatible", string("fixed-clock"))
