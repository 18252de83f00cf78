"""`vmsim trace export --perfetto`: a Perfetto trace of TrackEvent protobufs.

One process "vmsim"; under it one track per virtqueue (with one child track per
concurrency lane) holding a slice per request from pop to used entry; counter tracks
per queue for free descriptors, chains in flight and latency; one track per worker
lane for pooled jobs; an "irq" track and a device track for status, features and
sessions. Each request's flow goes from its kick through its slice and its worker to
its used entry and the interrupt, which terminates it. Timestamps are host
nanoseconds since the trace started.
"""
from __future__ import annotations

from pathlib import Path

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from vmsim.trace.record import Trace, TraceFileError
from vmsim.trace.timeline import build_timeline, request_args

SEQUENCE = 7
PID = 1
_TE = pb.TrackEvent


def _ns(t: float) -> int:
    return int(round(t * 1e9))


class _Builder:
    def __init__(self) -> None:
        self.trace = pb.Trace()
        self._uuid = 1000
        self._events: list[tuple[int, int, pb.TracePacket]] = []
        self._order = 0

    def uuid(self) -> int:
        self._uuid += 1
        return self._uuid

    def track(self, name: str, parent: int | None = None, counter_unit: str | None = None,
              process: bool = False) -> int:
        uuid = self.uuid()
        packet = self.trace.packet.add()
        packet.trusted_packet_sequence_id = SEQUENCE
        desc = packet.track_descriptor
        desc.uuid = uuid
        desc.name = name
        if parent is not None:
            desc.parent_uuid = parent
        if process:
            desc.process.pid = PID
            desc.process.process_name = name
        if counter_unit is not None:
            desc.counter.unit_name = counter_unit
        return uuid

    def event(self, t: float, track: int, kind: int, name: str = "", *,
              flows: list[int] = (), ends: list[int] = (), args: dict | None = None,
              value: float | None = None) -> None:
        packet = pb.TracePacket()
        packet.timestamp = _ns(t)
        packet.trusted_packet_sequence_id = SEQUENCE
        ev = packet.track_event
        ev.type = kind
        ev.track_uuid = track
        if name:
            ev.name = name
        ev.flow_ids.extend(flows)
        ev.terminating_flow_ids.extend(ends)
        if value is not None:
            ev.double_counter_value = value
        for key, val in (args or {}).items():
            ann = ev.debug_annotations.add()
            ann.name = key
            if isinstance(val, bool):
                ann.bool_value = val
            elif isinstance(val, int):
                ann.int_value = val
            elif isinstance(val, float):
                ann.double_value = val
            else:
                ann.string_value = str(val)
        # END before BEGIN at the same instant keeps back-to-back slices on one lane apart
        rank = 0 if kind == _TE.TYPE_SLICE_END else 1
        self._order += 1
        self._events.append((packet.timestamp * 2 + rank, self._order, packet))

    def finish(self) -> pb.Trace:
        for _, _, packet in sorted(self._events, key=lambda item: (item[0], item[1])):
            self.trace.packet.append(packet)
        return self.trace


def perfetto_trace(trace: Trace) -> pb.Trace:
    timeline = build_timeline(trace)
    b = _Builder()
    first = b.trace.packet.add()
    first.trusted_packet_sequence_id = SEQUENCE
    first.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    process = b.track("vmsim", process=True)
    devices: dict[str, int] = {}
    irq_tracks: dict[str, int] = {}
    lane_tracks: dict[tuple[str, int, int], int] = {}
    kick_tracks: dict[tuple[str, int], int] = {}
    counters: dict[tuple[str, int], tuple[int, int, int]] = {}
    for (device, queue), name in sorted(timeline.queue_names.items()):
        if device not in devices:
            devices[device] = b.track(device, process)
            irq_tracks[device] = b.track(f"{device} irq", devices[device])
        parent = b.track(name, devices[device])
        kick_tracks[(device, queue)] = b.track(f"{name} kicks", parent)
        for lane in range(max(1, timeline.queue_lanes.get((device, queue), 1))):
            lane_tracks[(device, queue, lane)] = b.track(f"{name} #{lane}", parent)
        counters[(device, queue)] = (b.track(f"{name} free descriptors", parent, "descriptors"),
                                     b.track(f"{name} in flight", parent, "chains"),
                                     b.track(f"{name} latency", parent, "us"))
    workers = [b.track(f"worker {n}", process) for n in range(timeline.workers)]
    for instant in timeline.instants:
        track = devices.get(instant.device) or b.track(instant.device, process)
        devices.setdefault(instant.device, track)
        b.event(instant.t, track, _TE.TYPE_INSTANT, instant.name,
                args={k: v for k, v in instant.args.items() if isinstance(v, (int, str, float, bool))})
    for req in timeline.requests:
        flow = timeline.flow_id(req)
        key = (req.device, req.queue)
        if key not in counters:
            continue
        lane = lane_tracks[(req.device, req.queue, timeline.lanes[id(req)])]
        if req.t_kick is not None:
            b.event(req.t_kick, kick_tracks[key], _TE.TYPE_INSTANT, "kick", flows=[flow])
        b.event(req.t_pop, lane, _TE.TYPE_SLICE_BEGIN, req.opcode, flows=[flow],
                args=request_args(req))
        if req.worker is not None and req.worker < len(workers) and req.t_complete is not None:
            start = req.t_dispatch if req.t_dispatch is not None else req.t_pop
            b.event(start, workers[req.worker], _TE.TYPE_SLICE_BEGIN, req.opcode, flows=[flow])
            b.event(req.t_complete, workers[req.worker], _TE.TYPE_SLICE_END)
        end = req.t_fill if req.t_fill is not None else req.t_pop
        b.event(end, lane, _TE.TYPE_SLICE_END)
        if req.t_fill is not None:
            b.event(req.t_fill, kick_tracks[key], _TE.TYPE_INSTANT, "used",
                    flows=[flow] if req.t_irq is not None else [],
                    ends=[] if req.t_irq is not None else [flow])
            if req.latency_us is not None:
                b.event(req.t_fill, counters[key][2], _TE.TYPE_COUNTER, value=req.latency_us)
        if req.t_irq is not None:
            b.event(req.t_irq, irq_tracks[req.device], _TE.TYPE_INSTANT, "irq", ends=[flow])
    for sample in timeline.counters:
        free, in_flight, _ = counters.get((sample.device, sample.queue), (0, 0, 0))
        if free:
            b.event(sample.t, free, _TE.TYPE_COUNTER, value=float(sample.free))
            b.event(sample.t, in_flight, _TE.TYPE_COUNTER, value=float(sample.in_flight))
    return b.finish()


def write_perfetto(trace: Trace, path: Path) -> None:
    data = perfetto_trace(trace).SerializeToString()
    try:
        path.write_bytes(data)
    except OSError as error:
        raise TraceFileError(f"cannot write {path}: {error.strerror or error}") from None
