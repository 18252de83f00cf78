"""Where the TUI's events come from. A Feed hands the app new trace records and console
bytes when asked (the app asks 10-30 times a second; nothing is pushed into the UI), and
says what the guest can be told: pause, step, break, input, fault rules."""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from vmsim.trace.control import Condition, MachineGate
from vmsim.trace.hub import Record, Subscription, TraceHub
from vmsim.trace.record import Trace

CONSOLE_KEEP = 256 << 10        # console bytes kept for a late viewer


class ConsoleBuffer:
    """The guest's serial output: the machine writes (CPU thread), the UI drains."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._history = bytearray()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._chunks.append(bytes(data))
            self._history += data
            if len(self._history) > CONSOLE_KEEP:
                del self._history[:-CONSOLE_KEEP]

    def drain(self) -> bytes:
        with self._lock:
            data = b"".join(self._chunks)
            self._chunks.clear()
        return data

    def history(self) -> bytes:
        with self._lock:
            return bytes(self._history)


class Feed:
    """The interface the app reads; the base is an empty, finished feed."""

    live = False
    title = "vmsim"
    finished = False              # the source is gone for good
    exit_when_finished = False    # and the app should then close by itself

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.devices = devices

    def drain(self) -> list[Record]:
        return []

    def console(self) -> bytes:
        return b""

    def send_input(self, data: bytes) -> None:
        """Keys typed into the console pane, for the guest."""

    def status(self) -> str:
        return "finished"

    # controls of a live guest (no-ops elsewhere)
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step(self) -> None: ...
    def set_breakpoints(self, conditions: list[Condition]) -> None: ...
    def stopped_at(self) -> Record | None:
        return None

    def close(self) -> None: ...

    # fault rules of a live machine (docs/faults.md); a feed that takes none has can_fault False
    can_fault = False

    def fault(self, text: str) -> None:
        """A `monitor fault` command: a rule to add, `clear`, or nothing to list."""

    def fault_state(self) -> tuple[str, str]:
        """(the rules with their counts, the answer to the last fault())."""
        return "", ""


class HubFeed(Feed):
    """A machine in this process: its hub, gate and console."""

    live = True

    def __init__(self, hub: TraceHub, gate: MachineGate, console: ConsoleBuffer,
                 devices: list[dict[str, Any]], push_input: Callable[[bytes], None],
                 state: Callable[[], str], title: str = "vmsim run",
                 faults: Callable[[str], str] | None = None) -> None:
        super().__init__(devices)
        self.title = title
        self._sub: Subscription = hub.subscribe(capacity=1 << 16)
        self._gate = gate
        self._console = console
        self._push = push_input
        self._state = state
        self._faults = faults
        self._fault_reply = ""
        self.can_fault = faults is not None

    @property
    def lost(self) -> int:
        return self._sub.lost

    def drain(self) -> list[Record]:
        return self._sub.drain(limit=50_000)

    def console(self) -> bytes:
        return self._console.drain()

    def send_input(self, data: bytes) -> None:
        self._push(data)

    def status(self) -> str:
        if self._gate.paused:
            at = self._gate.stopped_at
            return f"paused at #{at.seq} {at.name}" if at else "paused"
        return self._state()

    def pause(self) -> None:
        self._gate.pause()

    def resume(self) -> None:
        self._gate.resume()

    def step(self) -> None:
        self._gate.step()

    def set_breakpoints(self, conditions: list[Condition]) -> None:
        self._gate.set_breakpoints(conditions)

    def stopped_at(self) -> Record | None:
        return self._gate.stopped_at if self._gate.paused else None

    def fault(self, text: str) -> None:
        if self._faults is not None:
            self._fault_reply = self._faults(text)

    def fault_state(self) -> tuple[str, str]:
        return (self._faults("list") if self._faults is not None else ""), self._fault_reply

    def close(self) -> None:
        self._gate.close()


class TraceFeed(Feed):
    """A recorded trace, for `vmsim trace view`: the app scrubs through `records`."""

    title = "vmsim trace view"

    def __init__(self, trace: Trace, name: str = "") -> None:
        super().__init__(trace.devices)
        self.trace = trace
        self.records = trace.records
        if name:
            self.title = f"vmsim trace view {name}"

    def status(self) -> str:
        return "recorded" + ("" if self.trace.complete else " (cut short)")


class SocketFeed(Feed):
    """A machine in another process, through its `--observe SOCKET` (vmsim.trace.serve):
    a reader thread turns the server's frames into records and console text, and the
    controls are sent back as JSON lines."""

    live = True

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        import json
        import socket

        self._json = json
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as error:
            raise ConnectionError(f"cannot attach to {path}: {error.strerror or error}") from None
        self._file = self._sock.makefile("rb")
        try:
            hello = self._frame()[0]
        except (OSError, ValueError, EOFError, IndexError, TypeError):
            hello = {}
        if not isinstance(hello, dict) or hello.get("hello") != "vmsim-trace":
            raise ConnectionError(f"{path} is not a vmsim --observe socket")
        self._sock.settimeout(None)
        super().__init__(list(hello.get("devices", [])))
        self.title = f"vmsim tui --attach {path}"
        self.exit_when_finished = True    # a browser session ends with its machine
        self._records: deque[Record] = deque(maxlen=1 << 18)
        self._recent: dict[int, Record] = {}
        self._console = ConsoleBuffer()
        self._state = "attached"
        self.can_fault = bool(hello.get("faults"))
        self._fault_listing = self._fault_reply = ""
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name="vmsim-attach", daemon=True).start()

    def _frame(self) -> list:
        import pickle

        from vmsim.trace.serve import FRAME

        head = self._file.read(FRAME.size)
        if len(head) < FRAME.size:
            raise EOFError
        return pickle.loads(self._file.read(FRAME.unpack(head)[0]))

    def _read(self) -> None:
        import pickle

        last = 0
        try:
            while True:
                for item in self._frame():
                    if isinstance(item, tuple):
                        if item[0] <= last:     # the history and the first frames overlap
                            continue
                        last = item[0]
                        record = Record.from_item(item)
                        self._records.append(record)
                        self._recent[record.seq] = record
                        if len(self._recent) > 4096:
                            for seq in list(self._recent)[:1024]:
                                del self._recent[seq]
                    elif "console" in item:
                        self._console.write(str(item["console"]).encode())
                    elif "state" in item:
                        self._state = str(item["state"])
                    elif "faults" in item:
                        self._fault_listing = str(item["faults"])
                    elif "fault_reply" in item:
                        self._fault_reply = str(item["fault_reply"])
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            pass            # a frame cut short is the end too: the machine closed mid-frame
        self._state = "the machine is gone"
        self.finished = True

    def _command(self, message: dict[str, Any]) -> None:
        try:
            with self._send_lock:
                self._sock.sendall((self._json.dumps(message) + "\n").encode())
        except OSError:
            pass

    def drain(self) -> list[Record]:
        out = []
        while self._records:
            out.append(self._records.popleft())
        return out

    def console(self) -> bytes:
        return self._console.drain()

    def send_input(self, data: bytes) -> None:
        self._command({"input": data.decode(errors="replace")})

    def status(self) -> str:
        return self._state

    def pause(self) -> None:
        self._command({"cmd": "pause"})

    def resume(self) -> None:
        self._command({"cmd": "resume"})

    def step(self) -> None:
        self._command({"cmd": "step"})

    def set_breakpoints(self, conditions: list[Condition]) -> None:
        self._command({"cmd": "break", "conditions": ", ".join(map(str, conditions))})

    def fault(self, text: str) -> None:
        self._command({"cmd": "fault", "rule": text})

    def fault_state(self) -> tuple[str, str]:
        return self._fault_listing, self._fault_reply

    def stopped_at(self) -> Record | None:
        """The event the machine is held at, from its state line ("paused at #N ...")."""
        if not self._state.startswith("paused at #"):
            return None
        try:
            seq = int(self._state.split("#", 1)[1].split()[0])
        except (IndexError, ValueError):
            return None
        return self._recent.get(seq)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
