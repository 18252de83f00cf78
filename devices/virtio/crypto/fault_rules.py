"""The fault rule language: `op=CIPHER_ENCRYPT,every=3,status=ERR`, in the spirit of
QEMU's blkdebug `[inject-error]` rules.

A rule is comma-separated `key=value` items in any order (`once`, `needs-reset` and
`kill-worker` stand alone). Selectors say which requests it looks at, conditions which
of those it fires on, and actions what the device then does wrong; docs/faults.md is
the reference. Parsing is pure: a bad rule is one FaultRuleError naming the bad item,
which the command line, GDB's monitor and the TUI show as one line.
"""
from __future__ import annotations

from dataclasses import dataclass

from vmsim.devices.virtio.crypto.constants import Op, Status

IRQ_ACTIONS = ("drop", "late", "dup")
MAX_COUNT = 1 << 32          # after=, every=, seed=, used-len= (used.len is a u32)
MAX_DELAY_MS = 60_000        # a longer delay is a hang; needs-reset or irq=drop say so
MAX_AT_SECONDS = 1 << 20
_FLAGS = {"once": "once", "needs-reset": "needs_reset", "kill-worker": "kill_worker"}
KEYS = ("op", "queue", "after", "at", "every", "once", "probability", "seed", "status",
        "delay", "irq", "used-len", "hw-ready", "needs-reset", "kill-worker")


class FaultRuleError(ValueError):
    """A rule that does not parse; the message is one line naming the bad item."""


@dataclass(frozen=True)
class FaultRule:
    """One parsed rule. None (or False) means "not given"."""

    # selectors
    op: Op | None = None
    queue: int | None = None
    after: int = 0                  # skip the first N requests the selectors match
    at: float | None = None         # seconds of run time before the rule is armed
    # conditions
    every: int = 1                  # fire on every Nth request (counted after `after`)
    once: bool = False
    probability: float = 1.0
    seed: int = 0
    # actions
    status: Status | None = None
    delay_ms: int | None = None
    irq: str | None = None
    used_len: int | None = None
    hw_ready: bool | None = None
    needs_reset: bool = False
    kill_worker: bool = False

    @property
    def has_action(self) -> bool:
        return (self.status is not None or self.delay_ms is not None or self.irq is not None
                or self.used_len is not None or self.hw_ready is not None
                or self.needs_reset or self.kill_worker)

    def __str__(self) -> str:
        """The rule in its own language (what `fault list` shows; parses back)."""
        items = []
        for name, text in (("op", None if self.op is None else self.op.name), ("queue", self.queue),
                           ("after", self.after or None), ("at", self.at),
                           ("every", self.every if self.every != 1 else None),
                           ("probability", self.probability if self.probability != 1.0 else None),
                           ("seed", self.seed if self.probability != 1.0 else None),
                           ("status", None if self.status is None else self.status.name),
                           ("delay", self.delay_ms), ("irq", self.irq), ("used-len", self.used_len),
                           ("hw-ready", None if self.hw_ready is None else
                            ("on" if self.hw_ready else "off"))):
            if text is not None:
                items.append(f"{name}={text}")
        items += [word for word, attr in _FLAGS.items() if getattr(self, attr)]
        return ",".join(items)


def _integer(key: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise FaultRuleError(f"{key}={text!r} is not a whole number") from None
    if not low <= value <= high:
        raise FaultRuleError(f"{key}={value} is out of range ({low} to {high})")
    return value


def _number(key: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultRuleError(f"{key}={text!r} is not a number") from None
    if not low <= value <= high:          # also refuses nan
        raise FaultRuleError(f"{key}={text} is out of range ({low:g} to {high:g})")
    return value


def _named(key: str, text: str, names: list[str]) -> str:
    word = text.upper().replace("-", "_")
    if word not in names:
        raise FaultRuleError(f"{key}={text!r}: use one of {', '.join(names)}")
    return word


def _value(key: str, text: str) -> tuple[str, object]:
    """(FaultRule field, value) of one `key=value` item."""
    if key == "op":
        return "op", Op[_named(key, text, [op.name for op in Op])]
    if key == "status":
        names = [s.name for s in Status if s != Status.OK]
        return "status", Status[_named(key, text, names)]
    if key == "irq":
        return "irq", _named(key, text, [a.upper() for a in IRQ_ACTIONS]).lower()
    if key == "hw-ready":
        if text.lower() not in ("on", "off"):
            raise FaultRuleError(f"hw-ready={text!r}: use on or off")
        return "hw_ready", text.lower() == "on"
    if key == "queue":
        return "queue", _integer(key, text, 0, 0xFFFF)
    if key in ("after", "seed"):
        return key, _integer(key, text, 0, MAX_COUNT)
    if key == "every":
        return key, _integer(key, text, 1, MAX_COUNT)
    if key == "used-len":
        return "used_len", _integer(key, text, 0, MAX_COUNT - 1)
    if key == "delay":
        return "delay_ms", _integer(key, text, 0, MAX_DELAY_MS)
    if key == "at":
        return "at", _number(key, text, 0, MAX_AT_SECONDS)
    if key == "probability":
        return "probability", _number(key, text, 0.0, 1.0)
    raise FaultRuleError(f"unknown key {key!r} (keys: {', '.join(KEYS)})")


def parse_rule(text: str) -> FaultRule:
    """One rule from its text; FaultRuleError says which item is wrong."""
    given: dict[str, object] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            if key not in _FLAGS:
                raise FaultRuleError(f"{item!r} needs a value (key=value)" if key in KEYS
                                     else f"unknown key {key!r} (keys: {', '.join(KEYS)})")
            name, parsed = _FLAGS[key], True
        elif key in _FLAGS:
            raise FaultRuleError(f"{key} takes no value (write it alone)")
        else:
            name, parsed = _value(key, value.strip())
        if name in given:
            raise FaultRuleError(f"{key} is given twice")
        given[name] = parsed
    if "seed" in given and "probability" not in given:
        raise FaultRuleError("seed= only makes sense with probability=")
    rule = FaultRule(**given)  # type: ignore[arg-type]
    if not rule.has_action:
        raise FaultRuleError("no action (status=, delay=, irq=, used-len=, hw-ready=, "
                             "needs-reset or kill-worker)")
    return rule


def parse_rule_file(text: str, name: str = "fault file") -> list[FaultRule]:
    """Rules one per line; `#` starts a comment, blank lines are skipped. An error names
    the line."""
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            rules.append(parse_rule(line))
        except FaultRuleError as error:
            raise FaultRuleError(f"{name} line {number}: {error}") from None
    return rules

