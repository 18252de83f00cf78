"""A minimal GDB remote-protocol client for the stub's tests: it checks what GDB itself
hides (acks, retransmission, no-ack mode) and drives the stub where gdb would need a
terminal. Every wait is on a reply from the socket."""
from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
from typing import Callable, Iterator

from vmsim.gdb.packets import Packet, Reader, frame

VMSIM = [sys.executable, "-c", "import sys; from vmsim.cli.main import main; sys.exit(main())"]
_STUB_LINE = re.compile(r"gdb stub on localhost:(\d+)")


def start_vmsim_with_stub(args: list[str]) -> tuple[subprocess.Popen, int]:
    """`vmsim ARGS` (which ask for `--gdb 0`), and the port the stub took, read from the
    one line vmsim prints on stderr before anything else."""
    proc = subprocess.Popen(VMSIM + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = _STUB_LINE.search(line)
    assert match, line + proc.stderr.read()
    return proc, int(match.group(1))


@contextlib.contextmanager
def stub_starter() -> Iterator[Callable[[list[str]], tuple[subprocess.Popen, int]]]:
    """start_vmsim_with_stub for a test's fixture: every vmsim it started that is still
    running at the end is killed, and all are reaped."""
    started: list[subprocess.Popen] = []

    def start(args: list[str]) -> tuple[subprocess.Popen, int]:
        proc, port = start_vmsim_with_stub(args)
        started.append(proc)
        return proc, port

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


class Client:
    """A minimal GDB client over a socket, to check what GDB itself hides."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as GDB does
        self.reader = Reader()
        self.items: list[Packet | str] = []
        self.acks = True

    def _next(self) -> Packet | str:
        while not self.items:
            chunk = self.sock.recv(65536)
            assert chunk, "the stub closed the connection"
            self.items += self.reader.feed(chunk)
        return self.items.pop(0)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        item = self._next()
        while item == "ack":
            item = self._next()
        assert isinstance(item, Packet) and item.valid, item
        if self.acks:
            self.send_raw(b"+")
        return item.data

    def ask(self, command: bytes) -> bytes:
        self.send_raw(frame(command))
        if self.acks:
            assert self._next() == "ack"
        return self.reply()

    def target_xml(self) -> bytes:
        """The target description, read with qXfer in 0x200-byte pieces as GDB does."""
        xml = b""
        while True:
            part = self.ask(b"qXfer:features:read:target.xml:%x,200" % len(xml))
            xml += part[1:]
            if part[:1] == b"l":
                return xml

    def close(self) -> None:
        self.sock.close()
