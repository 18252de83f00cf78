"""Fan trace events out to observers without ever making the emulator wait for one.

The hub is the TraceSink the machine hands its devices when something observes (a
trace file, the TUI, a teaching panel). It is called on the CPU thread only; each
event gets a sequence number, the guest's time and is appended to every subscriber's
bounded deque. Observers drain their deque on their own thread at their own pace; one
that falls behind loses the oldest events (and sees the gap in the sequence numbers),
the emulator never blocks. With no observer at all the machine gets `discard` instead
and the devices skip building events.

On the CPU thread an event becomes one plain tuple, an Item: (seq, t, g, device, kind,
queue, fields), and the fields stay as cheap as the device could make them (a chain's
descriptors as tuples, buffer previews as bytes). That is what the trace file's writer
and the TUI's socket pickle as they are, at C speed; a Record, with its fields in
their readable form (plain_fields: dicts, hex), is built only where someone reads one
(a subscriber's drain(), a listener that asked for Records), on that observer's side.
Per event the hub makes no Python call for an observer unless it asked for one.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from vmsim.devices.events import TraceEvent, fields_dict
from vmsim.devices.virtio.queue import chain_dicts

_monotonic = time.monotonic          # per event: one global lookup instead of two

# (seq, t, g, device, kind, queue, fields): a Record's fields in order, as a tuple.
Item = tuple

# What a subscriber's buffer holds before the oldest events go: a TUI at 10 Hz needs
# far less; a file writer gets more so a slow disk loses nothing in practice.
DEFAULT_CAPACITY = 1 << 16


@dataclass(slots=True)
class Record:
    """One event as observers see it: the device's TraceEvent plus sequence number,
    host time (seconds since the trace started) and guest time (timebase ticks)."""

    seq: int
    t: float
    g: int
    device: str
    kind: str
    queue: int | None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """QEMU-style event name, as `-d trace:` matches it (virtio_crypto_pop)."""
        return f"{self.device}_{self.kind}".replace("-", "_")

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "t": round(self.t, 9), "g": self.g, "dev": self.device,
                "ev": self.kind, "q": self.queue, "f": self.fields}

    @classmethod
    def from_item(cls, item: Item) -> Record:
        """The Record of a hub tuple, its fields in their readable form (plain_fields)."""
        seq, t, g, device, kind, queue, fields = item
        return cls(seq, t, g, device, kind, queue, plain_fields(fields))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(int(data["seq"]), float(data["t"]), int(data.get("g") or 0),
                   str(data["dev"]), str(data["ev"]), data.get("q"), dict(data.get("f") or {}))


def plain_fields(fields: dict[str, Any] | tuple) -> dict[str, Any]:
    """An event's fields as observers read and record them. On the CPU thread a
    request's events carry their fields as a (names, values...) tuple, the pop event's
    `chain` is raw (chain_capture) and a completion's `written` previews are bytes: the
    dicts and the hex are made here, on the observer's side, and only for those who
    look. Anything else (and fields already plain) is returned as it is."""
    if type(fields) is tuple:
        fields = fields_dict(fields)
    chain = fields.get("chain")
    written = fields.get("written")
    if type(chain) is not tuple and type(written) is not tuple:
        return fields
    out = dict(fields)
    if type(chain) is tuple:
        out["chain"] = chain_dicts(chain)
    if type(written) is tuple:
        out["written"] = [bytes(b).hex() for b in written]
    return out


class Subscription:
    """One observer's bounded buffer; `drain()` from any single thread. The hub appends
    to it directly (a deque's append, no Python call per event)."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Item] = deque(maxlen=capacity)
        self._last_seq = 0
        self.lost = 0                       # events dropped because this observer lagged

    def __len__(self) -> int:
        return len(self._items)

    def peek(self) -> list[Item]:
        """What is buffered now, oldest first, left in place (a history's copy)."""
        return list(self._items)      # one C call: the CPU thread cannot append meanwhile

    def drain(self, limit: int | None = None) -> list[Record]:
        """Everything buffered so far (up to `limit`), oldest first."""
        return [Record.from_item(item) for item in self.drain_items(limit)]

    def drain_items(self, limit: int | None = None) -> list[Item]:
        """drain(), as the hub's tuples (for an observer that only passes them on)."""
        items = self._items
        count = len(items) if limit is None else min(limit, len(items))
        out: list[Item] = []
        pop = items.popleft
        try:
            for _ in range(count):
                out.append(pop())
        except IndexError:       # the hub dropped the oldest meanwhile (we lagged)
            pass
        if out:   # what the deque holds is consecutive: a gap is only ever at its start
            first = out[0][0]
            if self._last_seq and first != self._last_seq + 1:
                self.lost += first - self._last_seq - 1
            self._last_seq = out[-1][0]
        return out


class TraceHub:
    """A TraceSink (call it with a TraceEvent) that stamps and fans events out.

    Per event, on the CPU thread, it makes one tuple and appends it to each
    subscriber's deque; everything else an observer needs is asked for explicitly and
    costs nothing until then: `batched()` hands a consumer the events a batch at a time
    (the trace file), `listen_items(kinds=...)` calls back only for some kinds, and a
    listener that only matters sometimes (the TUI's gate, while stepping) comes and goes
    with `unlisten_items()`.
    """

    def __init__(self, guest_time: Callable[[], int] | None = None) -> None:
        self.guest_time: Callable[[], int] = guest_time or (lambda: 0)
        # Set where guest time is CLOCK_MONOTONIC through a timebase (vmsim's GuestClock):
        # then an event's guest time comes from its own host timestamp, without a call.
        self.timebase_hz: int | None = None
        self.t0 = time.monotonic()
        self._seq = 0
        self._subscribers: tuple[Subscription, ...] = ()
        self._appends: tuple[Callable[[Item], None], ...] = ()
        self._listeners: tuple[Callable[[Record], None], ...] = ()
        self._item_listeners: tuple[Callable[[Item], None], ...] = ()
        self._kind_listeners: dict[str, tuple[Callable[[Item], None], ...]] = {}
        self._batchers: tuple[_Batcher, ...] = ()
        self._due_seq: float = float("inf")     # when the next batch is due: its seq...
        self._due_t: float = float("inf")       # ...or its time (seconds since t0)

    def subscribe(self, capacity: int = DEFAULT_CAPACITY) -> Subscription:
        sub = Subscription(capacity)
        self._subscribers = self._subscribers + (sub,)
        self._appends = tuple(s._items.append for s in self._subscribers)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers = tuple(s for s in self._subscribers if s is not sub)
        self._appends = tuple(s._items.append for s in self._subscribers)

    def batched(self, consume: Callable[[list[Item]], None], every: int = 256,
                seconds: float = 0.05) -> Callable[[], None]:
        """Call `consume(items)` with the events so far once `every` have gathered or
        `seconds` have passed since the last batch, on the CPU thread (where a pickle of
        the whole batch costs less than a Python call per event). Returns `flush`, for
        an idle guest (from a timer) and for the end: it calls `consume` even with no
        new event (a consumer may have output to retry). It and the CPU thread never
        call `consume` at the same time, and each event is in exactly one batch."""
        batcher = _Batcher(self, consume, every, seconds)
        self._batchers = self._batchers + (batcher,)
        self.subscribe(capacity=1 << 30)    # bounded by `every`: it is drained that often
        batcher.sub = self._subscribers[-1]
        self._schedule()
        return batcher.flush

    def _schedule(self) -> None:
        self._due_seq = min((b.due_seq for b in self._batchers), default=float("inf"))
        self._due_t = min((b.due_t for b in self._batchers), default=float("inf"))

    def listen(self, callback: Callable[[Record], None]) -> None:
        """Call `callback` on the CPU thread for each event, once every subscriber has
        it: for a teaching pause or a breakpoint, which stops the guest at that event
        while the viewers already show it. It must not raise."""
        self._listeners = self._listeners + (callback,)

    def listen_items(self, callback: Callable[[Item], None],
                     kinds: Iterable[str] | None = None) -> None:
        """listen(), with the event as its tuple (Item): for a listener that would only
        turn the Record back into a tuple, or that rarely needs one. With `kinds`, only
        for events of those kinds (the others cost it nothing). Item listeners run
        before Record listeners."""
        if kinds is None:
            self._item_listeners = self._item_listeners + (callback,)
            return
        for kind in kinds:
            self._kind_listeners[kind] = self._kind_listeners.get(kind, ()) + (callback,)

    def unlisten_items(self, callback: Callable[[Item], None]) -> None:
        """Stop calling `callback` (added by listen_items without kinds)."""
        self._item_listeners = tuple(c for c in self._item_listeners if c != callback)

    def __call__(self, event: TraceEvent) -> None:
        self.emit(event.kind, event.device, event.queue, event.fields, event.t)

    def emit(self, kind: str, device: str, queue: int | None, fields: dict[str, Any],
             t: float | None = None) -> None:
        """An event without its TraceEvent object (vmsim.devices.events.emitter: what
        the devices call), stamped now unless `t` says when it happened."""
        if t is None:
            t = _monotonic()
        self._seq = seq = self._seq + 1
        hz = self.timebase_hz
        item = (seq, t - self.t0, int(t * hz) if hz else self.guest_time(), device, kind,
                queue, fields)
        for append in self._appends:
            append(item)
        if seq >= self._due_seq or item[1] >= self._due_t:
            for batcher in self._batchers:
                batcher.due(seq, item[1])
        for listener in self._item_listeners:
            listener(item)
        if self._kind_listeners:
            for listener in self._kind_listeners.get(kind, ()):
                listener(item)
        if self._listeners:
            record = Record.from_item(item)
            for listener in self._listeners:
                listener(record)


class _Batcher:
    """One batched() consumer: its buffer, when its next batch is due, and the lock that
    keeps the CPU thread and an idle flush from handing it two batches at once."""

    def __init__(self, hub: TraceHub, consume: Callable[[list[Item]], None], every: int,
                 seconds: float) -> None:
        self.hub, self.consume, self.every, self.seconds = hub, consume, every, seconds
        self.sub: Subscription
        self.lock = threading.Lock()
        self.failed = 0                     # events in batches `consume` raised on
        self.due_seq = hub._seq + every
        self.due_t = time.monotonic() - hub.t0 + seconds

    def due(self, seq: int, t: float) -> None:
        if seq >= self.due_seq or t >= self.due_t:
            self.flush(t)

    def flush(self, now: float | None = None) -> None:
        with self.lock:
            if now is None:
                now = time.monotonic() - self.hub.t0
            self.due_seq = self.hub._seq + self.every
            self.due_t = now + self.seconds
            self.hub._schedule()
            items = self.sub.drain_items()
            try:
                self.consume(items)
            except Exception as error:  # noqa: BLE001 - an observer never fails the guest
                self.failed += len(items)
                if self.failed == len(items):          # the first failure is logged
                    from vmsim import log

                    log.internal_error("trace", f"an observer dropped a batch: {error!r}")


def tee(sinks: Iterable[Callable[[TraceEvent], None]]) -> Callable[[TraceEvent], None]:
    """One sink calling several (the `-d trace:` log and a hub)."""
    chosen = tuple(sinks)
    if len(chosen) == 1:
        return chosen[0]

    def sink(event: TraceEvent) -> None:
        for one in chosen:
            one(event)
    return sink
