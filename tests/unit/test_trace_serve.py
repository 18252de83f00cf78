"""The --observe socket and the attach feed, without a guest: a rig's events reach an
attached viewer (the history first, then live), console text too, and the viewer's
pause, break and typed input reach the machine's side."""
from __future__ import annotations

import time
from pathlib import Path

from vmsim.devices.virtio.crypto.constants import CipherAlgo
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.testing.crypto_rig import CryptoRig
from vmsim.trace.control import MachineGate
from vmsim.trace.hub import TraceHub
from vmsim.trace.serve import TraceServer
from vmsim.tui.feeds import SocketFeed

CRYPTO = [{"name": "virtio-crypto", "device_id": 20, "num_queues": 2,
           "queue_names": ["dataq0", "controlq"]}]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_attached_viewer_gets_history_live_events_and_sends_commands(tmp_path: Path) -> None:
    hub, gate, typed = TraceHub(), MachineGate(), []
    hub.listen(gate.listener)
    server = TraceServer(tmp_path / "vm.sock", hub, gate, lambda: CRYPTO,
                         lambda: b"booted\n", typed.append, lambda: "running")
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    feed = None
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))     # before anyone attached
        feed = SocketFeed(str(tmp_path / "vm.sock"))
        assert feed.devices == CRYPTO
        got = []
        wait_for(lambda: got.extend(feed.drain()) or any(r.kind == "session_create" for r in got))
        assert got[0].kind == "status" and any(r.kind == "features" for r in got)
        rig.cipher(sid, bytes(16), b"x" * 16)                     # live, after attaching
        wait_for(lambda: got.extend(feed.drain()) or any(r.fields.get("opcode") == "CIPHER_ENCRYPT"
                                                         for r in got))
        assert [r.seq for r in got] == sorted({r.seq for r in got})      # no duplicates
        server.console(b"hello from the guest\n")
        wait_for(lambda: b"hello from the guest" in feed._console.history())
        assert feed._console.history().startswith(b"booted\n")    # the history came first
        feed.send_input(b"ls\r")
        wait_for(lambda: typed == [b"ls\r"])
        feed.pause()
        wait_for(lambda: gate.paused)
        wait_for(lambda: feed.status() == "paused")
        feed.resume()
        wait_for(lambda: not gate.paused)
        feed.set_breakpoints([])
        wait_for(lambda: feed.status() == "running")
        server.close()                                            # the machine goes
        wait_for(lambda: feed.finished and feed.status() == "the machine is gone")
    finally:
        if feed is not None:
            feed.close()
        gate.close()
        server.close()
        rig.close()
    assert not (tmp_path / "vm.sock").exists()


def test_attaching_to_nothing_is_one_line(tmp_path: Path, capsys) -> None:
    from vmsim.cli.main import main

    assert main(["tui", "--attach", str(tmp_path / "nope.sock")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot attach to" in err[0]


def test_an_attached_viewer_adds_and_lists_fault_rules(tmp_path: Path) -> None:
    from vmsim.devices.virtio.crypto.faults import FaultControl

    hub, gate = TraceHub(), MachineGate()
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    server = TraceServer(tmp_path / "vm.sock", hub, gate, lambda: CRYPTO, lambda: b"",
                         lambda data: None, lambda: "running",
                         faults=FaultControl([rig.device]).command)
    feed = None
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        feed = SocketFeed(str(tmp_path / "vm.sock"))
        assert feed.can_fault
        wait_for(lambda: feed.fault_state()[0] == "no fault rules\n")
        feed.fault("op=CIPHER_ENCRYPT,status=NOSPC")
        wait_for(lambda: feed.fault_state()[1] == "fault rule added: op=CIPHER_ENCRYPT,status=NOSPC\n")
        assert rig.cipher(sid, bytes(16), b"x" * 16).status == 5            # NOSPC
        wait_for(lambda: "(matched 1, fired 1)" in feed.fault_state()[0])
        feed.fault("clear")
        wait_for(lambda: feed.fault_state() == ("no fault rules\n", "cleared 1 fault rule\n"))
    finally:
        if feed is not None:
            feed.close()
        server.close()
        rig.close()


def test_a_machine_without_fault_rules_says_so_in_its_hello(tmp_path: Path) -> None:
    server = TraceServer(tmp_path / "vm.sock", TraceHub(), MachineGate(), lambda: CRYPTO,
                         lambda: b"", lambda data: None, lambda: "running")
    feed = SocketFeed(str(tmp_path / "vm.sock"))
    try:
        assert not feed.can_fault
    finally:
        feed.close()
        server.close()


def fake_machine(path: Path, frames: list[bytes], linger: float = 0.0):
    """A stand-in for a machine's socket: it sends the first viewer `frames` (raw bytes,
    whole frames or not), waits `linger` seconds and hangs up. Returns the listener (to
    close) and the thread (to join)."""
    import socket
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        for frame in frames:
            conn.sendall(frame)
        time.sleep(linger)
        conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def frame_of(items: list) -> bytes:
    import pickle

    from vmsim.trace.serve import FRAME

    payload = pickle.dumps(items)
    return FRAME.pack(len(payload)) + payload


HELLO = [{"hello": "vmsim-trace", "devices": CRYPTO}]


def test_a_viewer_skips_events_its_history_already_held(tmp_path: Path) -> None:
    """New events reach viewers in frames the CPU thread pickled once for all of them;
    the history a viewer got first may overlap its first frame, and it keeps each event
    once."""
    def item(seq: int) -> tuple:
        return (seq, seq / 10, seq, "virtio-crypto", "notify", 0, {"avail_idx": seq})

    path = tmp_path / "fake.sock"
    listener, _ = fake_machine(path, [frame_of(batch) for batch in (
        HELLO, [item(1), item(2), item(3)], [item(2), item(3), item(4)], [item(5)])], 0.5)
    feed = SocketFeed(str(path))
    try:
        got = []
        wait_for(lambda: got.extend(feed.drain()) or len(got) >= 5 or feed.finished)
        wait_for(lambda: feed.finished)
        got.extend(feed.drain())
        assert [r.seq for r in got] == [1, 2, 3, 4, 5]
    finally:
        feed.close()
        listener.close()


def test_new_events_are_pickled_once_for_every_viewer(tmp_path: Path) -> None:
    """Two viewers, one hub: each gets every event, in order, once; the server holds no
    per-viewer subscription (the hub has the history and one batch, whatever attaches)."""
    hub, gate = TraceHub(), MachineGate()
    hub.timebase_hz = 10_000_000                    # gathered, as in a machine
    server = TraceServer(tmp_path / "vm.sock", hub, gate, lambda: CRYPTO, lambda: b"",
                         lambda data: None, lambda: "running")
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    feeds = []
    try:
        subscribers = len(hub._subscribers)
        feeds = [SocketFeed(str(tmp_path / "vm.sock")) for _ in range(2)]
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        for n in range(20):
            rig.cipher(sid, bytes(16), bytes([n]) * 16)
        assert len(hub._subscribers) == subscribers
        hub.collect()
        last = hub.last_seq
        seen = [[], []]
        for feed, got in zip(feeds, seen):
            wait_for(lambda: got.extend(feed.drain()) or (got and got[-1].seq == last))
            assert [r.seq for r in got] == list(range(got[0].seq, last + 1))
        assert [r.seq for r in seen[0]] == [r.seq for r in seen[1]]
    finally:
        for feed in feeds:
            feed.close()
        server.close()
        gate.close()
        rig.close()


def test_a_frame_cut_short_ends_the_viewer_cleanly(tmp_path: Path, monkeypatch) -> None:
    """A machine that goes away in the middle of a frame (its process ended) leaves the
    viewer with a truncated pickle: that is the end of the stream, as EOF is. The
    reader thread must not die with a traceback and leave the TUI waiting forever."""
    import threading

    died: list = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    events = frame_of([(1, 0.0, 0, "virtio-crypto", "status", None, {"new": 1})] * 50)
    listener, machine = fake_machine(tmp_path / "vm.sock",
                                     [frame_of(HELLO), events[:len(events) // 2]])
    feed = SocketFeed(str(tmp_path / "vm.sock"))
    try:
        wait_for(lambda: feed.finished)
        assert feed.status() == "the machine is gone" and died == []
    finally:
        feed.close()
        machine.join()
        listener.close()


def test_closing_the_server_lets_the_frame_being_sent_finish(tmp_path: Path) -> None:
    """close() waits for a viewer's frame in flight, so the viewer never reads a frame
    cut short at the end of a run."""
    hub, gate = TraceHub(), MachineGate()
    server = TraceServer(tmp_path / "vm.sock", hub, gate, lambda: CRYPTO,
                         lambda: b"", lambda data: None, lambda: "running")
    feed = SocketFeed(str(tmp_path / "vm.sock"))
    try:
        wait_for(lambda: len(server._clients) == 1)
        wait_for(lambda: feed.status() == "running")    # the first frames went out whole
        client = server._clients[0]
        sent: list[bytes] = []
        real = client.conn

        class Slow:
            def sendall(self, frame: bytes) -> None:
                time.sleep(0.3)           # the frame is on its way while close() comes
                sent.append(frame)
                real.sendall(frame)

            def __getattr__(self, name: str):
                return getattr(real, name)

        client.conn = Slow()
        for n in range(300):
            hub.event_log().emit("status", "virtio-crypto", None, {"new": n})
        server.flush()
        wait_for(lambda: client._sending.locked())
        server.close()
        assert sent and client.closed.is_set()
        wait_for(lambda: feed.finished)
    finally:
        feed.close()
        gate.close()
        server.close()
