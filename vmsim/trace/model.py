"""Replay trace events into what a viewer shows: the device, each queue's rings and
descriptor owners, recent requests, sessions, the worker pool and rates.

The same model serves the live TUI (fed from a hub subscription), `vmsim trace view`
(fed from a file, and rebuilt up to any point to scrub backwards), the exports and the
teaching panel, so they all agree on what happened. Descriptor ownership follows the
events: popped chains are at the device, filled ones are used until the driver
reclaims them (which the device sees as used_event passing them, when EVENT_IDX is on;
without it, at the chain's next pop), everything else is free.
"""
from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from vmsim.trace.hub import Record

FREE, AVAIL, DEVICE, USED = "free", "avail", "device", "used"
MAX_REQUESTS = 500          # recent requests kept for the Requests pane
RATE_WINDOW = 60            # seconds of per-second history for the sparklines

# virtio-crypto's config space (struct virtio_crypto_config), offset -> (name, size).
CRYPTO_CONFIG = {0: ("status", 4), 4: ("max_dataqueues", 4), 8: ("crypto_services", 4),
                 12: ("cipher_algo_l", 4), 16: ("cipher_algo_h", 4), 20: ("hash_algo", 4),
                 24: ("mac_algo_l", 4), 28: ("mac_algo_h", 4), 32: ("aead_algo", 4),
                 36: ("max_cipher_key_len", 4), 40: ("max_auth_key_len", 4),
                 44: ("akcipher_algo", 4), 48: ("max_size", 8)}


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile of `values` (unsorted); None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(share * len(ordered) + 0.5)) - 1))
    return ordered[rank]


@dataclass
class QueueState:
    device: str
    index: int
    name: str
    size: int = 0
    desc: int = 0
    driver: int = 0
    device_area: int = 0
    avail_idx: int = 0          # as the driver last published it (seen at notify/pop)
    last_avail: int = 0
    used_idx: int = 0
    used_event: int | None = None
    in_flight: int = 0
    owners: list[str] = field(default_factory=list)
    avail_ring: dict[int, int] = field(default_factory=dict)    # slot -> head
    used_ring: dict[int, int] = field(default_factory=dict)     # slot -> head
    chains: dict[int, list[int]] = field(default_factory=dict)  # head -> table indices
    used_at: dict[int, int] = field(default_factory=dict)       # head -> its used idx
    notifies: int = 0
    pops: int = 0
    fills: int = 0
    irqs: int = 0
    suppressed: int = 0

    def counts(self) -> Counter:
        return Counter(self.owners)


@dataclass
class Request:
    """One chain from pop to used, with what the device decoded and wrote."""

    device: str
    queue: int
    head: int
    seq: int
    t_pop: float
    kick_seq: int | None = None
    t_kick: float | None = None
    chain: list[dict[str, Any]] = field(default_factory=list)
    kind: str = ""
    opcode: str = "?"
    algo: str = ""
    session: int | None = None
    mode: str = ""
    readable: int = 0
    writable: int = 0
    status: str | None = None
    used: int | None = None
    duration_us: float | None = None
    where: str = ""
    written: list[str] = field(default_factory=list)
    t_dispatch: float | None = None
    t_complete: float | None = None
    t_fill: float | None = None
    fill_seq: int | None = None
    t_irq: float | None = None
    irq_seq: int | None = None
    worker: int | None = None
    fault: str = ""          # what an injected fault did to it (docs/faults.md)

    @property
    def latency_us(self) -> float | None:
        """pop to used entry, as the guest experiences the device."""
        if self.t_fill is None:
            return None
        return (self.t_fill - self.t_pop) * 1e6

    @property
    def done(self) -> bool:
        return self.t_fill is not None


@dataclass
class DeviceState:
    name: str
    device_id: int = 0
    queue_names: list[str] = field(default_factory=list)
    status: int = 0
    status_names: str = "RESET"
    offered: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    features_ok: bool | None = None
    config: dict[str, int] = field(default_factory=dict)
    needs_reset: str | None = None
    errors: list[str] = field(default_factory=list)
    irq_line: bool = False


@dataclass
class Session:
    id: int
    opcode: str
    algo: str | None
    created: float
    destroyed: float | None = None
    requests: int = 0


@dataclass
class OpStats:
    count: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


class TraceModel:
    """Apply records one by one (`apply`); read the state between them."""

    def __init__(self, devices: Iterable[dict[str, Any]] = (), keep_requests: int = MAX_REQUESTS) -> None:
        self.devices: dict[str, DeviceState] = {}
        self.queues: dict[tuple[str, int], QueueState] = {}
        self.requests: deque[Request] = deque(maxlen=keep_requests)
        self.all_requests: list[Request] | None = None   # set to a list to keep every one
        self._open: dict[tuple[str, int, int], Request] = {}
        self._await_irq: dict[tuple[str, int], list[Request]] = {}
        self._kick: dict[tuple[str, int], Record] = {}
        self.sessions: dict[int, Session] = {}
        self.faults_injected = 0
        self.ops: dict[str, OpStats] = {}
        self.events = 0
        self.last: Record | None = None
        self.kinds: Counter = Counter()
        self.workers_busy: dict[int, float] = {}          # lane -> busy seconds
        self.worker_restarts: dict[str, int] = {}         # why a worker ended -> how often
        self._lanes_end: list[float] = []
        self.worker_count = 0
        self.backlog = 0
        self.rates: dict[str, deque[float]] = {k: deque(maxlen=RATE_WINDOW)
                                               for k in ("requests", "irqs", "p50", "p99")}
        self._second: int | None = None
        self._sec_requests = 0
        self._sec_irqs = 0
        self._sec_lat: list[float] = []
        for info in devices:
            self._device(info["name"], info)

    # ---- lookups --------------------------------------------------------------------

    def _device(self, name: str, info: dict[str, Any] | None = None) -> DeviceState:
        state = self.devices.get(name)
        if state is None:
            state = self.devices[name] = DeviceState(name)
        if info:
            state.device_id = int(info.get("device_id", 0))
            state.queue_names = list(info.get("queue_names", []))
        return state

    def queue(self, device: str, index: int) -> QueueState:
        key = (device, index)
        state = self.queues.get(key)
        if state is None:
            names = self._device(device).queue_names
            name = names[index] if index < len(names) else f"q{index}"
            state = self.queues[key] = QueueState(device, index, name)
        return state

    def queue_name(self, device: str, index: int | None) -> str:
        return "-" if index is None else self.queue(device, index).name

    # ---- applying --------------------------------------------------------------------

    def apply_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, r: Record) -> None:
        self.events += 1
        self.last = r
        self.kinds[r.kind] += 1
        self._tick(r.t)
        handler = getattr(self, f"_on_{r.kind}", None)
        if handler is not None:
            handler(r)

    def _tick(self, t: float) -> None:
        second = int(t)
        if self._second is None:
            self._second = second
        while second > self._second:
            self.rates["requests"].append(self._sec_requests)
            self.rates["irqs"].append(self._sec_irqs)
            self.rates["p50"].append(percentile(self._sec_lat, 0.5) or 0.0)
            self.rates["p99"].append(percentile(self._sec_lat, 0.99) or 0.0)
            self._sec_requests = self._sec_irqs = 0
            self._sec_lat = []
            self._second += 1

    def _on_status(self, r: Record) -> None:
        dev = self._device(r.device)
        dev.status = int(r.fields.get("new", 0))
        dev.status_names = str(r.fields.get("names", ""))
        if dev.status == 0:
            dev.needs_reset = None
            for key in [k for k in self.queues if k[0] == r.device]:
                q = self.queues[key]
                q.owners = [FREE] * q.size
                q.chains.clear()
                q.used_at.clear()
                q.in_flight = 0

    def _on_features(self, r: Record) -> None:
        dev = self._device(r.device)
        dev.offered = list(r.fields.get("offered_names", []))
        dev.accepted = list(r.fields.get("accepted_names", []))
        dev.features_ok = bool(r.fields.get("ok"))

    def _on_config_read(self, r: Record) -> None:
        dev = self._device(r.device)
        offset = int(r.fields.get("offset", 0))
        named = CRYPTO_CONFIG.get(offset) if dev.device_id == 20 else None
        key = named[0] if named else f"config+{offset:#x}"
        dev.config[key] = int(r.fields.get("value", 0))

    def _on_needs_reset(self, r: Record) -> None:
        self._device(r.device).needs_reset = str(r.fields.get("reason", ""))

    def _on_error(self, r: Record) -> None:
        dev = self._device(r.device)
        dev.errors.append(str(r.fields.get("reason", "")))
        del dev.errors[:-20]

    def _on_queue_setup(self, r: Record) -> None:
        q = self.queue(r.device, r.queue or 0)
        f = r.fields
        q.size = int(f.get("size", 0))
        q.desc, q.driver, q.device_area = int(f.get("desc", 0)), int(f.get("driver", 0)), int(f.get("device", 0))
        q.owners = [FREE] * q.size
        q.avail_idx = q.last_avail = q.used_idx = q.in_flight = 0
        q.avail_ring.clear()
        q.used_ring.clear()
        q.chains.clear()
        q.used_at.clear()

    def _on_notify(self, r: Record) -> None:
        if r.queue is None:
            return
        q = self.queue(r.device, r.queue)
        q.notifies += 1
        if r.fields.get("avail_idx") is not None:
            q.avail_idx = int(r.fields["avail_idx"])
        self._kick[(r.device, r.queue)] = r

    def _set_owner(self, q: QueueState, indices: list[int], owner: str) -> None:
        for i in indices:
            if 0 <= i < len(q.owners):
                q.owners[i] = owner

    def _reclaim(self, q: QueueState, used_event: int) -> None:
        """The driver has reclaimed every used entry before used_event."""
        for head, position in list(q.used_at.items()):
            if (used_event - position - 1) & 0xFFFF < 0x8000:
                del q.used_at[head]
                self._set_owner(q, q.chains.pop(head, []), FREE)

    def _on_pop(self, r: Record) -> None:
        if r.queue is None:
            return
        q = self.queue(r.device, r.queue)
        f = r.fields
        head = int(f.get("head", 0))
        q.pops += 1
        q.last_avail = int(f.get("last_avail_idx", q.last_avail))
        q.avail_idx = int(f.get("avail_idx", q.avail_idx))
        q.in_flight = int(f.get("in_flight", q.in_flight + 1))
        if q.size:
            q.avail_ring[(q.last_avail - 1) % q.size] = head
        if f.get("used_event") is not None:
            q.used_event = int(f["used_event"])
            self._reclaim(q, q.used_event)
        chain = list(f.get("chain", []))
        old = q.chains.pop(head, None)
        if old is not None:                      # reused without an EVENT_IDX hint
            q.used_at.pop(head, None)
            self._set_owner(q, old, FREE)
        indices = [int(d["index"]) for d in chain if not d.get("indirect")]
        q.chains[head] = indices
        self._set_owner(q, indices, DEVICE)
        kick = self._kick.get((r.device, r.queue))
        req = Request(r.device, r.queue, head, r.seq, r.t, chain=chain,
                      kick_seq=kick.seq if kick else None, t_kick=kick.t if kick else None)
        self._open[(r.device, r.queue, head)] = req
        self.requests.append(req)
        if self.all_requests is not None:
            self.all_requests.append(req)

    def _on_fault(self, r: Record) -> None:
        """A fault rule fired on a request: counted, and noted on the request."""
        self.faults_injected += 1
        req = self._open.get((r.device, r.queue or 0, int(r.fields.get("head", -1))))
        if req is not None:
            req.fault = " ".join(f"{key}={value}" for key, value in r.fields.items()
                                 if key not in ("head", "opcode", "rules"))

    def _on_request(self, r: Record) -> None:
        f = r.fields
        req = self._open.get((r.device, r.queue or 0, int(f.get("head", -1))))
        if req is None:
            return
        req.kind = str(f.get("kind", ""))
        req.opcode = str(f.get("opcode", "?"))
        req.algo = str(f.get("algo", ""))
        req.session = f.get("session")
        req.mode = str(f.get("mode", ""))
        req.readable = int(f.get("readable", 0))
        req.writable = int(f.get("writable", 0))
        if req.session is not None and req.session in self.sessions and req.kind == "data":
            self.sessions[req.session].requests += 1

    def _on_dispatch(self, r: Record) -> None:
        req = self._open.get((r.device, r.queue or 0, int(r.fields.get("head", -1))))
        self.worker_count = max(self.worker_count, int(r.fields.get("workers", 0)))
        self.backlog = int(r.fields.get("backlog", 0))
        if req is not None:
            req.t_dispatch = r.t

    def _on_complete(self, r: Record) -> None:
        f = r.fields
        req = self._open.get((r.device, r.queue or 0, int(f.get("head", -1))))
        if req is None:
            return
        req.status = str(f.get("status", ""))
        req.used = f.get("used")
        req.duration_us = f.get("duration_us")
        req.where = str(f.get("where", ""))
        req.written = list(f.get("written", []))
        req.t_complete = r.t
        if req.where == "pool":
            self.backlog = max(0, self.backlog - 1)
            start = req.t_dispatch if req.t_dispatch is not None else req.t_pop
            req.worker = self._lane(start, r.t)

    def _lane(self, start: float, end: float) -> int:
        """A worker lane for a pooled job: the first lane free at `start` (the pool
        does not say which process ran it; lanes show how many ran at once)."""
        for lane, busy_until in enumerate(self._lanes_end):
            if busy_until <= start:
                self._lanes_end[lane] = end
                break
        else:
            lane = len(self._lanes_end)
            self._lanes_end.append(end)
        self.workers_busy[lane] = self.workers_busy.get(lane, 0.0) + (end - start)
        return lane

    def _on_fill(self, r: Record) -> None:
        if r.queue is None:
            return
        q = self.queue(r.device, r.queue)
        f = r.fields
        head = int(f.get("head", 0))
        q.fills += 1
        q.used_idx = int(f.get("used_idx", q.used_idx + 1))
        q.in_flight = int(f.get("in_flight", max(0, q.in_flight - 1)))
        if q.size:
            q.used_ring[(q.used_idx - 1) % q.size] = head
        q.used_at[head] = (q.used_idx - 1) & 0xFFFF
        self._set_owner(q, q.chains.get(head, []), USED)
        req = self._open.pop((r.device, r.queue, head), None)
        if req is None:
            return
        req.used = int(f.get("len", req.used or 0))
        req.t_fill = r.t
        req.fill_seq = r.seq
        self._await_irq.setdefault((r.device, r.queue), []).append(req)
        self._count(req)

    def _count(self, req: Request) -> None:
        stats = self.ops.setdefault(req.opcode, OpStats())
        stats.count += 1
        stats.bytes_in += req.readable
        stats.bytes_out += req.used or 0
        latency = req.latency_us
        if latency is not None:
            stats.latencies.append(latency)
            self._sec_lat.append(latency)
        stats.statuses[req.status or "?"] += 1
        self._sec_requests += 1

    def _on_irq(self, r: Record) -> None:
        dev = self._device(r.device)
        if not r.fields.get("raised"):
            if r.queue is not None:
                self.queue(r.device, r.queue).suppressed += 1
            return
        dev.irq_line = True
        self._sec_irqs += 1
        if r.queue is None:
            return
        self.queue(r.device, r.queue).irqs += 1
        for req in self._await_irq.pop((r.device, r.queue), []):
            req.t_irq = r.t
            req.irq_seq = r.seq

    def _on_irq_ack(self, r: Record) -> None:
        if not r.fields.get("interrupt_status"):
            self._device(r.device).irq_line = False

    def _on_session_create(self, r: Record) -> None:
        sid = int(r.fields.get("session", 0))
        self.sessions[sid] = Session(sid, str(r.fields.get("opcode", "")),
                                     r.fields.get("algo"), r.t)

    def _on_worker_restart(self, r: Record) -> None:
        reason = str(r.fields.get("reason", "?"))
        self.worker_restarts[reason] = self.worker_restarts.get(reason, 0) + 1

    def _on_session_destroy(self, r: Record) -> None:
        sid = int(r.fields.get("session", 0))
        if sid in self.sessions:
            self.sessions[sid].destroyed = r.t

    # ---- summaries --------------------------------------------------------------------

    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.destroyed is None]

    def worker_share(self, elapsed: float) -> dict[int, float]:
        """Each worker lane's busy share of `elapsed` seconds."""
        if elapsed <= 0:
            return {}
        return {lane: min(1.0, busy / elapsed) for lane, busy in sorted(self.workers_busy.items())}


def build(records: list[Record], upto: int, devices: Iterable[dict[str, Any]] = ()) -> TraceModel:
    """The model after the first `upto` records (for scrubbing back in a viewer)."""
    model = TraceModel(devices)
    model.apply_all(records[:upto])
    return model


def index_of_seq(records: list[Record], seq: int) -> int:
    """Position of the record with sequence number `seq` (records are in seq order)."""
    return bisect.bisect_left([r.seq for r in records], seq)
