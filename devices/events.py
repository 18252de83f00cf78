"""Trace events. They flow one way: from devices to observers (TUI, files, tests)."""
from __future__ import annotations

import itertools
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

# One event as a device records it: (seq, t, kind, device, queue, fields), with seq from
# its EventLog's counter and t the time.monotonic() of the event.
RawEvent = tuple


class EventLog:
    """Where a device records its events while something observes.

    A request makes seven events. A Python call per event into the observer cost the CPU
    thread microseconds each (between two requests the guest runs and the interpreter
    leaves the host's caches), so the hot sites record an event as one tuple:

        log.record((log.next_seq(), monotonic(), kind, device, queue, fields))

    For a trace hub gathering events, `record` is a bounded deque's append and
    `next_seq` a counter's: C calls, no Python frame. The hub stamps and fans the events
    out later, a batch at a time, and points `record` at a Python method while a listener
    must hear each event as it happens. Either attribute may change at any moment, so
    sites read them per event. The sequence numbers show any event a full buffer lost.
    """

    __slots__ = ("record", "next_seq", "settle")

    def __init__(self, record: Callable[[RawEvent], None], next_seq: Callable[[], int],
                 settle: Callable[[], None] = lambda: None) -> None:
        self.record = record
        self.next_seq = next_seq
        # Called once per notify by the transport, on the CPU thread: where the observer
        # may take care of what gathered (the hub hands its batches on).
        self.settle = settle

    def emit(self, kind: str, device: str, queue: int | None, fields: Fields) -> None:
        """One event, stamped now (for the sites that are not per request)."""
        self.record((self.next_seq(), time.monotonic(), kind, device, queue, fields))


def fields_dict(fields: dict[str, Any] | tuple) -> dict[str, Any]:
    """An event's fields as a dict, however the device sent them."""
    if type(fields) is tuple:
        return dict(zip(fields[0], fields[1:]))
    return fields  # type: ignore[return-value]


def discard(_event: TraceEvent) -> None:
    """The default sink, for when nothing observes."""


def event_log(sink: TraceSink) -> EventLog:
    """The log a device records into for `sink`: the sink's own (a trace hub's
    `event_log()`), or one that hands any other sink a TraceEvent per event."""
    own = getattr(sink, "event_log", None)
    if callable(own):
        return own()

    def build(event: RawEvent) -> None:
        _seq, t, kind, device, queue, fields = event
        sink(TraceEvent(kind, device, queue, fields_dict(fields), t))
    return EventLog(build, itertools.count(1).__next__)
