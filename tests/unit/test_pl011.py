"""The PL011 UART through its MMIO registers, as Linux's amba-pl011 driver and the
pl011 earlycon use them."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmsim.devices.bus import LevelRecorder, MmioDevice
from vmsim.devices.pl011 import Pl011
from vmsim.devices.uart import Uart16550

DR, RSR, FR, IBRD, FBRD, LCR_H, CR, IFLS = 0x0, 0x4, 0x18, 0x24, 0x28, 0x2C, 0x30, 0x34
IMSC, RIS, MIS, ICR = 0x38, 0x3C, 0x40, 0x44
RXFE, RXFF, TXFE, TXFF, BUSY = 1 << 4, 1 << 6, 1 << 7, 1 << 5, 1 << 3
RXIM, TXIM, RTIM = 1 << 4, 1 << 5, 1 << 6
FEN, LBE = 1 << 4, 1 << 7


class Harness:
    def __init__(self) -> None:
        self.irq = LevelRecorder()
        self.out = bytearray()
        self.wakes = 0
        self.uart = Pl011(self.irq, self.out.extend, self)

    def wake(self) -> None:
        self.wakes += 1

    def rd(self, reg: int, size: int = 4) -> int:
        return self.uart.read(reg, size)

    def wr(self, reg: int, value: int, size: int = 4) -> None:
        self.uart.write(reg, size, value)

    def type(self, data: bytes) -> None:
        self.uart.push_input(data)
        self.uart.poll()

    def drain(self) -> bytes:
        """What the driver's RX path does: read DR until FR says RXFE."""
        got = bytearray()
        while not self.rd(FR) & RXFE:
            got.append(self.rd(DR) & 0xFF)
        return bytes(got)


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_is_an_mmio_device_with_the_16550s_host_interface(h: Harness) -> None:
    assert isinstance(h.uart, MmioDevice)
    for name in ("push_input", "poll"):
        assert callable(getattr(h.uart, name)) and callable(getattr(Uart16550, name))


def test_primecell_identification(h: Harness) -> None:
    """What the AMBA bus reads to bind the pl011 driver (periph ID 0x00141011)."""
    assert [h.rd(0xFE0 + 4 * i) for i in range(4)] == [0x11, 0x10, 0x14, 0x00]
    assert [h.rd(0xFF0 + 4 * i) for i in range(4)] == [0x0D, 0xF0, 0x05, 0xB1]


def test_reset_values(h: Harness) -> None:
    assert h.rd(FR) == TXFE | RXFE
    assert h.rd(CR) == 0x300 and h.rd(IFLS) == 0x12 and h.rd(IMSC) == 0


def test_earlycon_style_writes_reach_the_output(h: Harness) -> None:
    for ch in b"Booting Linux\n":
        assert not h.rd(FR) & (TXFF | BUSY)
        h.wr(DR, ch, size=1)                 # earlycon's writeb
    h.wr(DR, 0x100 | ord("!"), size=2)       # only the low byte is data
    assert bytes(h.out) == b"Booting Linux\n!"
    assert h.irq.history == []               # nothing unmasked


def test_tx_interrupt_after_each_byte_until_cleared(h: Harness) -> None:
    h.wr(ICR, 0x7FF)
    h.wr(IMSC, TXIM)
    assert not h.irq.level
    h.wr(DR, ord("a"))
    assert h.irq.level and h.rd(MIS) == TXIM
    h.wr(ICR, TXIM)
    assert not h.irq.level
    h.wr(IMSC, 0)
    h.wr(DR, ord("b"))
    assert h.rd(RIS) & TXIM and not h.irq.level


def test_rx_without_fifo_one_byte_at_a_time(h: Harness) -> None:
    h.wr(IMSC, RXIM | RTIM)
    h.type(b"xy")
    assert h.irq.level and h.rd(MIS) & RXIM
    assert h.rd(FR) & RXFF                   # the holding register is full
    assert h.drain() == b"xy"                # refilled from the host queue as it goes
    assert not h.irq.level and h.rd(RIS) & (RXIM | RTIM) == 0


def test_rx_fifo_trigger_level_and_timeout(h: Harness) -> None:
    h.wr(LCR_H, FEN | 0x60)                  # 8 bits, FIFOs on
    h.wr(IFLS, 2 << 3)                       # RX at half full: 8 bytes
    h.wr(IMSC, RXIM | RTIM)
    h.type(b"abc")
    assert h.rd(MIS) == RTIM                 # below the trigger: the timeout fires
    h.type(b"defghij")
    assert h.rd(MIS) & RXIM
    assert h.rd(DR) == ord("a") and h.rd(DR) == ord("b") and h.rd(DR) == ord("c")
    assert h.rd(MIS) == RTIM                 # seven wait, below the trigger
    assert h.drain() == b"defghij"
    assert not h.irq.level and h.irq.history == [True, False]


def test_input_beyond_the_fifo_waits_on_the_host_side(h: Harness) -> None:
    h.wr(LCR_H, FEN)
    h.type(bytes(range(40)))
    assert h.rd(FR) & RXFF
    assert h.drain() == bytes(range(40))
    assert h.wakes == 1


def test_icr_clears_what_it_names(h: Harness) -> None:
    h.wr(LCR_H, FEN)
    h.wr(IMSC, RXIM | RTIM)
    h.type(b"q")
    assert h.irq.level
    h.wr(ICR, RTIM)
    assert not h.irq.level and h.drain() == b"q"


def test_switching_fifo_mode_flushes_rx(h: Harness) -> None:
    h.wr(LCR_H, FEN)
    h.wr(IMSC, RTIM)
    h.type(b"zz")
    h.wr(LCR_H, 0)
    assert h.rd(FR) & RXFE and not h.irq.level


def test_loopback_sends_to_rx(h: Harness) -> None:
    h.wr(LCR_H, FEN)
    h.wr(CR, 0x301 | LBE)
    h.uart.push_input(b"host")
    h.wr(DR, ord("L"))
    h.uart.poll()
    assert h.out == b"" and h.drain() == b"L"
    h.wr(CR, 0x301)                          # leaving loopback reconnects the input
    assert h.drain() == b"host"


def test_line_settings_read_back(h: Harness) -> None:
    h.wr(IBRD, 0x1_0027)
    h.wr(FBRD, 0xFF)
    h.wr(LCR_H, 0x70)
    assert (h.rd(IBRD), h.rd(FBRD), h.rd(LCR_H)) == (0x27, 0x3F, 0x70)
    assert h.rd(RSR) == 0
    h.wr(RSR, 0)                             # ECR: clears the (always clear) errors


def test_push_input_from_another_thread(h: Harness) -> None:
    threads = [threading.Thread(target=h.uart.push_input, args=(bytes([65 + i]) * 50,))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    h.wr(LCR_H, FEN)
    h.uart.poll()
    got = h.drain()
    assert sorted(got) == sorted(b"".join(bytes([65 + i]) * 50 for i in range(4)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 0x1003), st.sampled_from([1, 2, 3, 4, 8]),
                          st.integers(0, 2**64 - 1)), max_size=50))
def test_any_access_is_safe(steps: list[tuple[bool, int, int, int]]) -> None:
    h = Harness()
    h.uart.push_input(b"input")
    for is_write, offset, size, value in steps:
        if is_write:
            h.uart.write(offset, size, value)
        else:
            assert 0 <= h.uart.read(offset, size) < 1 << 32
        h.uart.poll()
        assert h.irq.level == bool(h.rd(MIS))
