"""Trace events. They flow one way: from devices to observers (TUI, files, tests)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One observable step, e.g. kind="avail" (driver made a chain available),
    "used" (device returned a chain), "notify", "irq", "status", "request", "error".

    `fields` carries the kind's details as plain values (ints, strs), so that
    observers can render or serialise events without importing device code.
    """

    kind: str
    device: str
    queue: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    t: float = field(default_factory=time.monotonic)


TraceSink = Callable[[TraceEvent], None]


def discard(_event: TraceEvent) -> None:
    """The default sink, for when nothing observes."""
