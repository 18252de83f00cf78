"""A GICv2 interrupt controller for one CPU: the distributor and the CPU interface.

arm64 Linux on the `virt` board drives it through MMIO only (drivers/irqchip/irq-gic.c):
its handler reads GICC_IAR until it gets a spurious ID (1020 and up) and writes each ID
it got to GICC_EOIR. Devices drive their inputs (PPIs 16-31, SPIs from 32) as levels;
the machine learns about the CPU's IRQ and FIQ lines changing through `on_irq` and
`on_fiq`, as it learns about a PLIC context from `Plic.on_context_irq`.

The model is the GICv2 architecture without the Security Extensions, as QEMU `virt`
has it when the CPU has no EL3: one CPU interface, so GICD_ITARGETSR is RAZ/WI
(uniprocessor), SGIs are always enabled and edge-triggered, an interrupt that is
active (or active and pending) is not signalled again until it is deactivated, and a
level-sensitive interrupt stays pending while its input is high. Priorities have all
eight bits. Nothing the guest writes can raise: unknown registers read as zero and
ignore writes, and odd sizes or alignments are logged once as guest errors.
"""
from __future__ import annotations

from typing import Callable

from vmsim import log
from vmsim.devices.bus import ControllerInput, IrqLine, RegisterMirror

SOURCE = "gic"

# Window sizes the registers need (the board may map a larger window).
DISTRIBUTOR_SIZE = 0x1000
CPU_INTERFACE_SIZE = 0x2000     # GICC_DIR is at 0x1000

SGI_COUNT = 16
SPI_BASE = 32
MAX_INTERRUPTS = 1020           # IDs 1020-1023 are special
SPURIOUS = 1023
GROUP1_SPURIOUS = 1022          # group 1 is highest but GICC_IAR may not acknowledge it
IDLE_PRIORITY = 0x100           # the running priority with nothing active
SGI_MASK = (1 << SGI_COUNT) - 1

# Distributor registers.
GICD_CTLR, GICD_TYPER, GICD_IIDR = 0x000, 0x004, 0x008
GICD_IGROUPR = 0x080
GICD_ISENABLER, GICD_ICENABLER = 0x100, 0x180
GICD_ISPENDR, GICD_ICPENDR = 0x200, 0x280
GICD_ISACTIVER, GICD_ICACTIVER = 0x300, 0x380
GICD_IPRIORITYR, GICD_ITARGETSR, GICD_ICFGR = 0x400, 0x800, 0xC00
GICD_SGIR, GICD_CPENDSGIR, GICD_SPENDSGIR = 0xF00, 0xF10, 0xF20
GICD_ID_BASE = 0xFD0
# Peripheral ID4-7, ID0-3 and component ID0-3 of a GICv2 (ICPIDR2 = 0x2B: ArchRev 2).
GICD_ID_BYTES = (0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1)
GICD_IIDR_VALUE = 0x0000_043B   # implementer ARM
CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1 = 0x1, 0x2

# CPU interface registers.
GICC_CTLR, GICC_PMR, GICC_BPR, GICC_IAR, GICC_EOIR = 0x00, 0x04, 0x08, 0x0C, 0x10
GICC_RPR, GICC_HPPIR, GICC_ABPR, GICC_AIAR, GICC_AEOIR = 0x14, 0x18, 0x1C, 0x20, 0x24
GICC_AHPPIR, GICC_IIDR, GICC_DIR = 0x28, 0xFC, 0x1000
GICC_IIDR_VALUE = 0x0002_043B   # architecture version 2, implementer ARM
GICC_CTLR_ACK_CTL, GICC_CTLR_FIQ_EN, GICC_CTLR_CBPR = 1 << 2, 1 << 3, 1 << 4
GICC_CTLR_EOI_MODE = 1 << 9
GICC_CTLR_MASK = 0x3FF          # enables, AckCtl, FIQEn, CBPR, bypass disables, EOImode
MIN_BPR, MIN_ABPR = 0, 1

# GICD_SGIR target list filters.
SGIR_TO_LIST, SGIR_TO_OTHERS, SGIR_TO_SELF = 0, 1, 2

BOTH_GROUPS = 0b11
GROUP1_ONLY = 0b10

LevelCallback = Callable[[bool], None]


def _ignore(_level: bool) -> None:
    pass


class Gicv2:
    """The shared state of both register windows; map `distributor` and
    `cpu_interface` (each an MmioDevice) at the board's addresses."""

    def __init__(self, num_irqs: int = 288, on_irq: LevelCallback = _ignore,
                 on_fiq: LevelCallback = _ignore) -> None:
        if num_irqs % 32 or not SPI_BASE <= num_irqs <= MAX_INTERRUPTS:
            raise ValueError("a GICv2 has a multiple of 32 interrupts, 32..992")
        self.num_irqs = num_irqs
        self._on_irq = on_irq
        self._on_fiq = on_fiq
        self._valid = (1 << num_irqs) - 1
        # Bit i of each mask is interrupt ID i.
        self._enabled = SGI_MASK                 # SGIs are always enabled
        self._group = 0
        self._latched = 0                        # edges seen and software-set pending
        self._input = 0                          # the levels of the input lines
        self._edge = SGI_MASK                    # edge-triggered (ICFGR); SGIs always
        self._active = 0
        self._priority = bytearray(num_irqs)
        self._dist_ctlr = 0
        self._cpu_ctlr = 0
        self._pmr = 0
        self._bpr = MIN_BPR
        self._abpr = MIN_ABPR
        # Acknowledged interrupts whose priority is not dropped yet: (ID, group priority).
        # One entry per ID at most (an active interrupt is never acknowledged again).
        self._running: list[tuple[int, int]] = []
        self.irq_level = False
        self.fiq_level = False
        # The register mirror of the CPU interface (see _update): GICC_IAR is published
        # while it reads as SPURIOUS, or once while acknowledging the interrupt it
        # hands out would signal nothing, and GICC_EOIR of the last acknowledged
        # interrupt is offered while ending it would signal nothing.
        self._mirror: RegisterMirror | None = None
        self._iar_published: int | None = None    # SPURIOUS, the ID published once, None
        self._iar_once: int | None = None
        self._eoi_offer: int | None = None
        self.distributor = _Distributor(self)
        self.cpu_interface = _CpuInterface(self)

    # -- device side -----------------------------------------------------------------

    def line(self, intid: int) -> IrqLine:
        """The input of a PPI (16-31) or an SPI (32 and up), by interrupt ID."""
        if not SGI_COUNT <= intid < self.num_irqs:
            raise ValueError(f"GIC input {intid} is outside {SGI_COUNT}..{self.num_irqs - 1}")
        return ControllerInput(self.set_level, intid)

    def spi(self, number: int) -> IrqLine:
        """SPI `number` (interrupt ID 32 + number), as a device tree names it."""
        return self.line(SPI_BASE + number)

    def set_level(self, intid: int, level: bool) -> None:
        """What an input's IrqLine does; `intid` must be valid (see `line`). A level
        the input already has changes nothing: the machine re-drives its timer lines
        after every run."""
        if self._eoi_offer is not None or self._iar_once is not None:   # (settle's test)
            self.settle()
        bit = 1 << intid
        if bool(self._input & bit) == level:
            return
        if level:
            if self._edge & bit:
                self._latched |= bit             # a rising edge
            self._input |= bit
        else:
            self._input &= ~bit
        self._update()

    # -- queries (tests, the machine, a debugger) -------------------------------------

    def pending(self, intid: int) -> bool:
        self.settle()
        return bool(self._pending() >> intid & 1)

    def active(self, intid: int) -> bool:
        self.settle()
        return bool(self._active >> intid & 1)

    def settle(self) -> None:
        """Apply the GICC_IAR read the mirror answered, or the GICC_EOIR it took, since
        the model was last called, if any (see _update; both are never offered at
        once). Every entry to the model calls this first."""
        if self._iar_once is not None and self._mirror is not None:
            if self._mirror.taken_once(GICC_IAR):
                self._iar_once = self._iar_published = None   # the mirror withdrew it
                self._acknowledge(BOTH_GROUPS)                 # the ID it answered
        if self._eoi_offer is not None and self._mirror is not None:
            value = self._mirror.take_posted(GICC_EOIR)
            if value is not None:
                self._eoi_offer = None            # the mirror withdrew it when it took it
                self._end_of_interrupt(value, BOTH_GROUPS)

    # -- state shared by both windows -------------------------------------------------

    def _pending(self) -> int:
        return self._latched | (self._input & ~self._edge)

    def _groups_enabled(self) -> int:
        return self._dist_ctlr & self._cpu_ctlr & BOTH_GROUPS

    def _group_priority(self, intid: int) -> int:
        """The part of the priority that decides preemption (the binary point)."""
        if self._group >> intid & 1 and not self._cpu_ctlr & GICC_CTLR_CBPR:
            shift = self._abpr
        else:
            shift = self._bpr + 1
        return self._priority[intid] & (0xFF << shift) & 0xFF

    def running_priority(self) -> int:
        """The lowest group priority acknowledged and not dropped. An interrupt is
        acknowledged only above the running priority, so `_running` only ever
        descends and its last entry is the lowest."""
        self.settle()
        return self._running[-1][1] if self._running else IDLE_PRIORITY

    def _highest_pending(self, groups: int) -> int | None:
        """The highest-priority pending, enabled, inactive interrupt of `groups`
        (ties go to the lowest ID), whatever the masks say."""
        candidates = ((self._latched | (self._input & ~self._edge))
                      & self._enabled & ~self._active & self._valid)
        if not candidates or not groups:         # the usual answer after an ack or EOI
            return None
        if groups != BOTH_GROUPS:
            candidates &= self._group if groups & 2 else ~self._group
        best, best_priority = None, IDLE_PRIORITY
        priority = self._priority
        while candidates:
            low_bit = candidates & -candidates
            intid = low_bit.bit_length() - 1
            if priority[intid] < best_priority:
                best, best_priority = intid, priority[intid]
            candidates ^= low_bit
        return best

    def _signalled(self, groups: int) -> int | None:
        """The interrupt the CPU interface signals: the highest pending one, if its
        priority is above the mask and its group priority above the running one.
        Called on every interrupt change and GICC access, so it is kept flat: nothing
        pending that is not active, the usual answer after an acknowledge or an EOI, is
        found here without another call."""
        if not (self._latched | (self._input & ~self._edge)) & ~self._active:
            return None
        intid = self._highest_pending(groups & self._dist_ctlr & self._cpu_ctlr & BOTH_GROUPS)
        if intid is None or self._priority[intid] >= self._pmr:
            return None
        if self._running and self._group_priority(intid) >= self._running[-1][1]:
            return None
        return intid

    def _update(self) -> None:
        """After every change of state: the IRQ and FIQ lines, and the mirror.

        The mirror may answer GICC_IAR while nothing is signalled (it reads as SPURIOUS
        and changes nothing), and take GICC_EOIR of the last acknowledged interrupt
        while ending it (priority drop and deactivation) would signal nothing: the
        lines then stay low, so nothing the guest can see changes until the model is
        next called, and then `settle` applies the write before anything else. (With
        EOImode set the write only drops the priority, which signals no more than that.)
        It may also answer GICC_IAR once with the interrupt signalled on the IRQ line,
        a group 0 one, while acknowledging it would signal nothing: the mirror then
        drops the CPU's IRQ line itself, which is all the acknowledge changes that the
        guest can see before the model is next called, and `settle` applies it then.
        Linux does all three on every interrupt."""
        intid = self._signalled(BOTH_GROUPS)
        fiq = (intid is not None and not self._group >> intid & 1
               and bool(self._cpu_ctlr & GICC_CTLR_FIQ_EN))
        irq = intid is not None and not fiq
        mirror = self._mirror
        if mirror is not None:
            self._publish_iar(mirror, intid, irq)
            offer = None
            # (Still pending itself, as a level input is until its device drops it, the
            # interrupt would be signalled again: no need to look further.)
            if (intid is None and self._running
                    and not self._pending() >> self._running[-1][0] & 1
                    and self._quiet_after_eoi()):
                offer = self._running[-1][0]
            if offer != self._eoi_offer:
                self._eoi_offer = offer
                mirror.offer(GICC_EOIR, offer)
        if irq != self.irq_level:
            self.irq_level = irq
            self._on_irq(irq)
        if fiq != self.fiq_level:
            self.fiq_level = fiq
            self._on_fiq(fiq)

    def _publish_iar(self, mirror: RegisterMirror, intid: int | None, irq: bool) -> None:
        """GICC_IAR for the mirror (see _update): SPURIOUS while nothing is signalled,
        the signalled ID once while acknowledging it would signal nothing, else left to
        the model. Only a change is passed on."""
        once = False
        if intid is None:
            value: int | None = SPURIOUS
        elif irq and not self._group >> intid & 1 and self._quiet_after_ack(intid):
            value, once = intid, True
        else:
            value = None
        if value == self._iar_published:
            return
        self._iar_published = value
        self._iar_once = value if once else None
        if once:
            mirror.publish_once(GICC_IAR, intid)    # type: ignore[arg-type]
        else:
            mirror.publish(GICC_IAR, value)

    def _quiet_after_ack(self, intid: int) -> bool:
        """Whether, with `intid` acknowledged, nothing would be signalled: what
        `_acknowledge` would leave, without changing anything."""
        bit = 1 << intid
        return self._quiet_if(self._latched & ~bit, self._active | bit,
                              [*self._running, (intid, self._group_priority(intid))])

    def _quiet_after_eoi(self) -> bool:
        """Whether, with the last acknowledged interrupt ended, nothing would be
        signalled: what `_end_of_interrupt` would find, without changing anything."""
        running = self._running
        return self._quiet_if(self._latched, self._active & ~(1 << running[-1][0]), running[:-1])

    def _quiet_if(self, latched: int, active: int, running: list[tuple[int, int]]) -> bool:
        """Whether nothing would be signalled in that state (the rest as it is)."""
        saved = self._latched, self._active, self._running
        self._latched, self._active, self._running = latched, active, running
        try:
            return self._signalled(BOTH_GROUPS) is None
        finally:
            self._latched, self._active, self._running = saved

    def _acknowledge(self, groups: int) -> int:
        intid = self._signalled(groups)
        if intid is None:
            return SPURIOUS
        if (groups == BOTH_GROUPS and self._group >> intid & 1
                and not self._cpu_ctlr & GICC_CTLR_ACK_CTL):
            return GROUP1_SPURIOUS
        bit = 1 << intid
        self._latched &= ~bit
        self._active |= bit
        self._running.append((intid, self._group_priority(intid)))
        self._update()
        return intid                             # an SGI's source CPU (bits 12:10) is 0

    def _end_of_interrupt(self, value: int, groups: int) -> None:
        intid = value & 0x3FF
        if intid >= self.num_irqs:
            return                               # a spurious ID: ignored, as specified
        for index in range(len(self._running) - 1, -1, -1):
            if self._running[index][0] == intid:
                break
        else:
            log.guest_error(SOURCE, f"EOI of interrupt {intid}, which was not acknowledged")
            return
        if groups == GROUP1_ONLY and not self._group >> intid & 1:
            log.guest_error(SOURCE, f"GICC_AEOIR for group 0 interrupt {intid}")
            return
        del self._running[index]
        if not self._cpu_ctlr & GICC_CTLR_EOI_MODE:
            self._active &= ~(1 << intid)
        self._update()

    def _deactivate(self, value: int) -> None:
        intid = value & 0x3FF
        if not self._cpu_ctlr & GICC_CTLR_EOI_MODE:
            log.guest_error(SOURCE, "GICC_DIR written with GICC_CTLR.EOImode clear")
            return
        if intid < self.num_irqs:
            self._active &= ~(1 << intid)
            self._update()

    def _send_sgi(self, value: int) -> None:
        targets, sgi = value >> 16 & 0xFF, value & 0xF
        selected = value >> 24 & 3
        if (selected == SGIR_TO_SELF) or (selected == SGIR_TO_LIST and targets & 1):
            self._latched |= 1 << sgi
            self._update()


def _word_aligned(source: str, offset: int, size: int) -> bool:
    if size == 4 and not offset & 3:
        return True
    log.guest_error(source, f"{size}-byte access at {offset:#x} (word registers)")
    return False


def _byte_access_ok(source: str, offset: int, size: int) -> bool:
    if size in (1, 2, 4) and not offset % size:
        return True
    log.guest_error(source, f"{size}-byte access at {offset:#x}")
    return False


class _Distributor:
    """GICD_*: an MmioDevice over the shared state."""

    def __init__(self, gic: Gicv2) -> None:
        self._gic = gic

    def read(self, offset: int, size: int) -> int:
        self._gic.settle()
        if GICD_IPRIORITYR <= offset < GICD_ICFGR or GICD_CPENDSGIR <= offset < 0xF30:
            return self._read_bytes(offset, size) if _byte_access_ok(SOURCE, offset, size) else 0
        if not _word_aligned(SOURCE, offset, size):
            return 0
        gic = self._gic
        if offset == GICD_CTLR:
            return gic._dist_ctlr
        if offset == GICD_TYPER:
            return gic.num_irqs // 32 - 1        # ITLinesNumber; one CPU, no security
        if offset == GICD_IIDR:
            return GICD_IIDR_VALUE
        bank = self._bank(offset)
        if bank is not None:
            base, index = bank
            return _word(self._bank_value(base), index)
        if GICD_ICFGR <= offset < GICD_ICFGR + gic.num_irqs // 4:
            return self._read_icfgr((offset - GICD_ICFGR) // 4)
        if GICD_ID_BASE <= offset < GICD_ID_BASE + 4 * len(GICD_ID_BYTES):
            return GICD_ID_BYTES[(offset - GICD_ID_BASE) // 4]
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self._gic.settle()
        if GICD_IPRIORITYR <= offset < GICD_ICFGR or GICD_CPENDSGIR <= offset < 0xF30:
            if _byte_access_ok(SOURCE, offset, size):
                self._write_bytes(offset, size, value)
            return
        if not _word_aligned(SOURCE, offset, size):
            return
        gic = self._gic
        value &= 0xFFFF_FFFF
        if offset == GICD_CTLR:
            gic._dist_ctlr = value & BOTH_GROUPS
        elif offset == GICD_SGIR:
            gic._send_sgi(value)
        elif (bank := self._bank(offset)) is not None:
            self._write_bank(bank[0], bank[1], value)
        elif GICD_ICFGR <= offset < GICD_ICFGR + gic.num_irqs // 4:
            self._write_icfgr((offset - GICD_ICFGR) // 4, value)
        else:
            return
        gic._update()

    # -- one bit per interrupt ----------------------------------------------------------

    def _bank(self, offset: int) -> tuple[int, int] | None:
        """(register base, word index) for the one-bit-per-interrupt registers."""
        base = offset & ~0x7F
        index = (offset & 0x7F) // 4
        if GICD_IGROUPR <= base <= GICD_ICACTIVER and index < self._gic.num_irqs // 32:
            return base, index
        return None

    def _bank_value(self, base: int) -> int:
        gic = self._gic
        if base == GICD_IGROUPR:
            return gic._group
        if base in (GICD_ISENABLER, GICD_ICENABLER):
            return gic._enabled
        if base in (GICD_ISPENDR, GICD_ICPENDR):
            return gic._pending()
        return gic._active

    def _write_bank(self, base: int, index: int, value: int) -> None:
        gic = self._gic
        bits = value << (32 * index)
        if base == GICD_IGROUPR:
            gic._group = _replace_word(gic._group, index, value)
        elif base == GICD_ISENABLER:
            gic._enabled |= bits
        elif base == GICD_ICENABLER:
            gic._enabled &= ~bits | SGI_MASK
        elif base == GICD_ISPENDR:
            gic._latched |= bits & ~SGI_MASK     # SGIs are set through GICD_SPENDSGIR
        elif base == GICD_ICPENDR:
            gic._latched &= ~(bits & ~SGI_MASK)  # a high level input stays pending
        elif base == GICD_ISACTIVER:
            gic._active |= bits
        else:
            gic._active &= ~bits

    # -- two bits per interrupt ---------------------------------------------------------

    def _read_icfgr(self, index: int) -> int:
        edges = self._gic._edge >> (16 * index) & 0xFFFF
        return sum(2 << (2 * i) for i in range(16) if edges >> i & 1)

    def _write_icfgr(self, index: int, value: int) -> None:
        if index == 0:
            return                               # SGIs: always edge-triggered
        edges = sum(1 << i for i in range(16) if value >> (2 * i + 1) & 1)
        shift = 16 * index
        gic = self._gic
        gic._edge = (gic._edge & ~(0xFFFF << shift)) | (edges << shift)

    # -- one byte per interrupt ---------------------------------------------------------

    def _read_bytes(self, offset: int, size: int) -> int:
        return sum(self._read_byte(offset + i) << (8 * i) for i in range(size))

    def _write_bytes(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            self._write_byte(offset + i, value >> (8 * i) & 0xFF)
        self._gic._update()

    def _read_byte(self, offset: int) -> int:
        gic = self._gic
        if offset < GICD_ITARGETSR:
            intid = offset - GICD_IPRIORITYR
            return gic._priority[intid] if intid < gic.num_irqs else 0
        if offset < GICD_ICFGR:
            return 0                             # ITARGETSR: RAZ/WI with one CPU
        sgi = (offset - GICD_CPENDSGIR) % 16
        return gic._latched >> sgi & 1           # bit 0: pending from CPU 0

    def _write_byte(self, offset: int, value: int) -> None:
        gic = self._gic
        if offset < GICD_ITARGETSR:
            intid = offset - GICD_IPRIORITYR
            if intid < gic.num_irqs:
                gic._priority[intid] = value
            return
        if offset < GICD_ICFGR or not value & 1:
            return
        sgi_bit = 1 << (offset - GICD_CPENDSGIR) % 16
        if offset < GICD_SPENDSGIR:
            gic._latched &= ~sgi_bit
        else:
            gic._latched |= sgi_bit


class _CpuInterface:
    """GICC_*: an MmioDevice over the shared state, and Mirrored (GICC_IAR reads,
    GICC_EOIR writes: see Gicv2._update)."""

    mirrored_registers = (GICC_IAR,)
    posted_registers = (GICC_EOIR,)

    def __init__(self, gic: Gicv2) -> None:
        self._gic = gic

    def attach_mirror(self, mirror: RegisterMirror) -> None:
        gic = self._gic
        gic._mirror = mirror
        mirror.publish(GICC_IAR, None)
        mirror.offer(GICC_EOIR, None)
        gic._iar_published = gic._iar_once = gic._eoi_offer = None
        gic._update()

    def read(self, offset: int, size: int) -> int:
        gic = self._gic
        gic.settle()
        if not _word_aligned(SOURCE, offset, size):
            return 0
        if offset == GICC_IAR:
            return gic._acknowledge(BOTH_GROUPS)
        if offset == GICC_AIAR:
            return gic._acknowledge(GROUP1_ONLY)
        if offset == GICC_HPPIR:
            return self._highest(BOTH_GROUPS)
        if offset == GICC_AHPPIR:
            return self._highest(GROUP1_ONLY)
        if offset == GICC_CTLR:
            return gic._cpu_ctlr
        if offset == GICC_PMR:
            return gic._pmr
        if offset == GICC_BPR:
            return gic._bpr
        if offset == GICC_ABPR:
            return gic._abpr
        if offset == GICC_RPR:
            return min(gic.running_priority(), 0xFF)
        if offset == GICC_IIDR:
            return GICC_IIDR_VALUE
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        gic = self._gic
        gic.settle()
        if not _word_aligned(SOURCE, offset, size):
            return
        value &= 0xFFFF_FFFF
        if offset == GICC_EOIR:
            gic._end_of_interrupt(value, BOTH_GROUPS)
        elif offset == GICC_AEOIR:
            gic._end_of_interrupt(value, GROUP1_ONLY)
        elif offset == GICC_DIR:
            gic._deactivate(value)
        elif offset == GICC_CTLR:
            gic._cpu_ctlr = value & GICC_CTLR_MASK
        elif offset == GICC_PMR:
            gic._pmr = value & 0xFF
        elif offset == GICC_BPR:
            gic._bpr = max(value & 7, MIN_BPR)
        elif offset == GICC_ABPR:
            gic._abpr = max(value & 7, MIN_ABPR)
        else:
            return
        gic._update()

    def _highest(self, groups: int) -> int:
        gic = self._gic
        intid = gic._highest_pending(groups & gic._groups_enabled())
        if intid is None:
            return SPURIOUS
        if groups == BOTH_GROUPS and gic._group >> intid & 1 and not (
                gic._cpu_ctlr & GICC_CTLR_ACK_CTL):
            return GROUP1_SPURIOUS
        return intid


def _word(bits: int, index: int) -> int:
    return bits >> (32 * index) & 0xFFFF_FFFF


def _replace_word(bits: int, index: int, value: int) -> int:
    shift = 32 * index
    return (bits & ~(0xFFFF_FFFF << shift)) | (value << shift)
