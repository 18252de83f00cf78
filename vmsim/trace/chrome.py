"""`vmsim trace export --chrome`: the same timeline as Chrome JSON trace events, for
chrome://tracing and Perfetto's legacy importer (times in µs).

Each request is an async slice ("b"/"e", id = its flow id) on its queue's thread; a
kick, the worker's slice, the used entry and the interrupt are complete events ("X")
tied together by a v2 flow (bind_id with flow_out/flow_in). Counters ("C") per queue:
free descriptors and chains in flight; latency per used entry.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vmsim.trace.record import Trace, TraceFileError
from vmsim.trace.timeline import build_timeline, request_args

PID = 1
_TICK = 0.1  # µs: how long the instants (kick, used, irq) are drawn


def _us(t: float) -> float:
    return round(t * 1e6, 3)


def chrome_events(trace: Trace) -> list[dict[str, Any]]:
    timeline = build_timeline(trace)
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": PID, "tid": 0, "args": {"name": "vmsim"}}]
    tids: dict[tuple[str, int], int] = {}
    for n, ((device, queue), name) in enumerate(sorted(timeline.queue_names.items())):
        tids[(device, queue)] = 10 + n
        events.append({"ph": "M", "name": "thread_name", "pid": PID, "tid": 10 + n,
                       "args": {"name": f"{device} {name}"}})
    worker_tid = {n: 100 + n for n in range(timeline.workers)}
    for n, tid in worker_tid.items():
        events.append({"ph": "M", "name": "thread_name", "pid": PID, "tid": tid,
                       "args": {"name": f"worker {n}"}})
    irq_tid = 5
    events.append({"ph": "M", "name": "thread_name", "pid": PID, "tid": irq_tid,
                   "args": {"name": "irq"}})
    for instant in timeline.instants:
        events.append({"ph": "i", "s": "p", "name": instant.name, "cat": "device", "pid": PID,
                       "tid": 1, "ts": _us(instant.t),
                       "args": {k: v for k, v in instant.args.items()
                                if isinstance(v, (int, str, float, bool))}})
    for req in timeline.requests:
        tid = tids.get((req.device, req.queue))
        if tid is None:
            continue
        flow = f"{timeline.flow_id(req):#x}"
        common = {"pid": PID, "cat": "request", "id": flow}
        end = req.t_fill if req.t_fill is not None else req.t_pop
        events.append({"ph": "b", "name": req.opcode, "tid": tid, "ts": _us(req.t_pop),
                       "args": request_args(req), **common})
        events.append({"ph": "e", "name": req.opcode, "tid": tid, "ts": _us(end), **common})
        hops: list[dict[str, Any]] = []
        if req.t_kick is not None:
            hops.append({"name": "kick", "tid": tid, "ts": _us(req.t_kick), "dur": _TICK})
        if req.worker is not None and req.t_complete is not None:
            start = req.t_dispatch if req.t_dispatch is not None else req.t_pop
            hops.append({"name": req.opcode, "tid": worker_tid.get(req.worker, 100 + req.worker),
                         "ts": _us(start), "dur": max(_TICK, _us(req.t_complete) - _us(start))})
        if req.t_fill is not None:
            hops.append({"name": "used", "tid": tid, "ts": _us(req.t_fill), "dur": _TICK})
            if req.latency_us is not None:
                events.append({"ph": "C", "name": f"{req.device} {timeline.queue_names[(req.device, req.queue)]} latency",
                               "pid": PID, "ts": _us(req.t_fill),
                               "args": {"latency_us": round(req.latency_us, 1)}})
        if req.t_irq is not None:
            hops.append({"name": "irq", "tid": irq_tid, "ts": _us(req.t_irq), "dur": _TICK})
        for n, hop in enumerate(hops):
            hop.update({"ph": "X", "pid": PID, "cat": "flow", "bind_id": flow})
            if n > 0:
                hop["flow_in"] = True
            if n < len(hops) - 1:
                hop["flow_out"] = True
            events.append(hop)
    for sample in timeline.counters:
        name = timeline.queue_names.get((sample.device, sample.queue), f"q{sample.queue}")
        events.append({"ph": "C", "name": f"{sample.device} {name}", "pid": PID,
                       "ts": _us(sample.t),
                       "args": {"free": sample.free, "in_flight": sample.in_flight}})
    return events


def write_chrome(trace: Trace, path: Path) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"traceEvents": chrome_events(trace), "displayTimeUnit": "ns"}, out)
    except OSError as error:
        raise TraceFileError(f"cannot write {path}: {error.strerror or error}") from None
