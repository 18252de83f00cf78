"""The platform-level interrupt controller (SiFive PLIC, as on QEMU `virt`).

Devices raise level-triggered lines; each context (a hart's M or S mode) sees the
highest-priority pending source it has enabled above its threshold, claims it, and
completes it. The machine only learns about a context's output changing, through
`on_context_irq`, and maps context 1 (the hart's S mode) to SEIP.

Gateway semantics follow the level-triggered SiFive gateway: a claimed source cannot be
pending again until its handler completes it; at completion a line that is still high
pends again. A line that drops before being claimed stops pending (as QEMU does), so a
driver that acknowledged its device by polling does not take a stale interrupt.
"""
from __future__ import annotations

from typing import Callable

from vmsim.devices.bus import ControllerInput, IrqLine

WINDOW_SIZE = 0x60_0000

PRIORITY_BASE = 0x0000
PENDING_BASE = 0x1000
ENABLE_BASE = 0x2000
ENABLE_STRIDE = 0x80
CONTEXT_BASE = 0x20_0000
CONTEXT_STRIDE = 0x1000
CLAIM_OFFSET = 4

MAX_CONTEXTS = (WINDOW_SIZE - CONTEXT_BASE) // CONTEXT_STRIDE

PRIORITY_MASK = 0x7  # seven priority levels, like QEMU virt

ContextIrqCallback = Callable[[int, bool], None]


def _ignore_context_irq(_context: int, _level: bool) -> None:
    pass


class Plic:
    """An MmioDevice for the PLIC register window (0x600000 bytes)."""

    def __init__(self, num_sources: int = 95, num_contexts: int = 2,
                 on_context_irq: ContextIrqCallback = _ignore_context_irq) -> None:
        if not 1 <= num_sources <= 1023:
            raise ValueError("a PLIC has 1..1023 interrupt sources")
        if not 1 <= num_contexts <= MAX_CONTEXTS:
            raise ValueError(f"this PLIC window has room for 1..{MAX_CONTEXTS} contexts")
        self.num_sources = num_sources
        self.num_contexts = num_contexts
        self._on_context_irq = on_context_irq
        # Bit i of these masks stands for source i; bit 0 (source 0, "no interrupt") is never set.
        self._valid_mask = ((1 << (num_sources + 1)) - 1) & ~1
        self._priority = [0] * (num_sources + 1)
        self._level = 0
        self._pending = 0
        self._claimed = 0
        self._enable = [0] * num_contexts
        self._threshold = [0] * num_contexts
        self._output = [False] * num_contexts

    # -- device side -------------------------------------------------------------------

    def line(self, source: int) -> IrqLine:
        """The level-triggered input `source` (1..num_sources)."""
        if not 1 <= source <= self.num_sources:
            raise ValueError(f"PLIC source {source} is outside 1..{self.num_sources}")
        return ControllerInput(self.set_source_level, source)

    def set_source_level(self, source: int, level: bool) -> None:
        """What a source's IrqLine does; `source` must be valid (see `line`)."""
        bit = 1 << source
        if level:
            self._level |= bit
            if not self._claimed & bit:
                self._pending |= bit
        else:
            self._level &= ~bit
            self._pending &= ~bit
        self._update_outputs()

    # -- queries (also used by tests and the machine's trace) --------------------------

    def pending(self, source: int) -> bool:
        return bool(self._pending >> source & 1)

    def context_output(self, context: int) -> bool:
        return self._output[context]

    # -- MMIO --------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size != 4 or offset % 4:
            return 0
        if offset < PENDING_BASE:
            source = offset // 4
            return self._priority[source] if source <= self.num_sources else 0
        if offset < ENABLE_BASE:
            return self._word(self._pending, offset - PENDING_BASE)
        if offset < CONTEXT_BASE:
            context, word_offset = divmod(offset - ENABLE_BASE, ENABLE_STRIDE)
            if context < self.num_contexts:
                return self._word(self._enable[context], word_offset)
            return 0
        context, reg = divmod(offset - CONTEXT_BASE, CONTEXT_STRIDE)
        if context >= self.num_contexts:
            return 0
        if reg == 0:
            return self._threshold[context]
        if reg == CLAIM_OFFSET:
            return self._claim(context)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset % 4:
            return
        value &= 0xFFFF_FFFF
        if offset < PENDING_BASE:
            source = offset // 4
            if 1 <= source <= self.num_sources:
                self._priority[source] = value & PRIORITY_MASK
                self._update_outputs()
            return
        if offset < ENABLE_BASE:
            return  # pending bits are read-only
        if offset < CONTEXT_BASE:
            context, word_offset = divmod(offset - ENABLE_BASE, ENABLE_STRIDE)
            if context < self.num_contexts:
                self._enable[context] = self._set_word(self._enable[context], word_offset, value)
                self._update_outputs()
            return
        context, reg = divmod(offset - CONTEXT_BASE, CONTEXT_STRIDE)
        if context >= self.num_contexts:
            return
        if reg == 0:
            self._threshold[context] = value & PRIORITY_MASK
            self._update_outputs()
        elif reg == CLAIM_OFFSET:
            self._complete(context, value)

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _word(bits: int, byte_offset: int) -> int:
        return bits >> (8 * byte_offset) & 0xFFFF_FFFF

    def _set_word(self, bits: int, byte_offset: int, value: int) -> int:
        shift = 8 * byte_offset
        bits = (bits & ~(0xFFFF_FFFF << shift)) | (value << shift)
        return bits & self._valid_mask

    def _best_source(self, context: int) -> int:
        """Highest-priority claimable source above the threshold; ties go to the lowest ID."""
        candidates = self._pending & ~self._claimed & self._enable[context]
        best, best_priority = 0, self._threshold[context]
        while candidates:
            low_bit = candidates & -candidates
            source = low_bit.bit_length() - 1
            if self._priority[source] > best_priority:
                best, best_priority = source, self._priority[source]
            candidates ^= low_bit
        return best

    def _claim(self, context: int) -> int:
        source = self._best_source(context)
        if source:
            bit = 1 << source
            self._pending &= ~bit
            self._claimed |= bit
            self._update_outputs()
        return source

    def _complete(self, context: int, source: int) -> None:
        # Like the SiFive PLIC, a completion for a source the context has not enabled is ignored.
        if not 1 <= source <= self.num_sources:
            return
        bit = 1 << source
        if not self._enable[context] & bit or not self._claimed & bit:
            return
        self._claimed &= ~bit
        if self._level & bit:
            self._pending |= bit
        self._update_outputs()

    def _update_outputs(self) -> None:
        # Runs on every line change: a context with nothing claimable enabled (the
        # usual case for all but one) is settled without the priority search.
        claimable = self._pending & ~self._claimed
        output = self._output
        for context in range(self.num_contexts):
            level = bool(claimable & self._enable[context]) and self._best_source(context) != 0
            if level != output[context]:
                output[context] = level
                self._on_context_irq(context, level)
