"""Stopping a running guest for an observer: pause and resume, step to the next ring
event, break on a condition. No textual here: the TUI, the teaching mode and the
attach server all drive the same gate.

The guest stops in one of two places, both on the CPU thread, so the engine really
stands still (and guest time is not advanced by instructions):
- between engine runs, in the first virtio slot's poll() (the machine polls every
  device each time round its run loop; `pause()` asks the machine for attention so
  that happens at once, even from an idle guest);
- inside a device, at a trace event: the hub calls the gate's listener before anyone
  else sees the event, and while stepping or when a breakpoint matches it waits there.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

from vmsim.trace.hub import Record, TraceHub

RING_EVENTS = frozenset({"notify", "pop", "fill", "irq", "irq_ack", "queue_setup", "status",
                         "features", "request", "complete", "dispatch", "session_create",
                         "session_destroy", "needs_reset"})
_CONDITION = re.compile(r"\s*(\w+)\s*(!=|==|=|>=|<=|>|<)\s*([^,;]+?)\s*$")


class ConditionError(ValueError):
    """A break condition that does not parse; the message says why, in one line."""


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: str

    def matches(self, record: Record) -> bool:
        actual = _field(record, self.key)
        if actual is None:
            return False
        if self.op in ("=", "=="):
            return _same(actual, self.value)
        if self.op == "!=":
            return not _same(actual, self.value)
        try:
            a, b = float(actual), float(self.value)
        except (TypeError, ValueError):
            return False
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def _field(record: Record, key: str) -> Any:
    if key in ("kind", "event"):
        return record.kind
    if key == "queue":
        return record.queue
    if key == "device":
        return record.device
    return record.fields.get(key)


def _same(actual: Any, wanted: str) -> bool:
    if isinstance(actual, bool):
        return wanted.lower() in (("true", "1", "yes") if actual else ("false", "0", "no"))
    if isinstance(actual, int):
        try:
            return actual == int(wanted, 0)
        except ValueError:
            return False
    return str(actual).upper() == wanted.upper()


def parse_conditions(text: str) -> list[Condition]:
    """`opcode=AKCIPHER_SIGN, status!=OK` -> conditions that must all hold (a record
    without the field never matches it). Empty text: no conditions."""
    out = []
    for part in filter(None, (p.strip() for p in re.split(r",|\band\b", text))):
        match = _CONDITION.fullmatch(part)
        if match is None:
            raise ConditionError(f"cannot read {part!r}: use field=value, field!=value, "
                                 "field>number (e.g. opcode=AKCIPHER_SIGN, status!=OK)")
        out.append(Condition(*match.groups()))
    return out


def matches_all(conditions: list[Condition], record: Record) -> bool:
    return bool(conditions) and all(c.matches(record) for c in conditions)


class MachineGate:
    """Pause/resume/step/break for one running machine; any thread may call the
    controls, the CPU thread calls `listener` (via the hub) and `hold` (via poll)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.paused = False
        self.stepping = False
        self.breakpoints: list[Condition] = []
        self.stopped_at: Record | None = None
        self.closed = False
        self.attention: Callable[[], None] = lambda: None   # set to the machine's wake-up
        self.on_stop: Callable[[Record | None], None] = lambda record: None
        self.stops = 0
        self._stop_when: Callable[[Record], bool] | None = None
        self._hub: TraceHub | None = None
        self._armed = False
        self._arm_lock = threading.Lock()

    @property
    def stop_when(self) -> Callable[[Record], bool] | None:
        """Stop at every record this accepts (--explain: each ring transition; a lesson:
        its current step), besides stepping and breakpoints."""
        return self._stop_when

    @stop_when.setter
    def stop_when(self, accept: Callable[[Record], bool] | None) -> None:
        self._stop_when = accept
        self._rearm()

    def watch(self, hub: TraceHub) -> None:
        """Hear `hub`'s events while the gate could stop at one (stepping, a breakpoint
        or a stop condition set), and only then: a guest running under an open TUI
        costs the gate no call per event."""
        self._hub = hub
        self._rearm()

    def _rearm(self) -> None:
        with self._arm_lock:
            hub = self._hub
            armed = bool(self.stepping or self.breakpoints or self._stop_when is not None)
            if hub is None or armed == self._armed:
                return
            self._armed = armed
            if armed:
                hub.listen_items(self.item_listener)
            else:
                hub.unlisten_items(self.item_listener)

    # ---- controls (any thread) ---------------------------------------------------------

    def pause(self) -> None:
        with self._cond:
            self.paused = True
        self.attention()

    def resume(self) -> None:
        with self._cond:
            self.paused = self.stepping = False
            self.stopped_at = None
            self._cond.notify_all()
        self._rearm()

    def step(self) -> None:
        """Run to the next ring event, then stop there."""
        with self._cond:
            self.stepping = True
            self.paused = False
            self.stopped_at = None
            self._cond.notify_all()
        self._rearm()

    def set_breakpoints(self, conditions: list[Condition]) -> None:
        self.breakpoints = list(conditions)
        self._rearm()

    def close(self) -> None:
        """Let the guest go for good (the UI is quitting)."""
        with self._cond:
            self.closed = True
            self.paused = self.stepping = False
            self._cond.notify_all()
        self._rearm()

    # ---- CPU thread -------------------------------------------------------------------

    def _wait(self, record: Record | None) -> None:
        with self._cond:
            self.stopped_at = record
            self.stops += 1
        self.on_stop(record)
        with self._cond:
            while self.paused and not self.closed:
                self._cond.wait(0.5)

    def item_listener(self, item: tuple) -> None:
        """listener() for TraceHub.listen_items: builds the Record only when the gate
        could stop (stepping, a breakpoint or a stop condition set), which a run with
        the TUI open but not stepping never is."""
        if self.stepping or self.breakpoints or self._stop_when is not None:
            self.listener(Record.from_item(item))

    def listener(self, record: Record) -> None:
        """Hub listener: stop at this event when stepping or when a breakpoint holds."""
        if self.closed or (record.kind not in RING_EVENTS and self.stop_when is None):
            return
        if (self.stepping or (self.breakpoints and matches_all(self.breakpoints, record))
                or (self.stop_when is not None and self.stop_when(record))):
            with self._cond:
                self.stepping = False
                self.paused = True
            self._rearm()
            self._wait(record)

    def hold(self) -> None:
        """Between engine runs: wait here while paused."""
        if self.paused and not self.closed:
            self._wait(None)


class GatedDevice:
    """A virtio slot's device with the gate's `hold()` before each poll(): the machine
    polls every device between engine runs, so a paused gate stops the guest there."""

    def __init__(self, inner: Any, gate: MachineGate) -> None:
        self._inner = inner
        self._gate = gate
        # Register accesses go straight to the device: no wrapper call per access.
        self.read: Callable[[int, int], int] = inner.read
        self.write: Callable[[int, int, int], None] = inner.write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def poll(self) -> None:
        self._gate.hold()
        self._inner.poll()

    def start(self) -> None:
        self._inner.start()

    def close(self) -> None:
        self._inner.close()


def gated(factory: Callable[[Any], Any], gate: MachineGate) -> Callable[[Any], Any]:
    """Wrap a slot factory so its device holds at the gate."""
    return lambda slot: GatedDevice(factory(slot), gate)
