"""Trace recording: the hub's fan-out and bounded buffers, the JSON-lines file written
and read back, the model replayed from it, and `vmsim trace stats`."""
from __future__ import annotations

import json
import threading
import time
import types
from pathlib import Path

import pytest

from vmsim.cli.main import main
from vmsim.devices.events import TraceEvent
from vmsim.devices.virtio.crypto.constants import CipherAlgo, Op
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.testing.crypto_rig import CryptoRig
from vmsim.trace import hub as hub_module
from vmsim.trace.hub import TraceHub, tee
from vmsim.trace.model import DEVICE, FREE, USED, TraceModel
from vmsim.trace.record import TraceFileError, TraceWriter, device_info, read_trace

KEY, IV = bytes(range(16)), bytes(16)


def record_rig_session(path: Path, requests: int = 3) -> None:
    """A short recorded session on the rig: negotiate, create, `requests` encryptions,
    destroy."""
    hub = TraceHub(guest_time=lambda: 42)
    writer = TraceWriter(path, hub)
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    try:
        writer.start(device_info([rig.rig.transport]), 10_000_000)
        rig.rig.transport.read(0x100 + 4, 4)        # max_dataqueues, as Linux reads it
        sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
        for n in range(requests):
            rig.cipher(sid, IV, bytes([n]) * 32)
        rig.destroy(Op.CIPHER_DESTROY_SESSION, sid)
    finally:
        writer.close()
        rig.close()


def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = TraceHub(guest_time=iter(range(100, 200)).__next__)
    first, second = hub.subscribe(), hub.subscribe()
    for n in range(5):
        hub(TraceEvent("notify", "dev", n))
    a, b = first.drain(), second.drain()
    assert [r.queue for r in a] == [r.queue for r in b] == [0, 1, 2, 3, 4]
    assert [r.g for r in a] == [100, 101, 102, 103, 104] and a[0].name == "dev_notify"


def test_a_lagging_subscriber_loses_the_oldest_and_knows_how_many() -> None:
    hub = TraceHub()
    slow = hub.subscribe(capacity=4)
    hub(TraceEvent("notify", "dev", 0))
    assert len(slow.drain()) == 1
    for n in range(10):
        hub(TraceEvent("notify", "dev", n))
    kept = slow.drain()
    assert [r.seq for r in kept] == [8, 9, 10, 11] and slow.lost == 6


def test_listeners_run_once_subscribers_have_the_event_and_tee_calls_all() -> None:
    hub, seen, other = TraceHub(), [], []
    sub = hub.subscribe()
    hub.listen(lambda record: seen.append((record.kind, [r.kind for r in sub.drain()])))
    sink = tee([hub, other.append])
    sink(TraceEvent("pop", "dev", 0))
    assert seen == [("pop", ["pop"])] and other[0].kind == "pop"


def runs_python(call: object) -> bool:
    return isinstance(call, (types.FunctionType, types.MethodType))


def gathering_hub(**kwargs) -> TraceHub:
    """A hub as a machine with a timebase has it: events gathered, stamped later."""
    hub = TraceHub(**kwargs)
    hub.timebase_hz = 10_000_000
    return hub


def test_while_gathering_an_event_is_one_c_call_and_is_stamped_later() -> None:
    """With no listener, a device's event is a deque append (no Python frame on the CPU
    thread); the subscriber gets it stamped when it reads, with the guest time of the
    moment it happened, in order."""
    hub = gathering_hub()
    sub = hub.subscribe()
    events = hub.event_log()
    assert not runs_python(events.record) and not runs_python(events.next_seq)
    for n in range(3):
        events.record((events.next_seq(), 5.0 + n, "notify", "dev", n, (("avail_idx",), n)))
    assert len(sub) == 0                                  # nothing stamped yet
    got = sub.drain()
    assert [(r.seq, r.queue, r.fields) for r in got] == [(n + 1, n, {"avail_idx": n})
                                                         for n in range(3)]
    assert [r.g for r in got] == [50_000_000, 60_000_000, 70_000_000]
    assert got[0].t == pytest.approx(5.0 - hub.t0)


def test_a_listener_hears_each_event_as_it_happens_after_those_gathered() -> None:
    hub = gathering_hub()
    sub, heard = hub.subscribe(), []
    hub.event_log().emit("notify", "dev", 0, {})                     # gathered
    hub.listen_items(lambda item: heard.append((item[0], len(sub))))
    assert runs_python(hub.event_log().record)
    hub.event_log().emit("notify", "dev", 1, {})                     # stamped now, the gathered one first
    assert heard == [(2, 2)]
    hub.unlisten_items(hub._item_listeners[0])
    hub.event_log().emit("notify", "dev", 2, {})
    assert heard == [(2, 2)] and [r.seq for r in sub.drain()] == [1, 2, 3]


def test_events_past_the_gathering_buffer_are_lost_and_counted(monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "RAW_CAPACITY", 4)
    hub = gathering_hub()
    sub = hub.subscribe()
    for n in range(10):
        hub.event_log().emit("notify", "dev", n, {})
    assert [r.seq for r in sub.drain()] == [7, 8, 9, 10] and sub.lost == 6


def test_the_flush_thread_hands_batched_consumers_their_events() -> None:
    """No call from the CPU thread: the hub's own thread stamps what gathered and hands
    it over, a chunk at a time; flush() hands over the rest, each event once."""
    hub, batches, arrived = gathering_hub(), [], threading.Event()

    def consume(items: list) -> None:
        batches.append(items)
        if sum(map(len, batches)) >= 3:
            arrived.set()
    hub.batched(consume, seconds=0.01)
    try:
        for n in range(3):
            hub.event_log().emit("notify", "dev", n, {})
        assert arrived.wait(10)
    finally:
        hub.close()
    assert [item[5] for batch in batches for item in batch] == [0, 1, 2]
    assert hub._flusher is not None and not hub._flusher.is_alive()


def test_a_flush_works_in_chunks_and_flush_hands_over_the_rest(monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_CHUNK", 4)
    hub, batches = gathering_hub(), []
    flush = hub.batched(batches.append, seconds=3600)
    for n in range(10):
        hub.event_log().emit("notify", "dev", n, {})
    hub.flush()
    assert [[item[5] for item in batch] for batch in batches] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                   [8, 9]]
    hub.event_log().emit("notify", "dev", 10, {})
    flush()
    flush()                                            # nothing new: an empty batch
    assert [item[5] for item in batches[3]] == [10] and batches[4] == []
    hub.close()


def test_kind_listeners_hear_only_their_kinds() -> None:
    hub, heard = TraceHub(), []
    hub.listen_items(heard.append, kinds=("status", "features"))
    for kind in ("notify", "status", "pop", "features"):
        hub(TraceEvent(kind, "dev"))
    assert [item[4] for item in heard] == ["status", "features"]


def test_the_gate_listens_only_while_it_could_stop() -> None:
    """A running guest under an open TUI: the gate costs no call per event; stepping,
    a breakpoint or a stop condition make it listen, and it stops listening after."""
    from vmsim.trace.control import MachineGate, parse_conditions

    hub, gate = TraceHub(), MachineGate()
    gate.watch(hub)
    assert gate.item_listener not in hub._item_listeners
    gate.set_breakpoints(parse_conditions("opcode=CIPHER_ENCRYPT"))
    assert gate.item_listener in hub._item_listeners
    gate.set_breakpoints([])
    assert gate.item_listener not in hub._item_listeners
    gate.stop_when = lambda record: record.kind == "pop"
    assert gate.item_listener in hub._item_listeners
    gate.stop_when = None
    gate.step()
    assert gate.item_listener in hub._item_listeners
    held = threading.Thread(target=hub, args=(TraceEvent("notify", "dev", 0),), daemon=True)
    held.start()                                       # the step stops at this event
    for _ in range(500):
        if gate.paused:
            break
        time.sleep(0.01)
    assert gate.paused and gate.stopped_at is not None and gate.stopped_at.kind == "notify"
    assert gate.item_listener not in hub._item_listeners
    gate.resume()
    held.join(5)
    assert not held.is_alive()


def test_written_trace_reads_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record_rig_session(path)
    lines = path.read_text().splitlines()
    header, end = json.loads(lines[0]), json.loads(lines[-1])
    assert header["format"] == "vmsim-trace" and header["devices"][0]["queue_names"] == ["dataq0", "controlq"]
    assert end["end"] is True and end["lost"] == 0 and end["events"] == len(lines) - 2
    trace = read_trace(path)
    assert trace.complete and len(trace.records) == end["events"]
    assert [r.seq for r in trace.records] == list(range(1, len(trace.records) + 1))
    kinds = {r.kind for r in trace.records}
    assert {"status", "features", "queue_setup", "notify", "pop", "request", "complete",
            "fill", "irq", "session_create", "session_destroy", "config_read"} <= kinds
    assert trace.queue_name("virtio-crypto", 1) == "controlq"


def test_a_cut_short_trace_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record_rig_session(path)
    lines = path.read_text().splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:-3]) + "\n")
    trace = read_trace(tmp_path / "cut.jsonl")
    assert not trace.complete and len(trace.records) == len(lines) - 4


@pytest.mark.parametrize("text, words", [
    ("", "not a vmsim trace"),
    ('{"format": "vmsim-trace", "version": 99}\n', "trace version 99"),
    ('{"format": "vmsim-trace", "version": 1}\nnot json\n', ":2: not a JSON line"),
    ('{"format": "vmsim-trace", "version": 1}\n{"seq": 1}\n', ":2: not a trace event"),
])
def test_bad_trace_files_are_one_line_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(TraceFileError, match=words):
        read_trace(path)


def test_the_model_replays_rings_requests_and_sessions(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record_rig_session(path, requests=3)
    trace = read_trace(path)
    model = TraceModel(trace.devices)
    model.apply_all(trace.records)
    dataq = model.queue("virtio-crypto", 0)
    assert dataq.name == "dataq0" and dataq.size == 64
    assert dataq.pops == dataq.fills == dataq.irqs == 3 and dataq.in_flight == 0
    assert model.ops["CIPHER_ENCRYPT"].count == 3
    assert model.ops["CIPHER_ENCRYPT"].statuses == {"OK": 3}
    done = [r for r in model.requests if r.opcode == "CIPHER_ENCRYPT"]
    assert all(r.done and r.t_irq is not None and r.t_kick is not None for r in done)
    assert all(r.latency_us is not None and r.latency_us >= 0 for r in done)
    sessions = list(model.sessions.values())
    assert len(sessions) == 1 and sessions[0].requests == 3 and sessions[0].destroyed is not None
    assert model.devices["virtio-crypto"].accepted[-1] == "VERSION_1"
    assert model.devices["virtio-crypto"].config["max_dataqueues"] == 1


def test_the_model_tracks_descriptor_owners(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record_rig_session(path, requests=1)
    records = read_trace(path).records
    pop = next(i for i, r in enumerate(records) if r.kind == "pop" and r.queue == 0)
    fill = next(i for i, r in enumerate(records) if r.kind == "fill" and r.queue == 0)
    model = TraceModel(read_trace(path).devices)
    model.apply_all(records[:pop + 1])
    dataq = model.queue("virtio-crypto", 0)
    assert dataq.owners.count(DEVICE) == 5 and dataq.owners.count(USED) == 0
    model.apply_all(records[pop + 1:fill + 1])
    assert dataq.owners.count(USED) == 5 and dataq.owners.count(DEVICE) == 0
    assert dataq.owners.count(FREE) == 64 - 5


def test_trace_stats_prints_a_table_per_opcode(tmp_path: Path, capsys) -> None:
    path = tmp_path / "t.jsonl"
    record_rig_session(path, requests=4)
    assert main(["trace", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "CIPHER_ENCRYPT" in line)
    assert "│     4 │" in row and "OK 4" in row
    assert "controlq" in out and "dataq0" in out


def test_trace_stats_on_a_missing_file_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["trace", "stats", str(tmp_path / "nope.jsonl")]) == TraceFileError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vmsim: error: cannot read the trace")


def test_a_failing_batch_consumer_never_fails_the_device() -> None:
    """A batch the consumer raises on is dropped, counted and logged once; the device
    never sees it and later batches still come."""
    hub, got, calls = gathering_hub(), [], []

    def consume(items: list) -> None:
        calls.append(len(items))
        if len(calls) == 1:
            raise ValueError("cannot pickle this")
        got.extend(items)
    flush = hub.batched(consume, seconds=3600)
    for n in range(4):
        hub(TraceEvent("notify", "dev", n))                    # never raises
        if n % 2:
            flush()
    assert calls == [2, 2] and [item[5] for item in got] == [2, 3]
    assert hub._batchers[0].failed == 2
    hub.close()


def test_a_notify_hands_on_a_full_batch_on_the_cpu_thread(monkeypatch) -> None:
    """Where the events were just made: once FLUSH_EVENTS have gathered, the transport's
    next notify has the hub stamp them and hand the batch on, on the calling thread (the
    flush thread, an hour away here, never does)."""
    monkeypatch.setattr(hub_module, "FLUSH_EVENTS", 40)
    hub, batches = gathering_hub(), []
    hub.batched(lambda items: batches.append((threading.current_thread(), len(items))),
                seconds=3600)
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), trace=False, sink=hub)   # as a machine
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
        assert batches == []                    # the session's events: fewer than 40
        for n in range(6):                      # seven events each
            rig.cipher(sid, IV, bytes([n]) * 16)
        assert batches and all(thread is threading.current_thread() and count >= 40
                               for thread, count in batches)
    finally:
        rig.close()
        hub.close()
