"""A running machine's events, console and controls on a Unix socket, for
`vmsim tui --attach SOCKET` (and so for a browser, through textual-serve, which starts
one attached TUI per visit).

To the viewer go frames (a 4-byte length, then a pickled list of items; pickle is
several times cheaper than JSON to make, and this runs in the emulator's process): a
hello {"hello": "vmsim-trace", "devices": [...]}, the history it kept (so a late viewer
sees the negotiation and the queue setup), then every new record as a tuple, console
output as {"console": text} and the guest's state as {"state": text} when it changes.
From the viewer come JSON lines: {"cmd": "pause" | "resume" | "step"},
{"cmd": "break", "conditions": "opcode=..."}, {"input": text} for the console and,
where the machine takes fault rules (the hello says "faults": true),
{"cmd": "fault", "rule": "..."}, GDB's `monitor fault` grammar (docs/faults.md): its
answer goes back to that viewer as {"fault_reply": text}, and every viewer gets the
rules with their counts as {"faults": text} when they change.
Only a vmsim viewer on the same host connects (the socket is the user's, mode 0600).
The new events are pickled once a batch (TraceHub.batched) for every viewer;
each viewer's thread only sends the frames from its bounded queue (a viewer that lags
loses the oldest frames and sees the gap in the sequence numbers; one that stops reading
is dropped), so no thread of the emulator's process runs Python per event: the emulator
never waits. The history a new viewer gets first may overlap its first frames; viewers
skip what they already have.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from vmsim.trace.control import ConditionError, MachineGate, parse_conditions
from vmsim.trace.hub import Item, TraceHub

HISTORY = 50_000                        # recent records a new viewer gets first
_KEEP_ALWAYS = frozenset({"status", "features", "queue_setup", "config_read"})
_SEND_EVERY = 0.05
_CHUNK = 64                             # records per frame of the history
_MAX_FRAMES = 256                       # frames a viewer may owe before the oldest go
FRAME = struct.Struct("<I")
CLOSE_WAIT = 1.0                        # seconds a closing viewer's frame may take to finish


class TraceServer:
    """Serves one machine on `path` (a Unix socket) until `close()`."""

    def __init__(self, path: Path, hub: TraceHub, gate: MachineGate,
                 devices: Callable[[], list[dict[str, Any]]],
                 console_history: Callable[[], bytes],
                 push_input: Callable[[bytes], None], state: Callable[[], str],
                 faults: Callable[[str], str] | None = None) -> None:
        self.path = path
        self._faults = faults
        self._hub, self._gate = hub, gate
        self._devices, self._console_history = devices, console_history
        self._push, self._state = push_input, state
        self._history = hub.subscribe(capacity=HISTORY)    # never drained: the newest
        self._structural: list[Item] = []
        self._clients: list[_Client] = []
        self._console_subscribers: list[_Client] = []
        self._stop = threading.Event()
        hub.listen_items(self._remember, kinds=_KEEP_ALWAYS)
        self.flush = hub.batched(self._fan_out, seconds=_SEND_EVERY)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o600)
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._accept, name="vmsim-trace-server",
                                        daemon=True)
        self._thread.start()

    def _remember(self, item: Item) -> None:
        """Hub listener for the structural kinds (as they are stamped): a late viewer gets them
        even when they are older than the history kept."""
        self._structural.append(item)
        del self._structural[:-1000]

    def _fan_out(self, items: list[Item]) -> None:
        """A batch of new events (from the hub, or a viewer's idle flush): pickled once,
        queued for every viewer."""
        clients = self._clients
        if not items or not clients:
            return
        payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        frame = FRAME.pack(len(payload)) + payload
        for client in list(clients):
            client.frames.append(frame)

    def console(self, data: bytes) -> None:
        """Console output (CPU thread), for every connected viewer."""
        text = data.decode(errors="replace")
        for client in list(self._clients):
            client.console.append(text)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            client = _Client(self, conn)
            self._clients.append(client)
            client.start()

    def snapshot(self) -> list[Item]:
        """The structural events older than the kept history, then the history."""
        structural = list(self._structural)      # before the history: none missing between
        history = self._history.peek()
        first = history[0][0] if history else 0
        early = [item for item in structural if item[0] < first]
        return early + history

    def command(self, message: dict[str, Any], client: _Client | None = None) -> None:
        if "input" in message:
            self._push(str(message["input"]).encode())
        cmd = message.get("cmd")
        if cmd == "pause":
            self._gate.pause()
        elif cmd == "resume":
            self._gate.resume()
        elif cmd == "step":
            self._gate.step()
        elif cmd == "break":
            try:
                self._gate.set_breakpoints(parse_conditions(str(message.get("conditions", ""))))
            except ConditionError:
                pass
        elif cmd == "fault" and self._faults is not None:
            reply = self._faults(str(message.get("rule", "")))
            if client is not None:
                client.replies.append(reply)

    def fault_listing(self) -> str:
        return self._faults("list") if self._faults is not None else ""

    def state(self) -> str:
        if self._gate.paused:
            at = self._gate.stopped_at
            return f"paused at #{at.seq} {at.name}" if at else "paused"
        return self._state()

    def close(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        finally:
            for client in list(self._clients):
                client.close()
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


class _Client:
    def __init__(self, server: TraceServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.frames: deque[bytes] = deque(maxlen=_MAX_FRAMES)   # new events, pickled
        self.console: deque[str] = deque(maxlen=10_000)
        self.replies: deque[str] = deque(maxlen=100)      # to this viewer's fault commands
        self.closed = threading.Event()
        # Held while a frame is being sent: close() lets that frame finish (the viewer
        # would read a frame cut short), waiting at most CLOSE_WAIT for a stuck viewer.
        self._sending = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._send_loop, name="vmsim-trace-client", daemon=True).start()
        threading.Thread(target=self._read_loop, name="vmsim-trace-cmds", daemon=True).start()

    def _send(self, items: list) -> None:
        for start in range(0, len(items), _CHUNK):
            payload = pickle.dumps(items[start:start + _CHUNK], protocol=pickle.HIGHEST_PROTOCOL)
            self._send_frame(FRAME.pack(len(payload)) + payload)

    def _send_frame(self, frame: bytes) -> None:
        with self._sending:
            if self.closed.is_set():
                raise ConnectionAbortedError("the viewer was closed")
            self.conn.sendall(frame)
        time.sleep(0)                     # let the CPU thread have the GIL

    def _send_loop(self) -> None:
        server = self.server
        try:
            snapshot = server.snapshot()
            self._send([{"hello": "vmsim-trace", "devices": server._devices(),
                         "faults": server._faults is not None}])
            self._send([{"console": server._console_history().decode(errors="replace")}])
            self._send(snapshot)
            state = listing = ""
            while not self.closed.wait(_SEND_EVERY):
                while self.frames:
                    self._send_frame(self.frames.popleft())
                items: list = []
                if self.console:
                    text = "".join(self.console.popleft() for _ in range(len(self.console)))
                    items.append({"console": text})
                now = server.state()
                if now != state:
                    state = now
                    items.append({"state": now})
                rules = server.fault_listing()
                if rules != listing:
                    listing = rules
                    items.append({"faults": rules})
                while self.replies:
                    items.append({"fault_reply": self.replies.popleft()})
                self._send(items)
        except OSError:
            pass
        finally:
            self.close()

    def _read_loop(self) -> None:
        buffer = b""
        try:
            while not self.closed.is_set():
                data = self.conn.recv(4096)
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    try:
                        self.server.command(json.loads(line), self)
                    except (ValueError, AttributeError):
                        continue
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self in self.server._clients:
            self.server._clients.remove(self)
        sending = self._sending.acquire(timeout=CLOSE_WAIT)   # no frame is cut short
        try:   # shutdown first: it wakes our reader thread and tells the viewer at once
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.conn.close()
        except OSError:
            pass
        if sending:
            self._sending.release()
