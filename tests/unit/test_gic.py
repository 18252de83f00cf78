"""The GICv2 through its registers, set up the way Linux's irq-gic driver does, with
device inputs driven directly."""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vmsim.devices.bus import MirrorRecorder, MmioDevice
from vmsim.devices.gic import Gicv2

GICD_CTLR, GICD_TYPER, GICD_IIDR = 0x000, 0x004, 0x008
ISENABLER, ICENABLER, ISPENDR, ICPENDR = 0x100, 0x180, 0x200, 0x280
ISACTIVER, ICACTIVER, IPRIORITYR, ITARGETSR, ICFGR = 0x300, 0x380, 0x400, 0x800, 0xC00
IGROUPR, SGIR, CPENDSGIR, SPENDSGIR = 0x080, 0xF00, 0xF10, 0xF20
CTLR, PMR, BPR, IAR, EOIR, RPR, HPPIR = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18
AIAR, AEOIR, GICC_IIDR, DIR = 0x20, 0x24, 0xFC, 0x1000

UART, VIRTIO0, VTIMER = 33, 48, 27
SPURIOUS = 1023


class Lines:
    """Records the CPU's IRQ and FIQ lines as the GIC drives them."""

    def __init__(self) -> None:
        self.irq: list[bool] = []
        self.fiq: list[bool] = []


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def gic(lines: Lines) -> Gicv2:
    return Gicv2(288, on_irq=lines.irq.append, on_fiq=lines.fiq.append)


def linux_init(gic: Gicv2) -> None:
    """What irq-gic.c's gic_dist_init and gic_cpu_init write, in that order."""
    d, c = gic.distributor, gic.cpu_interface
    d.write(GICD_CTLR, 4, 0)
    for reg in range(32, gic.num_irqs, 16):
        d.write(ICFGR + reg // 4, 4, 0)                  # SPIs level-triggered
    for reg in range(32, gic.num_irqs, 4):
        d.write(IPRIORITYR + reg, 4, 0xA0A0_A0A0)
    for reg in range(32, gic.num_irqs, 32):
        d.write(ICACTIVER + reg // 8, 4, 0xFFFF_FFFF)
        d.write(ICENABLER + reg // 8, 4, 0xFFFF_FFFF)
    d.write(GICD_CTLR, 4, 1)
    d.write(ICACTIVER, 4, 0xFFFF_FFFF)
    d.write(ICENABLER, 4, 0xFFFF_0000)
    d.write(ISENABLER, 4, 0x0000_FFFF)
    for reg in range(0, 32, 4):
        d.write(IPRIORITYR + reg, 4, 0xA0A0_A0A0)
    c.write(PMR, 4, 0xF0)
    c.write(CTLR, 4, 1)


def enable(gic: Gicv2, intid: int, priority: int = 0xA0, edge: bool = False) -> None:
    d = gic.distributor
    d.write(IPRIORITYR + intid, 1, priority)
    if edge:
        reg = ICFGR + intid // 16 * 4
        d.write(reg, 4, d.read(reg, 4) | 2 << (2 * (intid % 16)))
    d.write(ISENABLER + intid // 32 * 4, 4, 1 << intid % 32)


def ack(gic: Gicv2) -> int:
    return gic.cpu_interface.read(IAR, 4)


def eoi(gic: Gicv2, intid: int) -> None:
    gic.cpu_interface.write(EOIR, 4, intid)


def test_both_windows_are_mmio_devices(gic: Gicv2) -> None:
    assert isinstance(gic.distributor, MmioDevice)
    assert isinstance(gic.cpu_interface, MmioDevice)


def test_identification_registers(gic: Gicv2) -> None:
    d = gic.distributor
    assert d.read(GICD_TYPER, 4) == 8                    # 288 interrupts, one CPU
    assert d.read(GICD_IIDR, 4) == 0x43B
    assert d.read(0xFE8, 4) >> 4 & 0xF == 2              # ICPIDR2.ArchRev: GICv2
    assert [d.read(0xFF0 + 4 * i, 4) for i in range(4)] == [0x0D, 0xF0, 0x05, 0xB1]
    # Linux's gic_check_gicv2 test
    assert gic.cpu_interface.read(GICC_IIDR, 4) & 0xFF0FFF == 0x02043B


def test_level_spi_is_acknowledged_and_pends_again_while_high(gic: Gicv2, lines: Lines) -> None:
    linux_init(gic)
    enable(gic, VIRTIO0)
    line = gic.spi(16)
    line.set_level(True)
    assert lines.irq == [True]
    assert gic.cpu_interface.read(HPPIR, 4) == VIRTIO0
    assert ack(gic) == VIRTIO0
    assert lines.irq == [True, False]                    # active: not signalled again
    assert gic.active(VIRTIO0) and gic.pending(VIRTIO0)
    assert gic.cpu_interface.read(RPR, 4) == 0xA0
    assert ack(gic) == SPURIOUS
    eoi(gic, VIRTIO0)
    assert lines.irq == [True, False, True]              # still high: pending again
    assert ack(gic) == VIRTIO0
    line.set_level(False)                                # the handler quietened the device
    eoi(gic, VIRTIO0)
    assert ack(gic) == SPURIOUS
    assert lines.irq[-1] is False and not gic.active(VIRTIO0)
    assert gic.cpu_interface.read(RPR, 4) == 0xFF


def test_a_line_that_drops_before_acknowledge_stops_pending(gic: Gicv2) -> None:
    linux_init(gic)
    enable(gic, UART)
    gic.spi(1).set_level(True)
    gic.spi(1).set_level(False)
    assert not gic.pending(UART) and ack(gic) == SPURIOUS


def test_edge_interrupt_latches_one_rising_edge(gic: Gicv2) -> None:
    linux_init(gic)
    enable(gic, VIRTIO0, edge=True)
    line = gic.spi(16)
    line.set_level(True)
    line.set_level(False)
    assert gic.pending(VIRTIO0)                          # latched though the line fell
    assert ack(gic) == VIRTIO0
    assert not gic.pending(VIRTIO0)
    line.set_level(True)                                 # a new edge while active
    assert gic.pending(VIRTIO0) and ack(gic) == SPURIOUS
    eoi(gic, VIRTIO0)
    assert ack(gic) == VIRTIO0
    eoi(gic, VIRTIO0)
    line.set_level(True)                                 # high already: no edge
    assert ack(gic) == SPURIOUS


def test_disabled_or_masked_interrupts_are_not_signalled(gic: Gicv2, lines: Lines) -> None:
    linux_init(gic)
    gic.spi(1).set_level(True)
    assert ack(gic) == SPURIOUS and lines.irq == []      # not enabled
    enable(gic, UART, priority=0xF0)
    assert ack(gic) == SPURIOUS                          # not above PMR 0xF0
    gic.distributor.write(IPRIORITYR + UART, 1, 0xE0)
    assert lines.irq == [True]
    gic.distributor.write(ICENABLER + 4, 4, 1 << 1)
    assert lines.irq == [True, False]
    gic.distributor.write(ISENABLER + 4, 4, 1 << 1)
    gic.cpu_interface.write(CTLR, 4, 0)                  # CPU interface off
    assert lines.irq == [True, False, True, False]
    gic.cpu_interface.write(CTLR, 4, 1)
    gic.distributor.write(GICD_CTLR, 4, 0)               # distributor off
    assert lines.irq[-1] is False and ack(gic) == SPURIOUS


def test_higher_priority_preempts_and_eoi_restores_running_priority(gic: Gicv2) -> None:
    linux_init(gic)
    enable(gic, UART, priority=0xA0)
    enable(gic, VIRTIO0, priority=0x80)
    enable(gic, VIRTIO0 + 1, priority=0xA0)
    gic.spi(1).set_level(True)
    assert ack(gic) == UART
    gic.spi(17).set_level(True)                          # same priority: no preemption
    assert ack(gic) == SPURIOUS
    gic.spi(16).set_level(True)                          # higher priority preempts
    assert gic.cpu_interface.read(HPPIR, 4) == VIRTIO0
    assert ack(gic) == VIRTIO0
    assert gic.cpu_interface.read(RPR, 4) == 0x80
    gic.spi(16).set_level(False)
    eoi(gic, VIRTIO0)
    assert gic.cpu_interface.read(RPR, 4) == 0xA0
    gic.spi(1).set_level(False)
    eoi(gic, UART)
    assert ack(gic) == VIRTIO0 + 1


def test_binary_point_groups_priorities_for_preemption(gic: Gicv2) -> None:
    linux_init(gic)
    gic.cpu_interface.write(BPR, 4, 5)                   # group priority = bits 7:6
    enable(gic, UART, priority=0xA0)
    enable(gic, VIRTIO0, priority=0x90)
    gic.spi(1).set_level(True)
    assert ack(gic) == UART
    gic.spi(16).set_level(True)
    assert ack(gic) == SPURIOUS                          # 0x90 and 0xA0 share group 0x80
    gic.cpu_interface.write(BPR, 4, 2)
    assert gic.cpu_interface.read(BPR, 4) == 2


def test_ties_go_to_the_lowest_id(gic: Gicv2) -> None:
    linux_init(gic)
    for intid in (VIRTIO0 + 3, VIRTIO0 + 1, UART + 40):
        enable(gic, intid)
        gic.set_level(intid, True)
    order = []
    while (intid := ack(gic)) != SPURIOUS and len(order) < 4:
        order.append(intid)
        gic.set_level(intid, False)
        eoi(gic, intid)
    assert order == [VIRTIO0 + 1, VIRTIO0 + 3, UART + 40]


def test_timer_ppi_is_a_level_input(gic: Gicv2, lines: Lines) -> None:
    linux_init(gic)
    enable(gic, VTIMER)
    gic.line(VTIMER).set_level(True)
    assert ack(gic) == VTIMER
    gic.line(VTIMER).set_level(False)                    # the handler reprogrammed CVAL
    eoi(gic, VTIMER)
    assert ack(gic) == SPURIOUS and lines.irq == [True, False]


def test_software_generated_interrupts(gic: Gicv2) -> None:
    linux_init(gic)
    d = gic.distributor
    assert d.read(ICFGR, 4) == 0xAAAA_AAAA               # SGIs are edge-triggered
    d.write(ICENABLER, 4, 0xFFFF)
    assert d.read(ISENABLER, 4) & 0xFFFF == 0xFFFF       # and always enabled
    d.write(SGIR, 4, 1 << 24 | 3)                        # to others: there are none
    assert ack(gic) == SPURIOUS
    d.write(SGIR, 4, 1 << 16 | 5)                        # to the list {CPU 0}
    assert d.read(SPENDSGIR + 4, 4) == 1 << 8            # SGI 5, from CPU 0
    assert ack(gic) == 5
    eoi(gic, 5)
    d.write(SGIR, 4, 2 << 24 | 7)                        # to itself
    d.write(CPENDSGIR + 7, 1, 1)
    assert ack(gic) == SPURIOUS
    d.write(SPENDSGIR + 2, 1, 1)
    assert ack(gic) == 2


def test_software_pending_and_active_bits(gic: Gicv2) -> None:
    linux_init(gic)
    enable(gic, UART)
    d = gic.distributor
    d.write(ISPENDR + 4, 4, 1 << 1)
    assert d.read(ISPENDR + 4, 4) == 1 << 1
    d.write(ICPENDR + 4, 4, 1 << 1)
    assert d.read(ISPENDR + 4, 4) == 0
    gic.spi(1).set_level(True)
    d.write(ICPENDR + 4, 4, 1 << 1)                      # a high level input stays pending
    assert gic.pending(UART)
    d.write(ISACTIVER + 4, 4, 1 << 1)
    assert d.read(ISACTIVER + 4, 4) == 1 << 1 and ack(gic) == SPURIOUS
    d.write(ICACTIVER + 4, 4, 1 << 1)
    assert ack(gic) == UART


def test_priority_bytes_and_targets(gic: Gicv2) -> None:
    d = gic.distributor
    d.write(IPRIORITYR + 40, 4, 0x4433_2211)
    assert [d.read(IPRIORITYR + 40 + i, 1) for i in range(4)] == [0x11, 0x22, 0x33, 0x44]
    d.write(IPRIORITYR + 42, 1, 0x99)
    assert d.read(IPRIORITYR + 40, 4) == 0x4499_2211
    d.write(ITARGETSR + 40, 1, 0xFF)                     # uniprocessor: RAZ/WI
    assert d.read(ITARGETSR + 40, 4) == 0 and d.read(ITARGETSR, 4) == 0


def test_group1_needs_ackctl_on_iar_and_aiar_takes_it(gic: Gicv2, lines: Lines) -> None:
    linux_init(gic)
    gic.distributor.write(GICD_CTLR, 4, 3)
    gic.cpu_interface.write(CTLR, 4, 3)
    enable(gic, UART)
    gic.distributor.write(IGROUPR + 4, 4, 1 << 1)
    gic.spi(1).set_level(True)
    assert ack(gic) == 1022
    assert gic.cpu_interface.read(AIAR, 4) == UART
    gic.cpu_interface.write(AEOIR, 4, UART)
    gic.spi(1).set_level(False)
    assert not gic.active(UART)


def test_fiq_enable_sends_group0_to_fiq(gic: Gicv2, lines: Lines) -> None:
    linux_init(gic)
    gic.cpu_interface.write(CTLR, 4, 1 | 1 << 3)
    enable(gic, UART)
    gic.spi(1).set_level(True)
    assert lines.fiq == [True] and lines.irq == []


def test_split_eoi_deactivates_through_dir(gic: Gicv2) -> None:
    linux_init(gic)
    gic.cpu_interface.write(CTLR, 4, 1 | 1 << 9)         # EOImode
    enable(gic, UART)
    gic.spi(1).set_level(True)
    assert ack(gic) == UART
    gic.spi(1).set_level(False)
    eoi(gic, UART)
    assert gic.active(UART) and gic.cpu_interface.read(RPR, 4) == 0xFF
    gic.cpu_interface.write(DIR, 4, UART)
    assert not gic.active(UART)


def test_stray_eoi_and_spurious_eoi_are_ignored(gic: Gicv2) -> None:
    linux_init(gic)
    enable(gic, UART)
    gic.spi(1).set_level(True)
    assert ack(gic) == UART
    eoi(gic, VIRTIO0)                                    # never acknowledged
    eoi(gic, SPURIOUS)
    assert gic.active(UART) and gic.cpu_interface.read(RPR, 4) == 0xA0


def test_inputs_are_checked_when_wired() -> None:
    gic = Gicv2(64)
    with pytest.raises(ValueError):
        gic.line(15)                                     # SGIs have no input line
    with pytest.raises(ValueError):
        gic.spi(32)
    with pytest.raises(ValueError):
        Gicv2(100)


ACCESS = st.tuples(st.sampled_from(["d", "c"]), st.booleans(),
                   st.integers(0, 0x1FFF) | st.sampled_from([0, 0x100, 0x180, 0x404, 0xF00, 0xC, 0x10]),
                   st.sampled_from([1, 2, 4, 8, 3]), st.integers(0, 2**64 - 1))
LEVELS = st.tuples(st.sampled_from([27, 30, 33, 48, 63]), st.booleans())


_NOT_STATE = ("distributor", "cpu_interface", "_mirror", "_iar_published", "_iar_once",
              "_eoi_offer", "_on_irq", "_on_fiq")


def _state(gic: Gicv2) -> dict:
    return {k: v for k, v in gic.__dict__.items() if k not in _NOT_STATE}


def _setup_and_steps(gic: Gicv2, steps: list[tuple]) -> list[tuple]:
    """Linux's setup with the test inputs enabled; then the steps, to apply one by one."""
    linux_init(gic)
    for intid in (27, 30, 33, 48, 63):
        enable(gic, intid)
    return steps


def apply_step(gic: Gicv2, step: tuple) -> int | None:
    """An input level (intid, level) or a register access; what a read returned."""
    if len(step) == 2:
        gic.set_level(*step)
        return None
    window, is_write, offset, size, value = step
    device = gic.distributor if window == "d" else gic.cpu_interface
    if is_write:
        device.write(offset, size, value)
        return None
    return device.read(offset, size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ACCESS, LEVELS), max_size=60))
def test_any_guest_access_is_safe_and_the_line_matches_iar(steps: list[tuple]) -> None:
    """No register access raises, and the IRQ/FIQ lines always say whether GICC_IAR
    would hand out an interrupt."""
    lines = Lines()
    gic = Gicv2(64, on_irq=lines.irq.append, on_fiq=lines.fiq.append)
    for step in _setup_and_steps(gic, steps):
        read = apply_step(gic, step)
        assert read is None or 0 <= read < 2**32
        assert lines.irq[-1:] in ([], [gic.irq_level]) and lines.fiq[-1:] in ([], [gic.fiq_level])
    signalled = gic.irq_level or gic.fiq_level
    got = gic.cpu_interface.read(IAR, 4)
    assert (got < 1020 or got == 1022) == signalled


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ACCESS, LEVELS), max_size=60))
def test_gicc_iar_is_published_exactly_while_it_reads_spurious(steps: list[tuple]) -> None:
    """The read mirror may answer GICC_IAR without the model only while the model would
    answer SPURIOUS and change nothing: after any access or input change, a published
    IAR equals what a read returns, and that read leaves the state as it was; an IAR
    that is not published would hand out an interrupt (or the group-1 spurious ID)."""
    gic = Gicv2(64)
    mirror = MirrorRecorder()
    assert gic.cpu_interface.mirrored_registers == (IAR,)
    gic.cpu_interface.attach_mirror(mirror)
    assert mirror.values == {IAR: SPURIOUS}
    for step in _setup_and_steps(gic, steps):
        apply_step(gic, step)
        before = copy.deepcopy(gic.__dict__)
        probe = copy.deepcopy(gic)
        got = probe.cpu_interface.read(IAR, 4)
        if IAR in mirror.values:
            assert got == mirror.values[IAR] == SPURIOUS
            assert probe.__dict__.keys() == before.keys()
            assert all(probe.__dict__[k] == v for k, v in before.items()
                       if k not in _NOT_STATE)
        else:
            assert got != SPURIOUS


class CpuLine:
    """The CPU's IRQ input as the machine keeps it: a level, changed only by a
    different one (Arm64Cpu.set_irq), and the changes the CPU saw."""

    def __init__(self) -> None:
        self.level = False
        self.changes: list[bool] = []

    def set(self, level: bool) -> None:
        if level != self.level:
            self.level = level
            self.changes.append(level)


# The accesses of an interrupt's handling, more often than ACCESS draws them: GICC_IAR,
# GICC_EOIR of the running interrupt (as Linux writes it), GICC_CTLR with and without
# EOImode, GICC_DIR of the running interrupt.
HANDLING = st.sampled_from([("c", False, IAR, 4, 0), ("eoi",), ("eoi",), ("dir",),
                            ("c", True, CTLR, 4, 0x201), ("c", True, CTLR, 4, 1)])


FEW_LEVELS = st.tuples(st.sampled_from([27, 33, 48]), st.booleans())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ACCESS, FEW_LEVELS, FEW_LEVELS, HANDLING, HANDLING), max_size=40))
@example([(33, True), ("c", False, IAR, 4, 0), (33, False), ("eoi",), (48, True)])
@example([("c", True, CTLR, 4, 0x201), (33, True), ("c", False, IAR, 4, 0), (33, False),
          ("eoi",), (48, True), ("c", False, IAR, 4, 0), ("dir",), ("eoi",), ("dir",)])
@example([("d", True, IPRIORITYR + 48, 1, 0x80), (33, True), ("c", False, IAR, 4, 0),
          (48, True), ("c", False, IAR, 4, 0), (48, False), ("eoi",), (33, False), ("eoi",)])
# Group 1 (33) without GICC_CTLR.AckCtl: IAR reads 1022 and acknowledges nothing.
@example([("d", True, GICD_CTLR, 4, 3), ("c", True, CTLR, 4, 3),
          ("d", True, IGROUPR + 4, 4, 1 << 1), (33, True), ("c", False, IAR, 4, 0)])
# 48 (group 0, 0x10) is handed out, but 33 (group 1, 0x11) has the higher group priority
# under GICC_ABPR (0x00 against 0x10): the line stays up after the acknowledge.
@example([("d", True, GICD_CTLR, 4, 3), ("c", True, CTLR, 4, 3),
          ("d", True, IGROUPR + 4, 4, 1 << 1), ("d", True, IPRIORITYR + 48, 1, 0x10),
          ("d", True, IPRIORITYR + 33, 1, 0x11), ("c", True, BPR, 4, 2), ("c", True, 0x1C, 4, 5),
          (33, True), (48, True), ("c", False, IAR, 4, 0)])
def test_an_iar_the_mirror_answers_once_and_an_eoir_it_takes_change_nothing_the_guest_can_see(
        steps: list[tuple]) -> None:
    """Differential: one GIC whose mirror answers every GICC_IAR it publishes (once:
    dropping the CPU's IRQ line itself) and takes every GICC_EOIR it offers (both
    applied when the model is next called), one that gets every access. After every
    step every read and the CPU's IRQ and FIQ lines agree, and once settled so does
    their whole state."""
    cpus, fiqs = [CpuLine(), CpuLine()], [Lines(), Lines()]
    mirror = MirrorRecorder(drop_line=lambda: cpus[0].set(False))
    mirrored, direct = (Gicv2(64, on_irq=cpu.set, on_fiq=line.fiq.append)
                        for cpu, line in zip(cpus, fiqs))
    assert mirrored.cpu_interface.mirrored_registers == (IAR,)
    assert mirrored.cpu_interface.posted_registers == (EOIR,)
    mirrored.cpu_interface.attach_mirror(mirror)
    _setup_and_steps(direct, [])
    for step in _setup_and_steps(mirrored, steps):
        if step in (("eoi",), ("dir",)):
            register = EOIR if step == ("eoi",) else DIR
            value = direct._running[-1][0] if direct._running else SPURIOUS
            if not mirror.write(register, value):
                mirrored.cpu_interface.write(register, 4, value)
            direct.cpu_interface.write(register, 4, value)
        elif step[:4] == ("c", False, IAR, 4):
            got = mirror.read(IAR)
            if got is None:
                got = mirrored.cpu_interface.read(IAR, 4)
            assert got == direct.cpu_interface.read(IAR, 4)
        else:
            assert apply_step(mirrored, step) == apply_step(direct, step)
        assert cpus[0].changes == cpus[1].changes and fiqs[0].fiq == fiqs[1].fiq
        assert cpus[0].level == direct.irq_level and mirrored.fiq_level == direct.fiq_level
    mirrored.settle()
    assert _state(mirrored) == _state(direct)
    assert mirrored.irq_level == direct.irq_level


def test_linux_takes_each_interrupt_through_the_mirror() -> None:
    """With a line to drop, the whole of Linux's handling but the device's own ack is
    answered by the mirror: IAR hands out the interrupt once and drops the CPU's line,
    the ack (the device's line dropping) applies that acknowledge first, then EOIR is
    taken and IAR reads SPURIOUS."""
    cpu = CpuLine()
    gic = Gicv2(64, on_irq=cpu.set)
    mirror = MirrorRecorder(drop_line=lambda: cpu.set(False))
    gic.cpu_interface.attach_mirror(mirror)
    linux_init(gic)
    enable(gic, VIRTIO0)
    gic.set_level(VIRTIO0, True)
    assert cpu.level and mirror.once == {IAR: VIRTIO0}
    assert mirror.read(IAR) == VIRTIO0 and not cpu.level and mirror.read(IAR) is None
    gic.set_level(VIRTIO0, False)                      # the ack: applies the IAR first
    assert mirror.offers == {EOIR: VIRTIO0} and mirror.values == {IAR: SPURIOUS}
    assert mirror.write(EOIR, VIRTIO0) and mirror.read(IAR) == SPURIOUS
    assert gic.active(VIRTIO0) is False and gic.cpu_interface.read(RPR, 4) == 0xFF
    assert cpu.changes == [True, False]
