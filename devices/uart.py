"""A 16550A UART (reg-shift 0), the console Linux's 8250 driver finds on QEMU `virt`.

Transmission is instant: a THR write goes straight to `output`, so THR is always empty
and LSR always reports THRE and TEMT. Reception is fed from the host: `push_input` may
be called from any thread (a stdin reader) and only queues bytes and wakes the machine;
`poll` runs on the CPU thread and moves them into the 16-byte RX FIFO the guest reads.

Interrupt identification follows the 16550A priorities. With no timing model, the
character-timeout interrupt is reported as soon as the FIFO holds fewer bytes than the
trigger level, which is what a real UART does four character times later.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from vmsim.devices.bus import IrqLine, NullWaker, Waker
from vmsim.devices.serial import HostSerialPort


# Register offsets (reg-shift 0).
RBR_THR_DLL = 0
IER_DLM = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

IER_RDA = 0x01      # received data available (and character timeout)
IER_THRE = 0x02     # transmitter holding register empty
IER_MASK = 0x0F

IIR_NO_INT = 0x01
IIR_THRE = 0x02
IIR_RDA = 0x04
IIR_TIMEOUT = 0x0C
IIR_FIFO_ENABLED = 0xC0

FCR_FIFO_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
RX_TRIGGER_LEVELS = (1, 4, 8, 14)  # indexed by FCR bits 7:6

LCR_DLAB = 0x80

MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
MCR_MASK = 0x1F

LSR_DR = 0x01
LSR_THRE = 0x20
LSR_TEMT = 0x40

MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
MSR_CONNECTED = MSR_DCD | MSR_DSR | MSR_CTS  # a terminal is always attached

FIFO_DEPTH = 16


class Uart16550(HostSerialPort):
    """An MmioDevice for a 16550A with registers at offsets 0..7 of a 0x1000 window."""

    def __init__(self, irq: IrqLine, output: Callable[[bytes], None],
                 waker: Waker = NullWaker()) -> None:
        super().__init__(output, waker)
        self._irq = irq
        self._rx: deque[int] = deque()
        self._ier = 0
        self._lcr = 0
        self._mcr = 0
        self._scr = 0
        self._divisor = 0
        self._fifo_enabled = False
        self._rx_trigger = 1
        self._thre_pending = False
        self._irq_level = False

    # -- host side (push_input: HostSerialPort) -------------------------------------------

    def poll(self) -> None:
        """CPU thread: move queued host input into the RX FIFO and update the interrupt."""
        self._refill_rx()
        self._update_irq()

    # -- MMIO ------------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset == RBR_THR_DLL:
            return self._divisor & 0xFF if self._dlab else self._read_rbr()
        if offset == IER_DLM:
            return self._divisor >> 8 if self._dlab else self._ier
        if offset == IIR_FCR:
            return self._read_iir()
        if offset == LCR:
            return self._lcr
        if offset == MCR:
            return self._mcr
        if offset == LSR:
            return self._lsr()
        if offset == MSR:
            return self._msr()
        if offset == SCR:
            return self._scr
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == RBR_THR_DLL:
            if self._dlab:
                self._divisor = (self._divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif offset == IER_DLM:
            if self._dlab:
                self._divisor = (self._divisor & 0x00FF) | value << 8
            else:
                self._write_ier(value)
        elif offset == IIR_FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self._lcr = value
        elif offset == MCR:
            self._mcr = value & MCR_MASK
            self._refill_rx()  # leaving loopback reconnects the serial input
        elif offset == SCR:
            self._scr = value
        self._update_irq()

    # -- registers -------------------------------------------------------------------------

    @property
    def _dlab(self) -> bool:
        return bool(self._lcr & LCR_DLAB)

    @property
    def _loopback(self) -> bool:
        return bool(self._mcr & MCR_LOOP)

    @property
    def _rx_capacity(self) -> int:
        return FIFO_DEPTH if self._fifo_enabled else 1

    def _read_rbr(self) -> int:
        value = self._rx.popleft() if self._rx else 0
        self._refill_rx()
        self._update_irq()
        return value

    def _write_thr(self, value: int) -> None:
        if self._loopback:
            if len(self._rx) < self._rx_capacity:
                self._rx.append(value)
        else:
            self._output(bytes((value,)))
        # The byte leaves at once, so THR is empty again and THRE re-arms.
        self._thre_pending = True

    def _write_ier(self, value: int) -> None:
        enabling_thre = value & IER_THRE and not self._ier & IER_THRE
        self._ier = value & IER_MASK
        if enabling_thre:
            # THR is always empty: enabling THRE raises it right away, as on real parts.
            self._thre_pending = True

    def _write_fcr(self, value: int) -> None:
        enable = bool(value & FCR_FIFO_ENABLE)
        if enable != self._fifo_enabled or value & FCR_CLEAR_RX:
            self._rx.clear()
        self._fifo_enabled = enable
        self._rx_trigger = RX_TRIGGER_LEVELS[value >> 6] if enable else 1
        self._refill_rx()

    def _interrupt_id(self) -> int:
        """The highest-priority pending interrupt, as IIR bits 3:0."""
        if self._ier & IER_RDA and self._rx:
            return IIR_RDA if len(self._rx) >= self._rx_trigger else IIR_TIMEOUT
        if self._ier & IER_THRE and self._thre_pending:
            return IIR_THRE
        return IIR_NO_INT

    def _read_iir(self) -> int:
        interrupt = self._interrupt_id()
        if interrupt == IIR_THRE:
            self._thre_pending = False  # reading IIR acknowledges THRE
            self._update_irq()
        return interrupt | (IIR_FIFO_ENABLED if self._fifo_enabled else 0)

    def _lsr(self) -> int:
        return LSR_THRE | LSR_TEMT | (LSR_DR if self._rx else 0)

    def _msr(self) -> int:
        if not self._loopback:
            return MSR_CONNECTED
        # In loopback the modem outputs feed the modem inputs.
        mcr = self._mcr
        return ((MSR_CTS if mcr & MCR_RTS else 0) | (MSR_DSR if mcr & MCR_DTR else 0)
                | (MSR_RI if mcr & MCR_OUT1 else 0) | (MSR_DCD if mcr & MCR_OUT2 else 0))

    # -- plumbing --------------------------------------------------------------------------

    def _refill_rx(self) -> None:
        if self._loopback:
            return  # the serial input is disconnected in loopback
        room = self._rx_capacity - len(self._rx)
        if room > 0:
            self._rx.extend(self._take_input(room))

    def _update_irq(self) -> None:
        level = self._interrupt_id() != IIR_NO_INT
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)
