"""The machine's side of `--strict`: where a finding of the device layer's checker goes.

The checker (vmsim.devices.virtio.strict) cannot know the guest pc; the machine can,
so each finding passes through here: it gets the pc, one `vmsim: strict: ...` line on
stderr, a line in the `-d strict` log, a `strict` trace event, and, when a debugger
is attached, a stop (`on_finding`, set by the GDB stub).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, NamedTuple

from vmsim import log
from vmsim.core.decode import decode_memory_access, instruction_length
from vmsim.devices.events import TraceEvent, TraceSink, discard
from vmsim.devices.virtio.strict.rules import Finding


# Instructions looked at from the block start for the one that made the access; a
# translated block is rarely longer.
_SCAN = 128
_PAGE_MASK = 0xFFF


class Access(NamedTuple):
    """An MMIO access in progress: guest-physical address, width, store or load."""

    address: int
    width: int
    store: bool


Decoder = Callable[[int], Any]          # instruction bits -> MemoryAccess | None


def _riscv_length(insn: int) -> int:
    return instruction_length(insn & 0xFFFF)


def locate_access(cpu: Any, access: Access | None, decode: Decoder = decode_memory_access,
                  length: Callable[[int], int] = _riscv_length) -> int:
    """The pc of the instruction making `access`, or cpu.pc when none is in progress.

    Inside an MMIO callback the engine's pc is the start of the running block
    (docs/engine.md E11); the registers are current. So the block is decoded from
    there: the first load or store of the access's width and direction whose address,
    from the registers, falls at the same offset in its page (the instruction's
    address is virtual, the window's physical) is the one. If none matches, the
    block's start is the best there is. `decode` and `length` are the architecture's
    (riscv64 by default; vmsim.core.arm64_decode for arm64).
    """
    pc = cpu.pc
    if access is None:
        return pc
    at = pc
    for _ in range(_SCAN):
        insn = cpu.read_instruction(at)
        if insn is None:
            break
        found = decode(insn)
        if (found is not None and found.store == access.store and found.size == access.width
                and (found.address(cpu.x(found.base)) ^ access.address) & _PAGE_MASK == 0):
            return at
        at += length(insn)
    return pc


class StrictReport:
    """The `report` callback every checked slot gets; keeps the findings with their pc."""

    def __init__(self, pc: Callable[[], int], say: Callable[[str], None],
                 trace: TraceSink = discard) -> None:
        self._pc = pc
        self._say = say                         # one `vmsim: ...` line on stderr
        self._trace = trace
        self.findings: list[Finding] = []
        self.on_finding: Callable[[Finding], None] | None = None
        self.access: Access | None = None      # the checked slot's access in progress

    def noting(self, base: int, read: Callable[[int, int], int],
               write: Callable[[int, int, int], None],
               ) -> tuple[Callable[[int, int], int], Callable[[int, int, int], None]]:
        """MMIO callbacks for a checked slot that remember the access while it runs,
        so a finding can name the instruction (locate_access)."""
        def noted_read(offset: int, width: int) -> int:
            self.access = Access(base + offset, width, False)
            try:
                return read(offset, width)
            finally:
                self.access = None

        def noted_write(offset: int, width: int, value: int) -> None:
            self.access = Access(base + offset, width, True)
            try:
                write(offset, width, value)
            finally:
                self.access = None

        return noted_read, noted_write

    def __call__(self, finding: Finding) -> None:
        finding = replace(finding, pc=self._pc())
        self.findings.append(finding)
        line = finding.describe()
        log.strict(line)
        if not log.strict_on_stderr():
            self._say(f"strict: {line}")
        rule = finding.rule
        self._trace(TraceEvent("strict", finding.device, finding.queue, {
            "rule": rule.id, "text": rule.text, "section": rule.section, "label": rule.label,
            "pc": finding.pc, **{f"value_{k}": v for k, v in finding.values.items()}}))
        if self.on_finding is not None:
            self.on_finding(finding)


def checkers(devices: list[Any]) -> list[Any]:
    """The strict checkers of a machine's virtio slots (through observer wrappers)."""
    found = []
    for device in devices:
        for _ in range(4):
            checker = getattr(device, "checker", None)
            if checker is not None:
                found.append(checker)
                break
            device = getattr(device, "inner", None)
            if device is None:
                break
    return found


def summary(report: StrictReport | None, devices: list[Any]) -> str:
    """What `monitor strict` shows: each broken rule, how often, where it was first."""
    if report is None:
        return "no --strict checking in this run (start vmsim with --strict)\n"
    if not report.findings:
        return "strict: no rule broken so far\n"
    counts: dict[tuple[str, str], int] = {}
    for checker in checkers(devices):
        for rule_id, count in checker.counts.items():
            key = (checker.view.transport.name, rule_id)
            counts[key] = counts.get(key, 0) + count
    lines = [f"strict: {len(report.findings)} rule(s) broken"]
    for finding in report.findings:
        times = counts.get((finding.device, finding.rule.id), 1)
        lines.append(f"  {times}x {finding.describe()}")
    return "\n".join(lines) + "\n"
