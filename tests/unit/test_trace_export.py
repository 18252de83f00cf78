"""Trace exports, checked by reading them back: the Perfetto protobuf with Perfetto's
own message classes, the Chrome JSON, and the pcapng with tshark and the shipped Lua
dissector. The input is a trace recorded from the default guest (boot self-tests and
RSA through keyctl, so the worker pool is in it) and one made on the rig."""
from __future__ import annotations

import json
import re
import struct
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from tests.support.guest import require_tools
from vmsim.build.cache import Requirement
from vmsim.cli.main import main
from vmsim.devices.virtio.crypto.constants import Op
from vmsim.trace.chrome import chrome_events
from vmsim.trace.model import TraceModel
from vmsim.trace.pcapng import dissector_path, pcapng_bytes
from vmsim.trace.perfetto import perfetto_trace
from vmsim.trace.record import read_trace

RECORDED = Path(__file__).parents[1] / "data" / "boot-rsa.trace.jsonl.gz"
TSHARK = Requirement("tshark", "tshark")
TE = pb.TrackEvent


@pytest.fixture(scope="module")
def trace():
    return read_trace(RECORDED)


@pytest.fixture(scope="module")
def model(trace):
    m = TraceModel(trace.devices, keep_requests=1)
    m.all_requests = []
    m.apply_all(trace.records)
    return m


@pytest.fixture(scope="module")
def perfetto(trace):
    return pb.Trace.FromString(perfetto_trace(trace).SerializeToString())


def _tracks(parsed: pb.Trace) -> dict[int, pb.TrackDescriptor]:
    return {p.track_descriptor.uuid: p.track_descriptor for p in parsed.packet
            if p.HasField("track_descriptor")}


def _events(parsed: pb.Trace) -> list[tuple[int, pb.TrackEvent]]:
    return [(p.timestamp, p.track_event) for p in parsed.packet if p.HasField("track_event")]


def test_the_recording_has_both_queues_and_the_pool(model) -> None:
    queues = {q.name: q for q in model.queues.values()}
    assert queues["dataq0"].pops > 0 and queues["controlq"].pops > 0
    assert any(r.where == "pool" for r in model.all_requests)


def test_perfetto_has_a_slice_per_request_on_its_queue(perfetto, model) -> None:
    tracks = _tracks(perfetto)
    begins: Counter = Counter()
    depth: defaultdict = defaultdict(int)
    for _, ev in _events(perfetto):
        name = tracks[ev.track_uuid].name
        if ev.type == TE.TYPE_SLICE_BEGIN:
            depth[name] += 1
            if " #" in name:
                begins[name.split(" #")[0]] += 1
        elif ev.type == TE.TYPE_SLICE_END:
            depth[name] -= 1
            assert depth[name] >= 0, f"{name}: an end without a begin"
    assert all(value == 0 for value in depth.values()), depth
    per_queue = Counter(model.queue_name(r.device, r.queue) for r in model.all_requests)
    assert begins == per_queue
    assert tracks[next(u for u, t in tracks.items() if t.name == "vmsim")].process.pid == 1


def test_perfetto_flows_go_from_kick_to_irq(perfetto, model) -> None:
    tracks = _tracks(perfetto)
    hops: defaultdict = defaultdict(list)
    for ts, ev in _events(perfetto):
        for flow in ev.flow_ids:
            hops[flow].append((ts, ev.name or tracks[ev.track_uuid].name))
        for flow in ev.terminating_flow_ids:
            hops[flow].append((ts, "END:" + ev.name))
    interrupted = [r for r in model.all_requests if r.t_irq is not None and r.t_kick is not None]
    assert interrupted
    for req in interrupted:
        path = hops[req.seq]
        names = [name for _, name in path]
        assert names[0] == "kick" and names[1] == req.opcode and names[-1] == "END:irq", names
        assert "used" in names
        assert [ts for ts, _ in path] == sorted(ts for ts, _ in path)
        if req.where == "pool":
            assert names.count(req.opcode) == 2          # the queue's slice and the worker's


def test_perfetto_counters_and_worker_tracks(perfetto, model) -> None:
    tracks = _tracks(perfetto)
    counter_tracks = {u: t for u, t in tracks.items() if t.HasField("counter")}
    names = {t.name for t in counter_tracks.values()}
    assert {"dataq0 free descriptors", "dataq0 in flight", "dataq0 latency",
            "controlq free descriptors"} <= names
    values: defaultdict = defaultdict(list)
    worker_slices = 0
    for _, ev in _events(perfetto):
        if ev.type == TE.TYPE_COUNTER:
            values[tracks[ev.track_uuid].name].append(ev.double_counter_value)
        if ev.type == TE.TYPE_SLICE_BEGIN and tracks[ev.track_uuid].name.startswith("worker "):
            worker_slices += 1
    size = model.queue("virtio-crypto", 0).size
    assert max(values["dataq0 free descriptors"]) <= size
    assert min(values["dataq0 free descriptors"]) < size          # something was in use
    assert max(values["dataq0 in flight"]) >= 1 and min(values["dataq0 in flight"]) == 0
    assert len(values["dataq0 latency"]) == sum(1 for r in model.all_requests
                                                 if r.queue == 0 and r.latency_us is not None)
    assert worker_slices == sum(1 for r in model.all_requests if r.where == "pool")


def test_chrome_json_has_async_slices_flows_and_counters(trace, model) -> None:
    events = json.loads(json.dumps({"traceEvents": chrome_events(trace)}))["traceEvents"]
    opened: dict = {}
    for ev in events:
        if ev["ph"] == "b":
            opened[ev["id"]] = ev
        elif ev["ph"] == "e":
            begin = opened.pop(ev["id"])
            assert begin["name"] == ev["name"] and begin["ts"] <= ev["ts"]
    assert not opened
    assert sum(1 for ev in events if ev["ph"] == "b") == len(model.all_requests)
    flows: defaultdict = defaultdict(list)
    for ev in events:
        if "bind_id" in ev:
            flows[ev["bind_id"]].append(ev)
    for hops in flows.values():
        assert hops[0].get("flow_out") and not hops[0].get("flow_in")
        assert hops[-1].get("flow_in") and not hops[-1].get("flow_out")
        assert all(h.get("flow_in") and h.get("flow_out") for h in hops[1:-1])
    assert any([h["name"] for h in hops][-1] == "irq" for hops in flows.values())
    threads = {ev["args"]["name"] for ev in events if ev["ph"] == "M" and ev["name"] == "thread_name"}
    assert {"virtio-crypto dataq0", "virtio-crypto controlq", "irq"} <= threads
    assert any(ev["ph"] == "C" and "free" in ev["args"] for ev in events)


def _blocks(data: bytes) -> list[tuple[int, bytes]]:
    out, offset = [], 0
    while offset < len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        assert struct.unpack_from("<I", data, offset + length - 4)[0] == length
        out.append((kind, data[offset + 8:offset + length - 4]))
        offset += length
    return out


def test_pcapng_is_exported_pdus_naming_the_dissector(trace, model) -> None:
    blocks = _blocks(pcapng_bytes(trace))
    assert blocks[0][0] == 0x0A0D0D0A and blocks[1][0] == 1
    assert struct.unpack_from("<H", blocks[1][1])[0] == 252
    packets = [body for kind, body in blocks if kind == 6]
    done = sum(1 for r in model.all_requests if r.t_fill is not None)
    assert len(packets) == len(model.all_requests) + done
    first = packets[0][20:]
    tag, length = struct.unpack_from(">HH", first)
    assert tag == 12 and first[4:4 + length].rstrip(b"\0") == b"vmsim_virtio"


def test_the_dissector_knows_every_opcode() -> None:
    text = dissector_path().read_text()
    table = {int(value, 16): name for value, name in re.findall(r'\[(0x[0-9a-f]+)\] = "(\w+)"', text)}
    assert table == {int(op): op.name for op in Op}


def test_tshark_decodes_the_capture_with_the_dissector(trace, model, tmp_path: Path) -> None:
    require_tools(TSHARK)
    capture = tmp_path / "t.pcapng"
    assert main(["trace", "export", str(RECORDED), "--pcapng", str(capture)]) == 0
    out = subprocess.run(
        ["tshark", "-X", f"lua_script:{dissector_path()}", "-r", str(capture), "-T", "fields",
         "-e", "vmsim_virtio.direction", "-e", "vmsim_virtio.opcode", "-e", "vmsim_virtio.status",
         "-e", "vmsim_virtio.queue_name"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    requests = [row for row in rows if row[0] == "0"]
    assert len(requests) == len(model.all_requests)
    opcodes = Counter(int(row[1], 16) for row in requests)
    want = Counter(int(Op[r.opcode]) for r in model.all_requests)
    assert opcodes == want
    completions = [row for row in rows if row[0] == "1"]
    assert completions and {row[2] for row in completions} == {"0"}      # all OK
    assert {row[3] for row in rows} == {"dataq0", "controlq"}


def test_export_writes_every_format_asked_for(tmp_path: Path, capsys) -> None:
    out = {name: tmp_path / name for name in ("t.pftrace", "t.json", "t.pcapng")}
    assert main(["trace", "export", str(RECORDED), "--perfetto", str(out["t.pftrace"]),
                 "--chrome", str(out["t.json"]), "--pcapng", str(out["t.pcapng"])]) == 0
    assert all(path.stat().st_size > 0 for path in out.values())
    assert pb.Trace.FromString(out["t.pftrace"].read_bytes()).packet
    assert main(["trace", "export", str(RECORDED)]) != 0
    assert "needs --perfetto, --chrome or --pcapng" in capsys.readouterr().err
