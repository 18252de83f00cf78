"""Trace files: one JSON object per line, a header first, then one line per event.

    {"format": "vmsim-trace", "version": 1, "timebase_hz": 10000000,
     "devices": [{"name": "virtio-crypto", "device_id": 20, "slot": 0, "num_queues": 2,
                  "queue_names": ["dataq0", "controlq"]}]}
    {"seq": 1, "t": 0.000012, "g": 123456, "dev": "virtio-crypto", "ev": "status",
     "q": null, "f": {"old": 0, "new": 1, "names": "ACKNOWLEDGE"}}
    ...
    {"end": true, "events": 1234, "lost": 0}

Events carry everything a viewer replays: each popped chain's descriptors (index,
address, length, flags, the first bytes of each buffer), each request decoded, each
completion with its status, duration and the first bytes written. The writer is a
thread that drains its hub subscription every few milliseconds, so the CPU thread only
appends to a deque; JSON is built while the engine runs (it releases the GIL).
"""
from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from vmsim.errors import VmsimError
from vmsim.trace.hub import Record, Subscription, TraceHub

FORMAT = "vmsim-trace"
VERSION = 1
WRITER_CAPACITY = 1 << 20      # events buffered for the file before the oldest go
_FLUSH_SECONDS = 0.02
_BATCH = 32


class TraceFileError(VmsimError):
    """A trace file that cannot be read or written; the message is one line."""


def queue_names(device_id: int, num_queues: int) -> list[str]:
    """What the device's spec calls its queues: virtio-crypto has data queues and the
    control queue last; others are numbered."""
    if device_id == 20:
        return [f"dataq{i}" for i in range(num_queues - 1)] + ["controlq"]
    if device_id == 4:
        return ["requestq"][:num_queues] + [f"q{i}" for i in range(1, num_queues)]
    return [f"q{i}" for i in range(num_queues)]


def device_info(transports: list[Any]) -> list[dict[str, Any]]:
    """The header's device list, from the machine's virtio slots (MmioTransports)."""
    out = []
    for slot, transport in enumerate(transports):
        backend = getattr(transport, "device", None)
        if backend is None:
            continue
        out.append({"name": transport.name, "device_id": backend.device_id, "slot": slot,
                    "num_queues": backend.num_queues,
                    "queue_names": queue_names(backend.device_id, backend.num_queues)})
    return out


class TraceWriter:
    """Records a hub's events to a JSON-lines file on a background thread."""

    def __init__(self, path: Path, hub: TraceHub) -> None:
        try:
            self._file: IO[str] = open(path, "w", encoding="utf-8")
        except OSError as error:
            raise TraceFileError(f"cannot write the trace to {path}: "
                                 f"{error.strerror or error}") from None
        self.path = path
        self._hub = hub
        self._sub: Subscription = hub.subscribe(WRITER_CAPACITY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vmsim-trace-writer",
                                        daemon=True)
        self.written = 0
        self._started = False

    def start(self, devices: list[dict[str, Any]], timebase_hz: int) -> None:
        # wall_t0: the Unix time of t = 0, for captures that want absolute times
        wall_t0 = time.time() - (time.monotonic() - self._hub.t0)
        header = {"format": FORMAT, "version": VERSION, "timebase_hz": timebase_hz,
                  "wall_t0": round(wall_t0, 6), "devices": devices}
        self._file.write(json.dumps(header) + "\n")
        self._started = True
        self._thread.start()

    def _write(self, records: list[Record]) -> None:
        dumps = json.dumps
        self._file.write("".join(dumps(r.to_json(), separators=(",", ":")) + "\n"
                                 for r in records))
        self.written += len(records)

    def _loop(self) -> None:
        while not self._stop.wait(_FLUSH_SECONDS):
            # Small batches with a yield between them: this thread needs the GIL to
            # encode, and the CPU thread must never wait long for it in a callback.
            while records := self._sub.drain(limit=_BATCH):
                self._write(records)
                time.sleep(0)

    def close(self) -> None:
        """Write what is left and the end line; safe to call twice."""
        if self._file.closed:
            return
        self._stop.set()
        if self._started:
            self._thread.join()
            self._write(self._sub.drain())
            self._file.write(json.dumps({"end": True, "events": self.written,
                                         "lost": self._sub.lost}) + "\n")
        self._file.close()


@dataclass
class Trace:
    """A trace file read back: its header, events, and whether it ended cleanly."""

    header: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    complete: bool = False
    lost: int = 0

    @property
    def devices(self) -> list[dict[str, Any]]:
        return list(self.header.get("devices", []))

    def queue_name(self, device: str, queue: int | None) -> str:
        if queue is None:
            return "-"
        for info in self.devices:
            if info["name"] == device and queue < len(info.get("queue_names", [])):
                return str(info["queue_names"][queue])
        return f"q{queue}"


def iter_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        if path.suffix == ".gz":
            handle: IO[str] = gzip.open(path, "rt", encoding="utf-8")
        else:
            handle = open(path, encoding="utf-8")
    except OSError as error:
        raise TraceFileError(f"cannot read the trace {path}: {error.strerror or error}") from None
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError:
                        raise TraceFileError(f"{path}:{number}: not a JSON line") from None
        except (OSError, EOFError, UnicodeDecodeError) as error:
            raise TraceFileError(f"cannot read the trace {path}: {error}") from None


def read_trace(path: Path) -> Trace:
    """Read a trace file (gzip-compressed if its name ends in .gz); a truncated one
    (the run was killed) reads up to its end."""
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None or first[1].get("format") != FORMAT:
        raise TraceFileError(f"{path} is not a vmsim trace (no header line)")
    header = first[1]
    if header.get("version") != VERSION:
        raise TraceFileError(f"{path}: trace version {header.get('version')} "
                             f"(this vmsim reads {VERSION})")
    trace = Trace(header)
    for number, data in lines:
        if data.get("end"):
            trace.complete = True
            trace.lost = int(data.get("lost", 0))
            continue
        try:
            trace.records.append(Record.from_json(data))
        except (KeyError, TypeError, ValueError):
            raise TraceFileError(f"{path}:{number}: not a trace event") from None
    return trace
