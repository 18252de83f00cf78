"""Fan trace events out to observers without ever making the emulator wait for one.

The hub is the TraceSink the machine hands its devices when something observes (a
trace file, the TUI, a teaching panel). It is called on the CPU thread only; each
event gets a sequence number, the guest's time and is appended to every subscriber's
bounded deque. Observers drain their deque on their own thread at their own pace; one
that falls behind loses the oldest events (and sees the gap in the sequence numbers),
the emulator never blocks. With no observer at all the machine gets `discard` instead
and the devices skip building events.

On the CPU thread an event becomes one plain tuple, an Item: (seq, t, g, device, kind,
queue, fields). That is what the trace file's writer and the TUI's socket pickle as
they are, at C speed; a Record object is built only where someone reads one (a
subscriber's drain(), a listener that asked for Records), on that observer's thread.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from vmsim.devices.events import TraceEvent

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
        return cls(*item)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(int(data["seq"]), float(data["t"]), int(data.get("g") or 0),
                   str(data["dev"]), str(data["ev"]), data.get("q"), dict(data.get("f") or {}))


class Subscription:
    """One observer's bounded buffer; `drain()` from any single thread."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Item] = deque(maxlen=capacity)
        self._last_seq = 0
        self.lost = 0                       # events dropped because this observer lagged
        self.arrived = threading.Event()    # set on each event; for waiters, never required

    def _put(self, item: Item) -> None:
        self._items.append(item)
        if not self.arrived.is_set():       # set() takes a lock and notifies: once per drain
            self.arrived.set()

    def drain(self, limit: int | None = None) -> list[Record]:
        """Everything buffered so far (up to `limit`), oldest first."""
        return [Record(*item) for item in self.drain_items(limit)]

    def drain_items(self, limit: int | None = None) -> list[Item]:
        """drain(), as the hub's tuples (for an observer that only passes them on)."""
        out: list[Item] = []
        pop = self._items.popleft
        while self._items and (limit is None or len(out) < limit):
            try:
                item = pop()
            except IndexError:
                break
            seq = item[0]
            if seq != self._last_seq + 1 and self._last_seq:
                self.lost += seq - self._last_seq - 1
            self._last_seq = seq
            out.append(item)
        self.arrived.clear()
        return out


class TraceHub:
    """A TraceSink (call it with a TraceEvent) that stamps and fans events out."""

    def __init__(self, guest_time: Callable[[], int] | None = None) -> None:
        self.guest_time: Callable[[], int] = guest_time or (lambda: 0)
        self.t0 = time.monotonic()
        self._seq = 0
        self._subscribers: tuple[Subscription, ...] = ()
        self._listeners: tuple[Callable[[Record], None], ...] = ()
        self._item_listeners: tuple[Callable[[Item], None], ...] = ()

    def subscribe(self, capacity: int = DEFAULT_CAPACITY) -> Subscription:
        sub = Subscription(capacity)
        self._subscribers = self._subscribers + (sub,)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers = tuple(s for s in self._subscribers if s is not sub)

    def listen(self, callback: Callable[[Record], None]) -> None:
        """Call `callback` on the CPU thread for each event, once every subscriber has
        it: for a teaching pause or a breakpoint, which stops the guest at that event
        while the viewers already show it. It must not raise."""
        self._listeners = self._listeners + (callback,)

    def listen_items(self, callback: Callable[[Item], None]) -> None:
        """listen(), with the event as its tuple (Item): for a listener that would only
        turn the Record back into a tuple, or that rarely needs one. Item listeners run
        before Record listeners."""
        self._item_listeners = self._item_listeners + (callback,)

    def __call__(self, event: TraceEvent) -> None:
        self._seq += 1
        item = (self._seq, event.t - self.t0, self.guest_time(), event.device,
                event.kind, event.queue, event.fields)
        for sub in self._subscribers:
            sub._put(item)
        for listener in self._item_listeners:
            listener(item)
        if self._listeners:
            record = Record(*item)
            for listener in self._listeners:
                listener(record)


def tee(sinks: Iterable[Callable[[TraceEvent], None]]) -> Callable[[TraceEvent], None]:
    """One sink calling several (the `-d trace:` log and a hub)."""
    chosen = tuple(sinks)
    if len(chosen) == 1:
        return chosen[0]

    def sink(event: TraceEvent) -> None:
        for one in chosen:
            one(event)
    return sink
