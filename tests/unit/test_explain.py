"""Teaching mode: every explanation, built from a real event of the trace recorded on
the default guest (and a NEEDS_RESET provoked on the rig), says what happened with that
event's own numbers and cites a section and a conformance label; the lesson finds its
six steps in that trace, in order; --explain in the TUI stops at each transition."""
from __future__ import annotations

import asyncio
import struct
import threading
from pathlib import Path

import pytest

from vmsim.devices.virtio.crypto.constants import CipherAlgo
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.testing.crypto_rig import CryptoRig
from vmsim.trace.control import MachineGate
from vmsim.trace.explain import EXPLAIN_STOPS, EXPLAINERS, Explanation, explain
from vmsim.trace.hub import Record, TraceHub
from vmsim.trace.lesson import STEPS, Lesson
from vmsim.trace.model import TraceModel
from vmsim.trace.record import read_trace
from vmsim.tui.app import VmsimApp
from vmsim.tui.feeds import ConsoleBuffer, HubFeed
from vmsim.tui.widgets import TextPane

RECORDED = Path(__file__).parents[1] / "data" / "boot-rsa.trace.jsonl.gz"
CRYPTO = [{"name": "virtio-crypto", "device_id": 20, "num_queues": 2,
           "queue_names": ["dataq0", "controlq"]}]


@pytest.fixture(scope="module")
def explained() -> dict[str, list[tuple[Record, Explanation]]]:
    """Every recorded event with its explanation, by kind (the model applied up to it)."""
    trace = read_trace(RECORDED)
    model = TraceModel(trace.devices)
    out: dict[str, list] = {}
    for record in trace.records:
        model.apply(record)
        explanation = explain(record, model)
        if explanation is not None:
            out.setdefault(record.kind, []).append((record, explanation))
    return out


def first(explained, kind: str, **fields) -> tuple[Record, Explanation]:
    for record, explanation in explained[kind]:
        if all(record.fields.get(k) == v for k, v in fields.items()):
            return record, explanation
    raise AssertionError(f"no recorded {kind} with {fields}")


def test_every_explanation_cites_a_section_and_a_label(explained) -> None:
    for kind, pairs in explained.items():
        for _, e in pairs:
            assert e.actor in ("driver", "device")
            assert e.section[0].isdigit() and e.title and e.what and e.next
            assert e.label.startswith(("drivernormative:", "devicenormative:")), (kind, e)
    assert set(EXPLAINERS) - set(explained) == {"needs_reset"}   # tested on the rig below


def test_status(explained) -> None:
    _, e = first(explained, "status", new=0)
    assert "wrote 0 to Status" in e.what and e.section == "2.4" and e.label.endswith("Device Reset")
    record, e = first(explained, "status", new=11)
    assert "0x0b" in e.what and "FEATURES_OK" in e.what and e.section == "3.1.1"
    assert "reads Status back" in e.next


def test_features(explained) -> None:
    record, e = first(explained, "features")
    assert "RING_EVENT_IDX" in e.what and "VERSION_1" in e.what and "kept" in e.what
    assert e.section == "2.2" and e.label.endswith("/ Feature Bits")


def test_config_read(explained) -> None:
    _, e = first(explained, "config_read", offset=4)
    assert "max_dataqueues = 0x1" in e.what and e.section == "2.5"


def test_queue_setup(explained) -> None:
    record, e = first(explained, "queue_setup")
    assert "dataq0: 1024 entries" in e.what and f"{record.fields['desc']:#x}" in e.what
    assert e.section == "4.2.3.2" and "Virtio Over MMIO" in e.label


def test_notify(explained) -> None:
    record, e = first(explained, "notify")
    assert f"avail idx {record.fields['avail_idx']} on controlq" in e.what
    assert "pops 1 chain starting at avail ring slot 0" in e.next
    assert e.section == "2.7.13.4" and e.label.endswith("Notifying The Device")


def test_pop_like_the_brief_says(explained) -> None:
    """'the driver published avail idx 7; the device now pops the chain at head 3 — 2.7.13'"""
    record, e = first(explained, "pop")
    assert (f"published avail idx {record.fields['avail_idx']}; the device popped the chain at "
            f"head {record.fields['head']}") in e.what
    assert "indirect table of" in e.what and e.section == "2.7.13"
    assert e.label.endswith("Indirect Descriptors")


def test_request_control_and_data(explained) -> None:
    _, e = first(explained, "request", opcode="AKCIPHER_CREATE_SESSION")
    assert "control request on controlq: AKCIPHER_CREATE_SESSION for RSA" in e.what
    assert e.label.endswith("Session operation: create session") and e.section == "5.9.7.2.1"
    record, e = first(explained, "request", opcode="AKCIPHER_ENCRYPT")
    assert f"in session {record.fields['session']}" in e.what and "dataq0" in e.what
    assert e.label.endswith("AKCIPHER Service Operation")
    _, e = first(explained, "request", opcode="CIPHER_ENCRYPT")
    assert e.label.endswith("Symmetric algorithms Operation")


def test_dispatch_complete_fill(explained) -> None:
    record, e = first(explained, "dispatch")
    assert f"head {record.fields['head']} of dataq0" in e.what and "worker pool" in e.what
    assert e.label.endswith("AKCIPHER Service Operation")
    record, e = first(explained, "complete", where="pool")
    assert "in a worker" in e.what and f"status {record.fields['status']}" in e.what
    record, e = first(explained, "fill")
    assert (f"used element (id {record.fields['head']}, len {record.fields['len']})" in e.what
            and f"used idx to {record.fields['used_idx']}" in e.what)
    assert e.section == "2.7.8" and e.label.startswith("devicenormative:")


def test_irq_and_ack(explained) -> None:
    record, e = first(explained, "irq", raised=True)
    assert record.fields["reason"] in e.what and e.section == "4.2.3.4"
    _, e = first(explained, "irq_ack")
    assert "InterruptACK" in e.what and "the line drops" in e.what and e.section == "2.7.14"


def test_irq_suppressed() -> None:
    record = Record(1, 0.0, 0, "virtio-crypto", "irq", 0,
                    {"raised": False, "reason": "used_event 5 not reached"})
    e = explain(record, TraceModel(CRYPTO))
    assert "did not interrupt for dataq0: used_event 5 not reached" in e.what
    assert e.label.endswith("Used Buffer Notification Suppression")


def test_sessions(explained) -> None:
    record, e = first(explained, "session_create")
    assert f"created session {record.fields['session']} for RSA" in e.what
    record, e = first(explained, "session_destroy")
    assert f"destroyed session {record.fields['session']}" in e.what
    assert e.label.endswith("destroy session")


def test_needs_reset_from_a_broken_ring() -> None:
    hub = TraceHub()
    sub = hub.subscribe()
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    try:
        dq = rig.driver.queues[0]
        ram, avail = rig.rig.ram, dq.avail
        idx = struct.unpack("<H", ram.read(avail + 2, 2))[0]
        ram.write(avail + 4 + 2 * (idx % dq.size), struct.pack("<H", 0xFFF0))   # no such head
        ram.write(avail + 2, struct.pack("<H", idx + 1))
        dq.kick()
        model = TraceModel(CRYPTO)
        for record in sub.drain():
            model.apply(record)
            if record.kind == "needs_reset":
                e = explain(record, model)
                assert "DEVICE_NEEDS_RESET" in e.what and "65520" in e.what
                assert e.section == "2.1.2" and e.label.endswith("Device Status Field")
                return
        raise AssertionError("no needs_reset event")
    finally:
        rig.close()


def test_the_lesson_finds_its_steps_in_order() -> None:
    trace = read_trace(RECORDED)
    gate = MachineGate()
    gate.on_stop = lambda record: gate.resume()          # headless: straight on
    lesson = Lesson(gate, trace.devices)
    for record in trace.records:
        lesson.listener(record)
        gate.listener(record)
    assert lesson.done and [r.step.title for r in lesson.reached] == [s.title for s in STEPS]
    kinds = [r.record.kind for r in lesson.reached]
    assert kinds == ["features", "queue_setup", "session_create", "request", "irq",
                     "session_destroy"]
    seqs = [r.record.seq for r in lesson.reached]
    assert seqs == sorted(seqs) and gate.stops == 6
    assert "Step 4/6: The first request" in lesson.reached[3].text()
    assert "— virtio 5.9.7.8" in lesson.reached[3].text()


def test_explain_mode_stops_at_each_transition_and_space_goes_on() -> None:
    hub, gate = TraceHub(), MachineGate()
    hub.listen(gate.listener)
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)    # negotiated freely
    gate.stop_when = lambda record: record.kind in EXPLAIN_STOPS
    gate_was = gate.stops
    finished = threading.Event()

    def guest() -> None:
        rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        finished.set()

    feed = HubFeed(hub, gate, ConsoleBuffer(), CRYPTO, lambda data: None, lambda: "running")

    async def run() -> None:
        app = VmsimApp(feed, explain=True)
        async with app.run_test(size=(160, 50)) as pilot:
            panel = app.screen_stack[0].query_one("#stats", TextPane)
            threading.Thread(target=guest, daemon=True).start()
            seen = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not finished.is_set():
                assert loop.time() < deadline, seen
                await pilot.pause(0.02)
                if "[space] next event" in panel.plain:
                    seen.append(panel.plain.split("\n")[0])
                    await pilot.press("space")
                    await pilot.pause(0.02)
            await pilot.press("q")
            assert any("published avail idx 1 on controlq" in line for line in seen), seen
            assert any("created session" in line for line in seen), seen
    try:
        asyncio.run(run())
    finally:
        gate.close()
        rig.close()
    assert gate.stops - gate_was >= 6       # notify, pop, request, complete, session, fill, irq


def test_the_lesson_in_the_tui_waits_for_space_at_each_step() -> None:
    """The rig negotiates, creates a session and encrypts from a thread standing in for
    the CPU; the lesson panel shows each step where the device stopped, space goes on."""
    hub, gate = TraceHub(), MachineGate()
    lesson = Lesson(gate, CRYPTO)
    hub.listen(lesson.listener)
    hub.listen(gate.listener)
    rigs: list[CryptoRig] = []
    finished = threading.Event()

    def guest() -> None:
        rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
        rigs.append(rig)
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        rig.cipher(sid, bytes(16), b"L" * 16)
        rig.destroy(0x003, sid)                       # CIPHER_DESTROY_SESSION
        finished.set()

    feed = HubFeed(hub, gate, ConsoleBuffer(), CRYPTO, lambda data: None, lambda: "running")

    async def run() -> list[str]:
        app = VmsimApp(feed, lesson=lesson)
        shown: list[str] = []
        async with app.run_test(size=(160, 50)) as pilot:
            panel = app.screen_stack[0].query_one("#stats", TextPane)
            threading.Thread(target=guest, daemon=True).start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not finished.is_set():
                assert loop.time() < deadline, shown
                await pilot.pause(0.02)
                text = panel.plain
                if "[space] next step" in text and text.split("\n")[0] not in shown:
                    shown.append(text.split("\n")[0])
                    await pilot.press("space")
            await wait_panel(pilot, panel, "Lesson complete")
            await pilot.press("q")
        return shown

    try:
        shown = asyncio.run(run())
    finally:
        gate.close()
        for rig in rigs:
            rig.close()
    assert shown == [f"Step {n}/6: {step.title}" for n, step in enumerate(STEPS, 1)]


async def wait_panel(pilot, panel: TextPane, words: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while words not in panel.plain:
        assert loop.time() < deadline, panel.plain
        await pilot.pause(0.02)
