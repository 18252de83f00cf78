"""The TUI driven by Textual's Pilot: from a trace recorded on the default guest (what
`vmsim trace view` shows, scrubbing, breaking, filtering, a request's bytes), and live
from a device on the rig, where a breakpoint really stops the thread that drives it."""
from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from vmsim.devices.virtio.crypto.constants import CipherAlgo
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.testing.crypto_rig import CryptoRig
from vmsim.trace.control import MachineGate
from vmsim.trace.hub import TraceHub
from vmsim.trace.record import read_trace
from vmsim.tui.app import VmsimApp
from vmsim.tui.feeds import ConsoleBuffer, HubFeed, TraceFeed
from vmsim.tui.widgets import RingView, TextPane

RECORDED = Path(__file__).parents[1] / "data" / "boot-rsa.trace.jsonl.gz"
SIZE = (160, 50)


def text_of(app: VmsimApp, selector: str) -> str:
    return app.screen_stack[0].query_one(selector, TextPane).plain


def ring_text(app: VmsimApp) -> str:
    view = app.query_one(RingView)
    return "\n".join("".join(seg.text for seg in line) for line in view._lines)


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the TUI never got there")
        await pilot.pause(0.02)


@pytest.fixture(scope="module")
def trace():
    return read_trace(RECORDED)


def test_trace_view_opens_at_the_end_with_every_queue(trace) -> None:
    async def run() -> None:
        app = VmsimApp(TraceFeed(trace, "boot"))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.position == len(trace.records)
            rings = ring_text(app)
            dataq = re.search(r"dataq0\s+size 1024\s+in flight 0\s+kicks (\d+)\s+pops (\d+)", rings)
            controlq = re.search(r"controlq\s+size 1024\s+in flight 0\s+kicks (\d+)", rings)
            assert dataq and controlq, rings
            pops = sum(1 for r in trace.records if r.kind == "pop" and r.queue == 0)
            assert int(dataq.group(2)) == pops
            table = app.query_one("#requests", DataTable)
            assert table.row_count == min(200, sum(1 for r in trace.records if r.kind == "pop"))
            assert "ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK" in text_of(app, "#device")
            assert "VERSION_1" in text_of(app, "#device")
            assert f"at {len(trace.records)}/{len(trace.records)}" in text_of(app, "#status")
            assert "sessions" in text_of(app, "#stats") and "req/s" in text_of(app, "#stats")
    asyncio.run(run())


def test_scrubbing_moves_through_the_events(trace) -> None:
    async def run() -> None:
        app = VmsimApp(TraceFeed(trace), position=100)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.position == 100 and app.model.events == 100
            await pilot.press("right_square_bracket", "right_square_bracket")
            assert app.position == 102 and app.model.last.seq == trace.records[101].seq
            await pilot.press("left_square_bracket")
            assert app.position == 101 and app.model.events == 101
            await pilot.press("right_curly_bracket")
            assert app.position == 201
            await pilot.press("less_than_sign")
            assert app.position == 0 and app.model.events == 0
            assert "no queue is set up yet" in ring_text(app)
            await pilot.press("greater_than_sign")
            assert app.position == len(trace.records)
    asyncio.run(run())


def test_break_in_a_recording_jumps_to_the_matching_event(trace) -> None:
    async def run() -> None:
        app = VmsimApp(TraceFeed(trace), position=0)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("b")
            await pilot.press(*"opcode=AKCIPHER_DECRYPT")
            await pilot.press("enter")
            await pilot.pause()
            first = next(r for r in trace.records if r.fields.get("opcode") == "AKCIPHER_DECRYPT")
            assert app.model.last.seq == first.seq
            assert "break at" in text_of(app, "#status") and "opcode=AKCIPHER_DECRYPT" in text_of(app, "#status")
            await pilot.press("b", *"opcode=NOPE,", "enter")        # a second, bad condition
            await pilot.pause()
            assert "cannot read" in text_of(app, "#status") or "no later event" in text_of(app, "#status")
    asyncio.run(run())


def test_a_selected_request_shows_its_chain_and_bytes(trace) -> None:
    async def run() -> None:
        app = VmsimApp(TraceFeed(trace))
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#requests", DataTable)
            table.focus()
            await pilot.press("home", "enter")
            await pilot.pause()
            detail = text_of(app, "#detail")
            key = table.coordinate_to_cell_key((0, 0)).row_key.value
            first = next(r for r in app.model.requests if str(r.seq) == key)
            assert first.opcode in detail and f"head {first.head}" in detail
            assert "INDIRECT" in detail and "0000  " in detail and "status OK" in detail
    asyncio.run(run())


def test_filter_by_queue_and_help(trace) -> None:
    async def run() -> None:
        app = VmsimApp(TraceFeed(trace))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f", *"queue=1", "enter")
            await pilot.pause()
            table = app.query_one("#requests", DataTable)
            queues = {table.get_row_at(n)[1] for n in range(table.row_count)}
            assert queues == {"controlq"}
            assert "dataq0" not in ring_text(app) and "controlq" in ring_text(app)
            await pilot.press("question_mark")
            assert "break when an event matches" in str(app.screen.query_one("#help", Static).render())
            await pilot.press("escape")
            assert app.screen is app.screen_stack[0]
    asyncio.run(run())


def test_live_breakpoint_stops_the_device_until_resumed() -> None:
    """A rig driven from a thread stands in for the CPU thread: the breakpoint stops it
    inside the device at the decoded request, the TUI shows where, p lets it go."""
    hub, gate = TraceHub(), MachineGate()
    hub.listen(gate.listener)
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
    finished = threading.Event()

    def guest() -> None:
        rig.cipher(sid, bytes(16), b"s" * 32)
        finished.set()

    feed = HubFeed(hub, gate, ConsoleBuffer(), [{"name": "virtio-crypto", "device_id": 20,
                                                 "num_queues": 2, "queue_names": ["dataq0", "controlq"]}],
                   lambda data: None, lambda: "running", title="rig")

    async def run() -> None:
        app = VmsimApp(feed)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("b", *"opcode=CIPHER_ENCRYPT", "enter")
            thread = threading.Thread(target=guest, daemon=True)
            thread.start()
            await wait_for(pilot, lambda: "paused at" in text_of(app, "#status"))
            assert "virtio_crypto_request" in text_of(app, "#status")
            assert not finished.is_set()                    # the device is held at the event
            assert app.model.last.kind == "request"         # and the screen shows that event
            await pilot.press("p")
            await wait_for(pilot, finished.is_set)
            await wait_for(pilot, lambda: any(r.status == "OK" and r.opcode == "CIPHER_ENCRYPT"
                                              for r in app.model.requests))
            await pilot.press("q")
        thread.join(5)
    try:
        asyncio.run(run())
    finally:
        gate.close()
        rig.close()


def test_i_injects_a_fault_into_the_live_device_and_the_status_line_lists_it() -> None:
    """`i` takes a rule (GDB's `monitor fault` grammar) for the machine being watched:
    the next requests get the fault, the status line shows the rule with how often it
    fired, the request's detail says what was injected, and `clear` drops it."""
    from vmsim.devices.virtio.crypto.faults import FaultControl

    hub, gate = TraceHub(), MachineGate()
    hub.listen(gate.listener)
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
    feed = HubFeed(hub, gate, ConsoleBuffer(), [{"name": "virtio-crypto", "device_id": 20,
                                                 "num_queues": 2, "queue_names": ["dataq0", "controlq"]}],
                   lambda data: None, lambda: "running", title="rig",
                   faults=FaultControl([rig.device]).command)

    async def run() -> None:
        app = VmsimApp(feed)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i", *"color=red", "enter")
            await wait_for(pilot, lambda: "fault: unknown key 'color'" in text_of(app, "#status"))
            assert "faults:" not in text_of(app, "#status")
            await pilot.press("i", *"op=CIPHER_ENCRYPT,every=2,status=BADMSG", "enter")
            await wait_for(pilot, lambda: "fault rule added" in text_of(app, "#status"))
            assert ("faults: op=CIPHER_ENCRYPT,every=2,status=BADMSG (fired 0 of 0)"
                    in text_of(app, "#status"))
            replies = [rig.cipher(sid, bytes(16), b"s" * 32) for _ in range(2)]
            assert [reply.status for reply in replies] == [0, 2]          # OK, BADMSG
            await wait_for(pilot, lambda: "(fired 1 of 2)" in text_of(app, "#status"))
            await wait_for(pilot, lambda: any(r.status == "BADMSG" for r in app.model.requests))
            faulted = next(r for r in app.model.requests if r.status == "BADMSG")
            assert app.model.faults_injected == 1 and faulted.fault == "status=BADMSG"
            app._show_detail(str(faulted.seq))
            assert "fault injected: status=BADMSG" in text_of(app, "#detail")
            await pilot.press("i", *"clear", "enter")
            await wait_for(pilot, lambda: "cleared 1 fault rule" in text_of(app, "#status"))
            assert "faults:" not in text_of(app, "#status") and not rig.device.faults.active
            await pilot.press("q")
    try:
        asyncio.run(run())
    finally:
        gate.close()
        rig.close()


def test_a_recorded_trace_takes_no_fault_rules(trace) -> None:
    async def run() -> None:
        app = VmsimApp(TraceFeed(trace))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i")
            await pilot.pause()
            assert app.screen is app.screen_stack[0]          # no prompt opened
            assert app.check_action("fault", ()) is False      # and no key in the footer
    asyncio.run(run())


def test_a_flood_of_live_events_is_drawn_a_few_times_a_second(trace, monkeypatch) -> None:
    """A busy guest sends thousands of events a second: the model takes every one, but
    the panes are redrawn BUSY_HZ times a second, not at every tick; a few events (a
    step, a human-paced guest) are drawn at once."""
    from vmsim.tui import app as app_module
    from vmsim.tui.feeds import Feed

    records = [r for r in trace.records if r.kind == "notify"]

    class Flood(Feed):
        live = True
        batch = app_module.FLOOD + 1

        def drain(self):
            return records[:self.batch]

    feed = Flood(trace.devices)
    now = [1000.0]
    monkeypatch.setattr(app_module.time, "monotonic", lambda: now[0])

    async def run() -> None:
        app = VmsimApp(feed, refresh_hz=0.001)        # the test ticks by hand
        async with app.run_test(size=SIZE):
            drawn = []
            monkeypatch.setattr(app, "redraw", lambda: drawn.append(now[0]))
            events = app.model.events
            for step in range(20):                    # one second at REFRESH_HZ
                now[0] += 1 / app_module.REFRESH_HZ
                app._tick()
            assert app.model.events == events + 20 * feed.batch
            assert len(drawn) <= app_module.BUSY_HZ + 1
            feed.batch = 0
            now[0] += 1 / app_module.BUSY_HZ
            app._tick()
            assert drawn[-1] == now[0]                # what the flood left: drawn
            feed.batch = 1
            now[0] += 1 / app_module.REFRESH_HZ
            app._tick()
            assert drawn[-1] == now[0]                # a single event: drawn at once
    asyncio.run(run())
