"""Fan trace events out to observers without ever making the emulator wait for one.

The hub is the TraceSink the machine hands its devices when something observes (a
trace file, the TUI, a teaching panel). With no observer at all the machine gets
`discard` instead and the devices skip building events.

The devices record into the hub's EventLog (vmsim.devices.events): each event one
tuple (seq, t, kind, device, queue, fields), its fields as cheap as the device could
make them (a chain's descriptors as tuples or a C copy, buffer previews as bytes).
While no listener must hear each event as it happens, recording is a bounded deque's
append: no Python runs per event on the CPU thread. At the end of each notify the
transport calls the log's `settle`: once FLUSH_EVENTS have gathered (or FLUSH_SECONDS
passed), the hub stamps them there, a batch at a time (an Item: (seq, t, g, device,
kind, queue, fields), t in seconds since the trace started, g the guest's time from the
event's own host time through the timebase), appends them to every subscriber's
bounded deque and hands each batched consumer (the trace file, the viewers' socket) its
new events. On the core that just made the events this costs about half what it cost
another thread, which also held the GIL the CPU thread then waited for; the hub's flush
thread only takes what an idle guest left. A listener (a teaching pause, stepping, a
breakpoint, the lesson) switches the log to stamping each event at once on the CPU
thread, and hearing it there.

Observers drain their deque on their own thread at their own pace; one that falls
behind loses the oldest events (and sees the gap in the sequence numbers), the
emulator never blocks. A Record, with its fields in their readable form (plain_fields:
dicts, hex), is built only where someone reads one, on that observer's side.
"""
from __future__ import annotations

import itertools
import operator
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from vmsim.devices.events import EventLog, RawEvent, TraceEvent, fields_dict
from vmsim.devices.virtio.native_capture import PACKED
from vmsim.devices.virtio.queue import chain_dicts, packed_writable_previews

_monotonic = time.monotonic          # per event: one global lookup instead of two
_KIND = operator.itemgetter(4)       # an Item's kind

# (seq, t, g, device, kind, queue, fields): a Record's fields in order, as a tuple.
Item = tuple

# What a subscriber's buffer holds before the oldest events go: a TUI at 10 Hz needs
# far less; a file writer gets more so a slow disk loses nothing in practice.
DEFAULT_CAPACITY = 1 << 16
# Events the devices may record before they are stamped (about two seconds of a busy
# guest's requests, should nothing settle them); past that the oldest go, counted by
# the gap they leave.
RAW_CAPACITY = 1 << 16
FLUSH_SECONDS = 0.05         # the longest an event waits before the batched consumers get it
FLUSH_CHUNK = 256            # events the flush thread stamps per hold of the GIL
FLUSH_EVENTS = 256           # events that make a batch due at the next notify


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
        if written and written[0] == PACKED:
            written = packed_writable_previews(written)
        out["written"] = [bytes(b).hex() for b in written]
    return out


class Subscription:
    """One observer's bounded buffer; `drain()` from any single thread. The hub extends
    it a batch at a time (no Python call per event)."""

    def __init__(self, capacity: int, collect: Callable[[], None]) -> None:
        self._items: deque[Item] = deque(maxlen=capacity)
        self._collect = collect
        self._last_seq = 0
        self.lost = 0                       # events dropped because this observer lagged

    def __len__(self) -> int:
        return len(self._items)

    def peek(self) -> list[Item]:
        """What is buffered now, oldest first, left in place (a history's copy)."""
        self._collect()
        return list(self._items)      # one C call: nothing is appended meanwhile

    def drain(self, limit: int | None = None) -> list[Record]:
        """Everything recorded so far (up to `limit`), oldest first."""
        return [Record.from_item(item) for item in self.drain_items(limit)]

    def drain_items(self, limit: int | None = None) -> list[Item]:
        """drain(), as the hub's tuples (for an observer that only passes them on)."""
        self._collect()
        items = self._items
        count = len(items) if limit is None else min(limit, len(items))
        out: list[Item] = []
        pop = items.popleft
        try:
            for _ in range(count):
                out.append(pop())
        except IndexError:       # the hub dropped the oldest meanwhile (we lagged)
            pass
        if out:
            # Gaps are events lost here (this deque was full) or before the hub stamped
            # them (its own buffer was): every one is counted.
            self.lost += out[-1][0] - self._last_seq - len(out)
            self._last_seq = out[-1][0]
        return out


class TraceHub:
    """A TraceSink (call it with a TraceEvent; devices record into `event_log()`) that
    stamps and fans events out.

    Everything an observer needs beyond its deque is asked for explicitly and costs
    nothing until then: `batched()` hands a consumer the events a batch at a time (the
    trace file, the viewers), `listen_items(kinds=...)` calls back
    for some kinds as they are stamped, and a listener that must hear every event as it
    happens (the TUI's gate, while it could stop; a lesson) comes and goes with
    `listen_items()` / `unlisten_items()` or `listen()`.
    """

    def __init__(self, guest_time: Callable[[], int] | None = None) -> None:
        self.guest_time: Callable[[], int] = guest_time or (lambda: 0)
        self.t0 = time.monotonic()
        self._timebase_hz: int | None = None
        self._next_seq = itertools.count(1).__next__
        self._raw: deque[RawEvent] = deque(maxlen=RAW_CAPACITY)
        self._log = EventLog(self._record_now, self._next_seq, self._settle)
        self._lock = threading.Lock()          # stamping: one thread at a time, in order
        self.last_seq = 0                      # the last event stamped
        self._subscribers: tuple[Subscription, ...] = ()
        self._extends: tuple[Callable[[Iterable[Item]], None], ...] = ()
        self._listeners: tuple[Callable[[Record], None], ...] = ()
        self._item_listeners: tuple[Callable[[Item], None], ...] = ()
        self._kind_listeners: dict[str, tuple[Callable[[Item], None], ...]] = {}
        self._batchers: tuple[_Batcher, ...] = ()
        self._flusher: threading.Thread | None = None
        self._period = FLUSH_SECONDS
        self._due = float("inf")               # when settle() flushes anyway (monotonic)
        self._stop = threading.Event()

    # ---- recording (CPU thread) -----------------------------------------------------

    def event_log(self) -> EventLog:
        """What the devices record into (vmsim.devices.events.event_log)."""
        return self._log

    @property
    def timebase_hz(self) -> int | None:
        """Set where guest time is CLOCK_MONOTONIC through a timebase (vmsim's
        GuestClock): an event's guest time then follows from its own host time, so it
        can be stamped later; otherwise each event is stamped (guest_time()) at once."""
        return self._timebase_hz

    @timebase_hz.setter
    def timebase_hz(self, hz: int | None) -> None:
        self._timebase_hz = hz
        self._choose_recording()

    def _choose_recording(self) -> None:
        gather = bool(self._timebase_hz) and not self._listeners and not self._item_listeners
        self._log.record = self._raw.append if gather else self._record_now

    def __call__(self, event: TraceEvent) -> None:
        self._log.record((self._next_seq(), event.t, event.kind, event.device, event.queue,
                          event.fields))

    def _record_now(self, event: RawEvent) -> None:
        """The log's `record` while a listener must hear each event as it happens."""
        with self._lock:
            item = self._stamp([event])[0] if not self._raw else self._stamp_gathered(event)
        for listener in self._item_listeners:
            listener(item)
        if self._listeners:
            record = Record.from_item(item)
            for listener in self._listeners:
                listener(record)

    # ---- stamping (any thread, under the lock) --------------------------------------

    def _stamp(self, events: list[RawEvent]) -> list[Item]:
        t0, hz = self.t0, self._timebase_hz
        if hz:
            items = [(seq, t - t0, int(t * hz), device, kind, queue, fields)
                     for seq, t, kind, device, queue, fields in events]
        else:
            items = [(seq, t - t0, self.guest_time(), device, kind, queue, fields)
                     for seq, t, kind, device, queue, fields in events]
        for extend in self._extends:
            extend(items)
        for batcher in self._batchers:
            with batcher.taking:
                batcher.pending.extend(items)
        listened = self._kind_listeners
        # The kinds listened for (status, features, ...) are rare; a batch of requests'
        # events has none, and finding that out is one C pass, not a Python step each.
        if listened and not listened.keys().isdisjoint(map(_KIND, items)):
            for item in items:
                for listener in listened.get(item[4], ()):
                    listener(item)
        self.last_seq = items[-1][0]
        return items

    def _stamp_gathered(self, then: RawEvent | None = None, limit: int = 0) -> Item | None:
        """Stamp what was gathered (at most `limit` events, 0: all), then `then`."""
        raw = self._raw
        count = len(raw) if not limit else min(limit, len(raw))
        pop = raw.popleft
        events = [pop() for _ in range(count)]
        if then is not None:
            events.append(then)
        return self._stamp(events)[-1] if events else None

    def collect(self) -> None:
        """Stamp and fan out every event gathered so far (a subscriber about to read)."""
        if self._raw:
            with self._lock:
                self._stamp_gathered()

    # ---- observers ------------------------------------------------------------------

    def subscribe(self, capacity: int = DEFAULT_CAPACITY) -> Subscription:
        """A new subscriber gets the events after those gathered so far."""
        sub = Subscription(capacity, self.collect)
        with self._lock:
            if self._raw:
                self._stamp_gathered()
            sub._last_seq = self.last_seq
            self._subscribers = self._subscribers + (sub,)
            self._extends = tuple(s._items.extend for s in self._subscribers)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)
            self._extends = tuple(s._items.extend for s in self._subscribers)

    def batched(self, consume: Callable[[list[Item]], None],
                seconds: float = FLUSH_SECONDS) -> Callable[[], None]:
        """Call `consume(items)` with the new events a batch at a time: at a notify
        (settle) once FLUSH_EVENTS have gathered, and from the hub's flush thread when
        `seconds` have passed without one (an idle guest). Returns `flush`, for the end (and for
        a consumer that wants its events now): it calls `consume` even with no new event
        (a consumer may have output to retry). Two calls of `consume` never overlap,
        and each event is in exactly one batch."""
        batcher = _Batcher(consume)
        with self._lock:
            if self._raw:
                self._stamp_gathered()          # before: not this consumer's
            self._batchers = self._batchers + (batcher,)
        self._period = min(self._period, seconds)
        self._due = min(self._due, _monotonic() + self._period)
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="vmsim-trace-flush",
                                             daemon=True)
            self._flusher.start()

        def flush() -> None:
            self.collect()
            batcher.flush()
        return flush

    def _settle(self) -> None:
        """EventLog.settle: a transport calls it once per notify, on the CPU thread.
        Once FLUSH_EVENTS have gathered, or FLUSH_SECONDS have passed, the events are
        stamped and handed on here, a batch at a time: on the core that just made them,
        with the objects still in its caches, this costs about half what it cost the
        flush thread, which also held the GIL the CPU thread then waited for."""
        if len(self._raw) >= FLUSH_EVENTS or _monotonic() >= self._due:
            self.flush(chunked=False)

    def flush(self, chunked: bool = True) -> None:
        """Stamp everything gathered and hand each batched consumer its share;
        `chunked` (another thread than the CPU's), a chunk at a time, giving the CPU
        thread a chance at the GIL between chunks."""
        self._due = _monotonic() + self._period
        while True:
            with self._lock:
                self._stamp_gathered(limit=FLUSH_CHUNK if chunked else 0)
            for batcher in self._batchers:
                batcher.flush()
            if len(self._raw) < FLUSH_CHUNK:
                break
            time.sleep(0)                       # the GIL to the CPU thread, if it waits
        if self._raw:
            self.collect()
            for batcher in self._batchers:
                batcher.flush()

    def _flush_loop(self) -> None:
        """What an idle guest (no notify) left, and an end: a busy one flushes itself."""
        while not self._stop.wait(self._period):
            if _monotonic() >= self._due:
                self.flush()

    def close(self) -> None:
        """Stop the flush thread, after one last flush (safe to call twice)."""
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        self.flush()

    def listen(self, callback: Callable[[Record], None]) -> None:
        """Call `callback` on the CPU thread for each event as it happens, once every
        subscriber has it: for a teaching pause or a breakpoint, which stops the guest at
        that event while the viewers already show it. It must not raise."""
        self._listeners = self._listeners + (callback,)
        self._choose_recording()

    def listen_items(self, callback: Callable[[Item], None],
                     kinds: Iterable[str] | None = None) -> None:
        """listen(), with the event as its tuple (Item): for a listener that would only
        turn the Record back into a tuple, or that rarely needs one. Item listeners run
        before Record listeners. With `kinds`, only for events of those kinds, and when
        they are stamped (on whichever thread stamps them; the others cost it nothing):
        for a listener that keeps them, not one that must act as they happen."""
        if kinds is None:
            self._item_listeners = self._item_listeners + (callback,)
            self._choose_recording()
            return
        with self._lock:
            for kind in kinds:
                self._kind_listeners[kind] = self._kind_listeners.get(kind, ()) + (callback,)

    def unlisten_items(self, callback: Callable[[Item], None]) -> None:
        """Stop calling `callback` (added by listen_items without kinds)."""
        self._item_listeners = tuple(c for c in self._item_listeners if c != callback)
        self._choose_recording()


class _Batcher:
    """One batched() consumer: the events stamped since its last batch (a list the
    stamping extends: no Python step per event), the lock that keeps the flush thread
    and an explicit flush from handing it two batches at once, and the one that keeps
    the stamping from extending a batch already taken."""

    def __init__(self, consume: Callable[[list[Item]], None]) -> None:
        self.consume = consume
        self.pending: list[Item] = []
        self.lock = threading.Lock()
        self.taking = threading.Lock()
        self.failed = 0                     # events in batches `consume` raised on

    def flush(self) -> None:
        with self.lock:
            with self.taking:
                items, self.pending = self.pending, []
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
