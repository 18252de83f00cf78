"""What both timeline exports draw, computed once from a trace: each request with its
times and lanes, worker slices, per-queue counter samples and the instants.

A queue can have several requests in flight (pooled public-key jobs overlap), so each
queue gets as many lanes as it ever had requests at once; a slice runs from the
chain's pop to its used entry. A request's flow goes kick -> pop -> worker -> used ->
IRQ, through the events that carried it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmsim.trace.model import FREE, Request, TraceModel
from vmsim.trace.record import Trace


@dataclass
class CounterSample:
    t: float
    device: str
    queue: int
    free: int
    in_flight: int


@dataclass
class Instant:
    t: float
    device: str
    queue: int | None
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline:
    requests: list[Request]
    lanes: dict[int, int]                               # id(request) -> lane in its queue
    queue_lanes: dict[tuple[str, int], int]             # (device, queue) -> lanes used
    queue_names: dict[tuple[str, int], str]
    counters: list[CounterSample]
    instants: list[Instant]
    workers: int

    def flow_id(self, request: Request) -> int:
        """A request's flow id: its pop's sequence number (unique in the trace)."""
        return request.seq


def _assign_lanes(requests: list[Request]) -> tuple[dict[int, int], dict[tuple[str, int], int]]:
    lanes: dict[int, int] = {}
    ends: dict[tuple[str, int], list[float]] = {}
    for req in sorted(requests, key=lambda r: r.t_pop):
        key = (req.device, req.queue)
        end = req.t_fill if req.t_fill is not None else req.t_pop
        lane_ends = ends.setdefault(key, [])
        for lane, busy_until in enumerate(lane_ends):
            if busy_until <= req.t_pop:
                lane_ends[lane] = end
                break
        else:
            lane = len(lane_ends)
            lane_ends.append(end)
        lanes[id(req)] = lane
    return lanes, {key: len(value) for key, value in ends.items()}


_INSTANT_KINDS = {"status", "features", "session_create", "session_destroy", "needs_reset",
                  "error"}


def build_timeline(trace: Trace) -> Timeline:
    model = TraceModel(trace.devices, keep_requests=1)
    model.all_requests = []
    counters: list[CounterSample] = []
    instants: list[Instant] = []
    for record in trace.records:
        model.apply(record)
        if record.kind in ("pop", "fill") and record.queue is not None:
            q = model.queue(record.device, record.queue)
            counters.append(CounterSample(record.t, record.device, record.queue,
                                          q.owners.count(FREE), q.in_flight))
        elif record.kind in _INSTANT_KINDS:
            instants.append(Instant(record.t, record.device, record.queue, record.kind,
                                    dict(record.fields)))
    requests = model.all_requests
    lanes, queue_lanes = _assign_lanes(requests)
    names = {key: q.name for key, q in model.queues.items()}
    workers = max([r.worker + 1 for r in requests if r.worker is not None] + [model.worker_count, 0])
    return Timeline(requests, lanes, queue_lanes, names, counters, instants, workers)


def request_args(req: Request) -> dict[str, Any]:
    """The annotations a request's slice carries in both formats."""
    args: dict[str, Any] = {"head": req.head, "opcode": req.opcode, "status": req.status or "?",
                            "readable": req.readable, "used": req.used or 0, "where": req.where or "-"}
    if req.algo:
        args["algo"] = req.algo
    if req.session is not None:
        args["session"] = req.session
    if req.latency_us is not None:
        args["latency_us"] = round(req.latency_us, 1)
    if req.worker is not None:
        args["worker"] = req.worker
    return args
