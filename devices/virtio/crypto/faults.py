"""The fault plan: which requests a set of rules fires on, and what they then do.

The device asks `match(opcode, queue)` once per request, and only while `active` is
true, so a device with no rule pays one attribute test per request. Rules may be added
or cleared from other threads (GDB's monitor, the TUI's control socket) while the CPU
thread matches, hence the lock. Each rule keeps its own count and its own random
generator seeded from `seed=`, so a run with the same rules and the same requests
injects the same faults.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from vmsim.devices.virtio.crypto.constants import Op, Status
from vmsim.devices.virtio.crypto.fault_rules import FaultRule, FaultRuleError, parse_rule


class Fault(NamedTuple):
    """The actions of every rule that fired on one request (the first rule wins where
    two set the same action), and those rules, for the trace and the log."""

    rules: tuple[str, ...]
    status: Status | None = None
    delay_ms: int | None = None
    irq: str | None = None
    used_len: int | None = None
    hw_ready: bool | None = None
    needs_reset: bool = False
    kill_worker: bool = False

    def describe(self) -> dict[str, object]:
        """The actions as plain values (a trace event's fields)."""
        out: dict[str, object] = {}
        for name in ("status", "delay_ms", "irq", "used_len", "hw_ready"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.name if isinstance(value, Status) else value
        for name in ("needs_reset", "kill_worker"):
            if getattr(self, name):
                out[name] = True
        return out


_ACTIONS = ("status", "delay_ms", "irq", "used_len", "hw_ready", "needs_reset", "kill_worker")


@dataclass
class ArmedRule:
    """A rule and its state in this run."""

    rule: FaultRule
    seen: int = 0            # requests its selectors matched
    fired: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.rule.seed)

    def fires(self, op: int, queue: int, elapsed: float) -> bool:
        rule = self.rule
        if rule.op is not None and rule.op != op or rule.queue is not None and rule.queue != queue:
            return False
        if rule.at is not None and elapsed < rule.at:
            return False
        self.seen += 1
        counted = self.seen - rule.after
        if counted <= 0 or counted % rule.every or rule.once and self.fired:
            return False
        if rule.probability < 1.0 and self.rng.random() >= rule.probability:
            return False
        self.fired += 1
        return True


class FaultPlan:
    """The rules of one device (or shared by several), with their counters."""

    def __init__(self, rules: Iterable[FaultRule] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._armed = [ArmedRule(rule) for rule in rules]
        self.active = bool(self._armed)
        self.injected = 0

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._armed.append(ArmedRule(rule))
            self.active = True

    def clear(self) -> int:
        """Drop every rule; returns how many there were."""
        with self._lock:
            count, self._armed = len(self._armed), []
            self.active = False
            return count

    def listing(self) -> list[ArmedRule]:
        with self._lock:
            return list(self._armed)

    def describe(self) -> str:
        """One line per rule with its counts (GDB's `monitor fault`, the TUI)."""
        armed = self.listing()
        if not armed:
            return "no fault rules\n"
        return "".join(f"{number}: {entry.rule}  (matched {entry.seen}, fired {entry.fired})\n"
                       for number, entry in enumerate(armed))

    def match(self, op: int, queue: int) -> Fault | None:
        """The fault to inject into this request, or None. Every rule sees the request
        (so each keeps its own count); the actions of those that fire are merged."""
        with self._lock:
            elapsed = self._clock() - self._started
            fired = [entry.rule for entry in self._armed if entry.fires(op, queue, elapsed)]
        if not fired:
            return None
        actions: dict[str, object] = {}
        for rule in fired:
            for name in _ACTIONS:
                value = getattr(rule, name)
                if value is not None and (value is not False or name == "hw_ready"):
                    actions.setdefault(name, value)
        self.injected += 1
        return Fault(tuple(str(rule) for rule in fired), **actions)  # type: ignore[arg-type]


def opcode_name(op: int) -> str:
    try:
        return Op(op).name
    except ValueError:
        return f"{op:#x}"


def _plan_of(device: Any) -> FaultPlan | None:
    """The fault plan of a slot's device, through its transport and observer wrappers."""
    for _ in range(5):
        if device is None:
            return None
        plan = getattr(device, "faults", None)
        if isinstance(plan, FaultPlan):
            return plan
        device = (getattr(device, "_inner", None) or getattr(device, "inner", None)
                  or getattr(device, "device", None))
    return None


class FaultControl:
    """The fault rules of a running machine, for GDB's `monitor fault` and the TUI: the
    distinct plans of its slots (`vmsim run` gives every slot the same one), each rule
    added to all of them. `command(text)` is the monitor's grammar: nothing or `list`
    lists the rules with their counts, `clear` drops them, anything else is a rule."""

    def __init__(self, slots: Sequence[Any]) -> None:
        self.plans: list[tuple[list[int], FaultPlan]] = []
        for index, slot in enumerate(slots):
            plan = _plan_of(slot)
            if plan is None:
                continue
            known = next((entry for entry in self.plans if entry[1] is plan), None)
            if known is None:
                self.plans.append(([index], plan))
            else:
                known[0].append(index)

    def add(self, text: str) -> str:
        """Parse `text` and arm it on every plan (FaultRuleError if it does not parse)."""
        rule = parse_rule(text)
        if not self.plans:
            return "no device here takes fault rules\n"
        for _, plan in self.plans:
            plan.add(rule)
        return f"fault rule added: {rule}\n"

    def clear(self) -> str:
        count = max((plan.clear() for _, plan in self.plans), default=0)
        return f"cleared {count} fault rule{'s' if count != 1 else ''}\n"

    def describe(self) -> str:
        if not self.plans:
            return "no device here takes fault rules\n"
        if len(self.plans) == 1:
            return self.plans[0][1].describe()
        return "".join(f"slot {','.join(map(str, slots))}:\n"
                       + "".join(f"  {line}\n" for line in plan.describe().splitlines())
                       for slots, plan in self.plans)

    def command(self, text: str) -> str:
        text = text.strip()
        if text in ("", "list"):
            return self.describe()
        if text == "clear":
            return self.clear()
        try:
            return self.add(text)
        except FaultRuleError as error:
            return f"fault: {error}\n"
