"""The arm64 board's devices built from its data, wired as the machine will wire them:
the interrupt numbers the device tree gives Linux are the ones its GIC hands out."""
from __future__ import annotations

from vmsim.boards.arm64_virt import BOARD, timer_interrupt_id
from vmsim.devices.gic import Gicv2
from vmsim.devices.pl011 import Pl011

IAR, EOIR = 0x0C, 0x10


def gic_as_linux_leaves_it(gic: Gicv2) -> None:
    d, c = gic.distributor, gic.cpu_interface
    for reg in range(0, gic.num_irqs, 4):
        d.write(0x400 + reg, 4, 0xA0A0_A0A0)
    for reg in range(0, gic.num_irqs, 32):
        d.write(0x100 + reg // 8, 4, 0xFFFF_FFFF)
    d.write(0, 4, 1)
    c.write(0x04, 4, 0xF0)
    c.write(0, 4, 1)


def test_uart_virtio_and_timer_interrupts_arrive_with_the_device_tree_ids() -> None:
    cpu_irq: list[bool] = []
    gic = Gicv2(BOARD.gic_interrupts, on_irq=cpu_irq.append)
    gic_as_linux_leaves_it(gic)
    assert gic.distributor.read(0x004, 4) == BOARD.gic_interrupts // 32 - 1

    uart = Pl011(gic.spi(BOARD.uart.irq), lambda data: None)
    uart.write(0x038, 4, 1 << 4)                          # IMSC: RX
    uart.push_input(b"x")
    uart.poll()
    assert cpu_irq == [True]
    assert gic.cpu_interface.read(IAR, 4) == 33           # SPI 1
    assert uart.read(0x000, 4) == ord("x")
    gic.cpu_interface.write(EOIR, 4, 33)
    assert cpu_irq == [True, False]

    slot = BOARD.virtio[5]
    gic.spi(slot.irq).set_level(True)
    assert gic.cpu_interface.read(IAR, 4) == 48 + 5       # SPI 16 + n
    gic.spi(slot.irq).set_level(False)
    gic.cpu_interface.write(EOIR, 4, 48 + 5)

    gic.line(timer_interrupt_id(BOARD)).set_level(True)
    assert gic.cpu_interface.read(IAR, 4) == 27           # the virtual timer's PPI
