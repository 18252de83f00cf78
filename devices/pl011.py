"""An Arm PrimeCell PL011 UART, the console of QEMU's arm `virt` (`console=ttyAMA0`,
`earlycon=pl011,0x9000000`).

Linux finds it on the AMBA bus by its PrimeCell ID registers and drives it with
drivers/tty/serial/amba-pl011.c. The host side is the one every UART model shares
(`HostSerialPort`: `push_input` from any thread, `poll` on the CPU thread, `output`
for what the guest sends), so the machine can use it where it would use a 16550.

Transmission is instant: a DR write goes straight to `output`, so the TX FIFO is
always empty (FR.TXFE set, TXFF and BUSY clear) and the TX interrupt is raised after
each byte, as the FIFO drains past its trigger level (QEMU does the same). Reception
follows the 16-entry FIFO and IFLS trigger level; with no timing model, the receive
timeout interrupt is raised as soon as fewer bytes than the trigger level wait, which
a real PL011 does 32 bit periods later. There are no line errors, so RSR and the
error bits of DR stay 0. In loopback (CR.LBE) sent bytes go to the RX FIFO instead,
and are dropped when it is full. Any offset or size is accepted: an unknown register
reads as 0 and ignores writes.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from vmsim import log
from vmsim.devices.bus import IrqLine, NullWaker, Waker
from vmsim.devices.serial import HostSerialPort

SOURCE = "pl011"

# Registers.
DR, RSR_ECR, FR, ILPR = 0x000, 0x004, 0x018, 0x020
IBRD, FBRD, LCR_H, CR, IFLS = 0x024, 0x028, 0x02C, 0x030, 0x034
IMSC, RIS, MIS, ICR, DMACR = 0x038, 0x03C, 0x040, 0x044, 0x048
ID_BASE = 0xFE0
# Peripheral ID0-3 (part 0x011, designer ARM, revision 1) and the PrimeCell ID.
ID_BYTES = (0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1)

FR_BUSY, FR_RXFE, FR_TXFF, FR_RXFF, FR_TXFE = 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
LCR_H_FEN = 1 << 4
CR_LBE = 1 << 7
CR_RESET = 0x300                 # TXE | RXE
IFLS_RESET = 0x12                # both FIFOs at half full

INT_RX, INT_TX, INT_RT = 1 << 4, 1 << 5, 1 << 6
INT_MASK = 0x7FF                 # modem, RX, TX, RT and the four error interrupts

FIFO_DEPTH = 16
RX_TRIGGER_EIGHTHS = (1, 2, 4, 6, 7)   # IFLS RXIFLSEL: 1/8, 1/4, 1/2, 3/4, 7/8 full

_PLAIN_REGISTERS = {ILPR: 0xFF, IBRD: 0xFFFF, FBRD: 0x3F, IFLS: 0x3F, DMACR: 0x7}


class Pl011(HostSerialPort):
    """An MmioDevice for a PL011 in a 0x1000 window."""

    def __init__(self, irq: IrqLine, output: Callable[[bytes], None],
                 waker: Waker = NullWaker()) -> None:
        super().__init__(output, waker)
        self._irq = irq
        self._rx: deque[int] = deque()
        self._registers = {ILPR: 0, IBRD: 0, FBRD: 0, IFLS: IFLS_RESET, DMACR: 0}
        self._lcr_h = 0
        self._cr = CR_RESET
        self._imsc = 0
        self._ris = INT_TX             # the TX FIFO starts empty, below its trigger level
        self._irq_level = False

    # -- host side (push_input: HostSerialPort) ---------------------------------------

    def poll(self) -> None:
        """CPU thread: move queued host input into the RX FIFO and update the interrupt."""
        self._refill_rx()
        self._update_irq()

    # -- MMIO ------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4) or offset & 3:
            log.guest_error(SOURCE, f"{size}-byte read at {offset:#x}")
            return 0
        return self._read(offset) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset & 3:
            log.guest_error(SOURCE, f"{size}-byte write at {offset:#x}")
            return
        value &= (1 << (8 * size)) - 1
        if offset == DR:
            self._transmit(value & 0xFF)
        elif offset == LCR_H:
            if (value ^ self._lcr_h) & LCR_H_FEN:
                self._rx.clear()                 # switching FIFO mode flushes it
            self._lcr_h = value & 0xFF
            self._refill_rx()
            self._rx_level_changed()
        elif offset == CR:
            self._cr = value & 0xFF87             # bits 6:3 are reserved
            self._refill_rx()
        elif offset == IMSC:
            self._imsc = value & INT_MASK
        elif offset == ICR:
            self._ris &= ~value
        elif offset in _PLAIN_REGISTERS:
            self._registers[offset] = value & _PLAIN_REGISTERS[offset]
        # RSR_ECR: a write clears the (always clear) error flags.
        self._update_irq()

    # -- registers -------------------------------------------------------------------

    def _read(self, offset: int) -> int:
        if offset == DR:
            return self._read_dr()
        if offset == FR:
            return (FR_TXFE | (FR_RXFE if not self._rx else 0)
                    | (FR_RXFF if len(self._rx) >= self._rx_capacity else 0))
        if offset == RIS:
            return self._ris
        if offset == MIS:
            return self._ris & self._imsc
        if offset == IMSC:
            return self._imsc
        if offset == LCR_H:
            return self._lcr_h
        if offset == CR:
            return self._cr
        if offset in _PLAIN_REGISTERS:
            return self._registers[offset]
        if ID_BASE <= offset < ID_BASE + 4 * len(ID_BYTES):
            return ID_BYTES[(offset - ID_BASE) // 4]
        return 0                                 # RSR, ICR (write-only), reserved

    @property
    def _rx_capacity(self) -> int:
        return FIFO_DEPTH if self._lcr_h & LCR_H_FEN else 1

    @property
    def _rx_trigger(self) -> int:
        if not self._lcr_h & LCR_H_FEN:
            return 1
        select = self._registers[IFLS] >> 3 & 7
        eighths = RX_TRIGGER_EIGHTHS[min(select, len(RX_TRIGGER_EIGHTHS) - 1)]
        return FIFO_DEPTH * eighths // 8

    def _read_dr(self) -> int:
        value = self._rx.popleft() if self._rx else 0
        self._refill_rx()
        self._rx_level_changed()
        self._update_irq()
        return value

    def _transmit(self, value: int) -> None:
        if self._cr & CR_LBE:
            if len(self._rx) < self._rx_capacity:
                self._rx.append(value)
                self._rx_arrived()
        else:
            self._output(bytes((value,)))
        self._ris |= INT_TX                      # the byte is gone: the FIFO is empty again

    # -- receive interrupts ----------------------------------------------------------

    def _refill_rx(self) -> None:
        if self._cr & CR_LBE:
            return                               # the serial input is disconnected in loopback
        room = self._rx_capacity - len(self._rx)
        if room > 0:
            data = self._take_input(room)
            if data:
                self._rx.extend(data)
                self._rx_arrived()

    def _rx_arrived(self) -> None:
        if len(self._rx) >= self._rx_trigger:
            self._ris |= INT_RX
        self._rx_level_changed()

    def _rx_level_changed(self) -> None:
        """RX clears below the trigger level; whatever waits below it times out (RT)."""
        count = len(self._rx)
        if count < self._rx_trigger:
            self._ris &= ~INT_RX
        if count == 0:
            self._ris &= ~INT_RT
        elif count < self._rx_trigger:
            self._ris |= INT_RT

    def _update_irq(self) -> None:
        level = bool(self._ris & self._imsc)
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)
