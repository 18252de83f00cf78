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
completion with its status, duration and the first bytes written. This process only
pickles a batch of events now and then; a child process writes the JSON (see
TraceWriter). On the CPU thread a chain's descriptors and buffer previews are raw
tuples and bytes; they become the dicts and hex above in the child (plain_fields).
"""
from __future__ import annotations

import fcntl
import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from vmsim.errors import VmsimError
from vmsim.trace.hub import Item, Record, TraceHub, plain_fields

FORMAT = "vmsim-trace"
VERSION = 1
_FLUSH_SECONDS = 0.05          # the longest a record waits in the buffer
_FRAME = struct.Struct("<I")
_PIPE_SIZE = 1 << 20           # ask the kernel for a 1 MiB pipe
_F_SETPIPE_SZ = 1031
_MAX_PENDING = 64 << 20        # bytes the pipe may owe before batches are dropped


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
    """Records a hub's events to a JSON-lines file, through a child process.

    The hub hands the writer its new events a batch at a time (TraceHub.batched: at a
    notify once enough gathered, or from its flush thread after an idle spell); the
    writer pickles the batch (C speed, no Python call per
    event) and writes it down a pipe to `python -m vmsim.trace.record`, which turns it
    into JSON lines on another core, at a lower priority than the emulator: when the
    host's cores are busy, the guest goes first and the writer catches up later. A full
    pipe (the child fell behind) is retried with the next batch; past MAX_PENDING it
    costs events, counted in the end line, never a wait.
    """

    def __init__(self, path: Path, hub: TraceHub) -> None:
        try:
            self._file: IO[bytes] = open(path, "wb")
        except OSError as error:
            raise TraceFileError(f"cannot write the trace to {path}: "
                                 f"{error.strerror or error}") from None
        self.path = path
        self._hub = hub
        self._early: list[Item] = []      # events before start(): they wait for it
        self._pending = b""               # a frame the pipe did not take whole yet
        self._child: subprocess.Popen | None = None
        self._lock = threading.Lock()       # a batch, or the end line: one at a time
        self.written = 0
        self.lost = 0
        self._closed = False
        self._flush = hub.batched(self._consume, _FLUSH_SECONDS)

    def start(self, devices: list[dict[str, Any]], timebase_hz: int) -> None:
        # wall_t0: the Unix time of t = 0, for captures that want absolute times
        wall_t0 = time.time() - (time.monotonic() - self._hub.t0)
        header = {"format": FORMAT, "version": VERSION, "timebase_hz": timebase_hz,
                  "wall_t0": round(wall_t0, 6), "devices": devices}
        self._file.write((json.dumps(header) + "\n").encode())
        self._file.flush()
        self._child = subprocess.Popen([sys.executable, "-m", "vmsim.trace.record"],
                                       stdin=subprocess.PIPE, stdout=self._file,
                                       close_fds=True)
        pipe = self._child.stdin.fileno()           # type: ignore[union-attr]
        try:
            fcntl.fcntl(pipe, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass
        os.set_blocking(pipe, False)

    def _consume(self, batch: list[Item]) -> None:
        """A batch from the hub (or a flush at the end): one pickled frame down the
        pipe, after what the pipe still owes."""
        with self._lock:
            self._send(batch)

    def _send(self, batch: list[Item]) -> None:
        child = self._child
        if child is None or child.stdin is None:
            if not self._closed:
                self._early += batch                # not started yet: they wait
            return
        if self._early:
            batch, self._early = self._early + batch, []
        frame = self._pending
        if batch:
            payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            if len(self._pending) > _MAX_PENDING:
                self.lost += len(batch)            # the child is hopelessly behind
            else:
                frame += _FRAME.pack(len(payload)) + payload
                self.written += len(batch)
        if not frame:
            return
        try:
            sent = os.write(child.stdin.fileno(), frame)
        except BlockingIOError:
            sent = 0
        except OSError:                             # the child died: nothing to do
            sent = len(frame)
        self._pending = frame[sent:]

    def close(self) -> None:
        """Flush what is left, let the child write the end line; safe to call twice."""
        if self._closed:
            return
        child = self._child
        if child is not None and child.stdin is not None:
            self._flush()
        with self._lock:
            self._closed = True
            if child is not None and child.stdin is not None:
                end = pickle.dumps(("end", self.written, self.lost))
                rest = self._pending + _FRAME.pack(len(end)) + end
                self._pending = b""
                self._child = None                  # later events: kept, never sent
        if child is not None and child.stdin is not None:
            os.set_blocking(child.stdin.fileno(), True)
            try:
                child.stdin.write(rest)
                child.stdin.close()
            except OSError:
                pass
            child.wait()
        self._file.close()


_NICE = 10   # the writer child's niceness: below the emulator when cores are scarce


def _child_main() -> int:
    """`python -m vmsim.trace.record`: pickled batches on stdin -> JSON lines on stdout."""
    try:
        os.nice(_NICE)
    except OSError:
        pass
    source = sys.stdin.buffer
    out = sys.stdout.buffer
    dumps = json.dumps
    # One encoder for every line (json.dumps with separators builds one per call); the
    # events are trees of plain values, so the circular-reference check is skipped.
    encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    while True:
        head = source.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return 0
        payload = source.read(_FRAME.unpack(head)[0])
        batch = pickle.loads(payload)
        if isinstance(batch, tuple) and batch and batch[0] == "end":
            out.write((dumps({"end": True, "events": batch[1],
                              "lost": batch[2]}) + "\n").encode())
            out.flush()
            return 0
        out.write("".join(
            encode({"seq": seq, "t": round(t, 9), "g": g, "dev": dev, "ev": kind, "q": q,
                    "f": plain_fields(fields)}) + "\n"
            for seq, t, g, dev, kind, q, fields in batch).encode())


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


if __name__ == "__main__":
    sys.exit(_child_main())
