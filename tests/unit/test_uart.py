"""The 16550A UART through its MMIO registers, as Linux's 8250 driver uses them."""
from __future__ import annotations

import threading

import pytest

from vmsim.devices.bus import LevelRecorder, MmioDevice
from vmsim.devices.uart import Uart16550

RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7

IIR_NONE, IIR_THRE, IIR_RDA, IIR_TIMEOUT = 0x01, 0x02, 0x04, 0x0C


class CountingWaker:
    def __init__(self) -> None:
        self.count = 0

    def wake(self) -> None:
        self.count += 1


class Harness:
    def __init__(self) -> None:
        self.irq = LevelRecorder()
        self.out = bytearray()
        self.waker = CountingWaker()
        self.uart = Uart16550(self.irq, self.out.extend, self.waker)

    def rd(self, reg: int) -> int:
        return self.uart.read(reg, 1)

    def wr(self, reg: int, value: int) -> None:
        self.uart.write(reg, 1, value)

    def type(self, data: bytes) -> None:
        self.uart.push_input(data)
        self.uart.poll()


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_is_an_mmio_device(h: Harness) -> None:
    assert isinstance(h.uart, MmioDevice)


def test_thr_writes_reach_the_output_at_once(h: Harness) -> None:
    for ch in b"hi\n":
        assert h.rd(LSR) & 0x60 == 0x60  # THRE and TEMT: always ready
        h.wr(THR, ch)
    assert bytes(h.out) == b"hi\n"
    assert h.irq.history == []  # no interrupt was enabled


def test_input_is_held_until_poll_then_sets_dr(h: Harness) -> None:
    h.uart.push_input(b"a")
    assert h.waker.count == 1
    assert h.rd(LSR) & 0x01 == 0
    h.uart.poll()
    assert h.rd(LSR) & 0x01
    assert h.rd(RBR) == ord("a")
    assert h.rd(LSR) & 0x01 == 0
    assert h.rd(RBR) == 0  # empty reads are harmless


def test_without_fifo_one_byte_at_a_time_and_the_rest_keeps(h: Harness) -> None:
    h.type(b"xyz")
    assert bytes(h.rd(RBR) for _ in range(3)) == b"xyz"
    assert h.rd(LSR) & 0x01 == 0


def test_fifo_holds_sixteen_and_refills_as_the_guest_reads(h: Harness) -> None:
    h.wr(FCR, 0x07)
    data = bytes(range(0x40, 0x40 + 40))
    h.type(data)
    received = bytearray()
    while h.rd(LSR) & 0x01:
        received.append(h.rd(RBR))
    assert bytes(received) == data


def test_fcr_clear_rx_drops_the_fifo(h: Harness) -> None:
    h.wr(FCR, 0x01)
    h.type(b"abc")
    h.wr(FCR, 0x03)
    assert h.rd(LSR) & 0x01 == 0


def test_iir_reports_fifo_enabled_bits(h: Harness) -> None:
    assert h.rd(IIR) == IIR_NONE
    h.wr(FCR, 0x01)
    assert h.rd(IIR) == 0xC0 | IIR_NONE


def test_rda_interrupt_raises_and_clears_with_reads(h: Harness) -> None:
    h.wr(IER, 0x01)
    assert not h.irq.level
    h.type(b"q")
    assert h.irq.level
    assert h.rd(IIR) & 0x0F == IIR_RDA
    assert h.rd(RBR) == ord("q")
    assert not h.irq.level
    assert h.rd(IIR) & 0x0F == IIR_NONE
    assert h.irq.history == [True, False]


def test_below_trigger_level_reports_character_timeout(h: Harness) -> None:
    h.wr(FCR, 0x81)  # FIFO on, trigger level 8
    h.wr(IER, 0x01)
    h.type(b"abc")
    assert h.irq.level
    assert h.rd(IIR) == 0xC0 | IIR_TIMEOUT
    h.type(b"defgh")
    assert h.rd(IIR) == 0xC0 | IIR_RDA


def test_thre_interrupt_on_enable_is_acknowledged_by_reading_iir(h: Harness) -> None:
    h.wr(IER, 0x02)
    assert h.irq.level
    assert h.rd(IIR) & 0x0F == IIR_THRE
    assert not h.irq.level
    assert h.rd(IIR) & 0x0F == IIR_NONE
    h.wr(THR, ord("x"))  # the byte leaves at once: THR empty again
    assert h.irq.level
    h.wr(IER, 0x00)
    assert not h.irq.level
    h.wr(IER, 0x02)  # the 8250 driver's THRE test: re-enabling re-raises it
    assert h.rd(IIR) & 0x0F == IIR_THRE


def test_rda_outranks_thre(h: Harness) -> None:
    h.wr(IER, 0x03)
    h.type(b"z")
    assert h.rd(IIR) & 0x0F == IIR_RDA
    h.rd(RBR)
    assert h.rd(IIR) & 0x0F == IIR_THRE


def test_ier_reads_back_its_four_bits(h: Harness) -> None:
    h.wr(IER, 0xFF)
    assert h.rd(IER) == 0x0F


def test_dlab_exposes_the_divisor_latch(h: Harness) -> None:
    h.wr(IER, 0x01)
    h.wr(LCR, 0x83)
    h.wr(DLL, 0x01)
    h.wr(DLM, 0x02)
    assert (h.rd(DLL), h.rd(DLM)) == (0x01, 0x02)
    assert h.out == b""  # divisor writes are not transmitted
    h.wr(LCR, 0x03)
    assert h.rd(LCR) == 0x03
    assert h.rd(IER) == 0x01  # IER was untouched by the DLM write
    h.wr(LCR, 0x80)
    assert (h.rd(DLL), h.rd(DLM)) == (0x01, 0x02)


def test_scratch_register(h: Harness) -> None:
    h.wr(SCR, 0xA5)
    assert h.rd(SCR) == 0xA5


def test_msr_reports_a_connected_line(h: Harness) -> None:
    assert h.rd(MSR) & 0xF0 == 0xB0  # DCD, DSR, CTS


def test_loopback_returns_transmitted_bytes_and_mirrors_modem_lines(h: Harness) -> None:
    h.wr(MCR, 0x10 | 0x0A)  # LOOP | OUT2 | RTS: the 8250 autoconfig check
    assert h.rd(MCR) == 0x1A
    assert h.rd(MSR) & 0xF0 == 0x90  # DCD | CTS
    h.wr(THR, 0x55)
    assert h.out == b""
    assert h.rd(RBR) == 0x55
    h.wr(MCR, 0x00)
    assert h.rd(MSR) & 0xF0 == 0xB0


def test_input_waits_during_loopback_and_arrives_after_it(h: Harness) -> None:
    h.wr(MCR, 0x10)
    h.type(b"k")
    assert h.rd(LSR) & 0x01 == 0
    h.wr(MCR, 0x00)
    assert h.rd(RBR) == ord("k")


def test_push_input_from_another_thread(h: Harness) -> None:
    h.wr(FCR, 0x01)
    chunks = [bytes([65 + i % 26]) * 7 for i in range(50)]
    writer = threading.Thread(target=lambda: [h.uart.push_input(c) for c in chunks])
    writer.start()
    writer.join()
    h.uart.poll()
    received = bytearray()
    while h.rd(LSR) & 0x01:
        received.append(h.rd(RBR))
    assert bytes(received) == b"".join(chunks)
    assert h.waker.count == 50


def test_unknown_offsets_and_sizes_never_raise(h: Harness) -> None:
    for offset in (8, 0xFF, 0xFFF, 0x1000):
        h.wr(offset, 0xFF)
        assert h.rd(offset) == 0
    h.uart.write(THR, 4, 0x1234_5641)
    assert h.out == b"A"  # only the low byte is a character
