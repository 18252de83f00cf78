"""Trace events. They flow one way: from devices to observers (TUI, files, tests)."""
from __future__ import annotations

import time
from typing import Any, Callable


class TraceEvent:
    """One observable step, e.g. kind="avail" (driver made a chain available),
    "used" (device returned a chain), "notify", "irq", "status", "request", "error".

    `fields` carries the kind's details as plain values (ints, strs), so that
    observers can render or serialise events without importing device code.

    A plain slotted class rather than a frozen dataclass: devices build several per
    request while something observes, and a frozen dataclass's constructor (one
    object.__setattr__ per field) cost about a microsecond each of those.
    """

    __slots__ = ("kind", "device", "queue", "fields", "t")

    def __init__(self, kind: str, device: str, queue: int | None = None,
                 fields: dict[str, Any] | None = None, t: float | None = None) -> None:
        self.kind = kind
        self.device = device
        self.queue = queue
        self.fields = {} if fields is None else fields
        self.t = time.monotonic() if t is None else t

    def __repr__(self) -> str:
        return (f"TraceEvent({self.kind!r}, {self.device!r}, queue={self.queue!r}, "
                f"fields={self.fields!r}, t={self.t!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TraceEvent):
            return NotImplemented
        return (self.kind, self.device, self.queue, self.fields, self.t) == \
            (other.kind, other.device, other.queue, other.fields, other.t)

    __hash__ = None  # type: ignore[assignment]  # fields is a dict: not hashable


TraceSink = Callable[[TraceEvent], None]

# An event's fields as a device may send them: a dict, or for the events of every
# request a tuple (names, value, value, ...) with `names` a constant tuple of the field
# names. The tuple is what the CPU thread builds and the trace file's writer pickles
# (cheaper than a dict, each of them); observers read the dict (`fields_dict`).
Fields = "dict[str, Any] | tuple"

# How a device reports one event: (kind, device, queue, fields).
TraceEmit = Callable[[str, str, "int | None", Fields], None]


def fields_dict(fields: dict[str, Any] | tuple) -> dict[str, Any]:
    """An event's fields as a dict, however the device sent them."""
    if type(fields) is tuple:
        return dict(zip(fields[0], fields[1:]))
    return fields  # type: ignore[return-value]


def discard(_event: TraceEvent) -> None:
    """The default sink, for when nothing observes."""


def emitter(sink: TraceSink) -> TraceEmit:
    """How a device hands `sink` its events. A sink with an `emit(kind, device, queue,
    fields)` method (the trace hub) takes them as they are: a device reports several
    events per request while something observes, and a TraceEvent object for each was
    one more Python call on the CPU thread. Any other sink gets a TraceEvent."""
    emit = getattr(sink, "emit", None)
    if callable(emit):
        return emit

    def build(kind: str, device: str, queue: int | None, fields: dict[str, Any] | tuple,
              ) -> None:
        sink(TraceEvent(kind, device, queue, fields_dict(fields)))
    return build
