"""The GDB remote stub: a socket thread that listens and receives, and the CPU thread
that executes every command while the guest is halted.

Why two threads: `emu_start` blocks the CPU thread, so only another thread can see
GDB's 0x03 while the guest runs. That thread never touches the engine: it asks the
machine for attention (the watchdog, whose stops land at block boundaries, docs/engine.md
E14 and P1), and the run loop then calls `serve()` on the CPU thread, which reads the
received packets from a queue and answers them until GDB resumes the guest.

Breakpoints are code hooks on their address and watchpoints memory hooks on their
range, never patched guest memory; both exist only while GDB has some set, so an idle
stub costs the guest nothing (a memory hook slows the whole guest, E13). Memory
addresses are guest-virtual. Everything that differs per architecture (registers, the
target description, translation, interrupt masking around a step) is the machine's
board's `Target` (vmsim.gdb.target); the stub itself is the same on every board.
"""
from __future__ import annotations

import queue
import socket
import threading
from typing import Any, Callable

from vmsim.core import cpu as cpu_module
from vmsim.core.machine import BaseMachine
from vmsim.gdb.monitor import Monitor
from vmsim.gdb.packets import Packet, Reader, frame
from vmsim.gdb.target import target_for

_NEVER_REACHED = (1 << 64) - 1
SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11
_WATCH_KINDS = {2: "watch", 3: "rwatch", 4: "awatch"}
_RESUME = object()            # a handler's answer: the guest runs; no reply yet


class GdbStub:
    """Serves one GDB at a time on localhost:port for `machine` (port 0: any free one)."""

    def __init__(self, machine: BaseMachine, port: int, wait: bool = False,
                 host: str = "127.0.0.1") -> None:
        self.machine = machine
        self.target = target_for(machine)
        self.monitor = Monitor(machine, self.target)
        self._listener = socket.create_server((host, port))
        self.port: int = self._listener.getsockname()[1]
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._send_lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._no_ack = False
        self._last_sent = b""
        self._halt = wait              # the run loop calls serve() before the next run
        self._interrupted = False
        self._waiting_for_stop = False  # GDB resumed the guest and expects a stop reply
        self._stop_reply = f"T{SIGTRAP:02x}thread:1;"
        self._closed = False
        self._serving = False
        # Engine hooks, present only while needed: address -> handle.
        self._breakpoints: dict[int, Any] = {}
        self._watchpoints: dict[tuple[int, int, int], list[Any]] = {}
        self._watch_stepper: Any = None
        self._watch_hit: str | None = None
        self._skip_pc: int | None = None
        self._stepping = False
        self._bp_hit = False
        self._thread = threading.Thread(target=self._serve_socket, name="vmsim-gdb",
                                        daemon=True)
        machine.debugger = self
        if machine.strict is not None:
            machine.strict.on_finding = self._on_strict_finding
        self._thread.start()

    # -- the socket thread ---------------------------------------------------------

    def _serve_socket(self) -> None:
        """Accept one connection at a time; turn its bytes into events for serve()."""
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._send_lock:
                self._conn, self._no_ack, self._last_sent = conn, False, b""
            if not self._serving:
                self._request_halt(interrupt=False)   # QEMU too stops the guest on attach
            reader = Reader()
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                for item in reader.feed(chunk):
                    self._received(item)
            self._events.put(("closed", conn))
            self._request_halt(interrupt=False)

    def _received(self, item: Packet | str) -> None:
        if isinstance(item, Packet):
            if not self._no_ack:
                self._send_raw(b"+" if item.valid else b"-")
            if item.valid:
                self._events.put(("packet", item.data))
        elif item == "nak" and not self._no_ack and self._last_sent:
            self._send_raw(self._last_sent)
        elif item == "interrupt":
            self._request_halt(interrupt=True)

    def _request_halt(self, interrupt: bool) -> None:
        """Any thread: the CPU thread halts at the next safe point and calls serve()."""
        if interrupt:
            self._interrupted = True
        self._halt = True
        self.machine.watchdog.wake()

    def _send_raw(self, data: bytes) -> None:
        with self._send_lock:
            if self._conn is not None:
                try:
                    self._conn.sendall(data)
                except OSError:
                    pass                   # the reader sees the connection end

    def _send(self, data: bytes) -> None:
        packet = frame(data)
        self._last_sent = packet
        self._send_raw(packet)

    # -- the machine's side (CPU thread) ---------------------------------------------

    def halt_requested(self) -> bool:
        return self._halt

    def serve(self) -> None:
        """CPU thread, engine stopped: answer GDB until it resumes the guest."""
        self._serving = True          # before clearing _halt: an attach now needs no halt
        self._halt = False
        try:
            if self._waiting_for_stop:
                self._report_stop()
            while not self.machine.quitting:
                try:
                    kind, value = self._events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if kind == "closed":
                    if value is self._conn:
                        self._detach()
                    if self._conn is None:
                        return                # nobody left to take commands from
                    continue                  # an old connection's end; a new one is here
                reply = self._handle(value)
                if reply is _RESUME:
                    return
                if reply is not None:
                    self._send(reply)
        finally:
            self._serving = False

    def _report_stop(self) -> None:
        self._waiting_for_stop = False
        if self._interrupted:
            self._stop_reply = f"T{SIGINT:02x}thread:1;"
        elif self._watch_hit is not None:
            self._stop_reply = f"T{SIGTRAP:02x}{self._watch_hit};thread:1;"
        else:
            self._stop_reply = f"T{SIGTRAP:02x}thread:1;"
        self._interrupted = False
        self._watch_hit = None
        self._bp_hit = False
        self._send(self._stop_reply.encode())

    def _detach(self) -> None:
        """GDB left (D, or the connection closed): remove every hook, run on."""
        self._clear_points()
        self._waiting_for_stop = False
        self._interrupted = False
        with self._send_lock:
            if self._conn is not None:
                try:
                    self._conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._conn.close()
                self._conn = None

    # -- packets ---------------------------------------------------------------------

    def _handle(self, data: bytes) -> bytes | object | None:
        text = data.decode("latin-1")
        head = text[:1]
        handler: Callable[[str], bytes | object | None] | None = {
            "?": self._question, "g": self._read_all, "G": self._write_all,
            "p": self._read_one, "P": self._write_one, "m": self._read_mem,
            "M": self._write_mem, "c": self._continue, "s": self._step_packet,
            "C": self._continue, "S": self._step_packet, "Z": self._insert,
            "z": self._remove, "H": lambda _t: b"OK", "T": lambda _t: b"OK",
            "D": self._detach_packet, "k": self._kill,
        }.get(head)
        if handler is not None:
            try:
                return handler(text)
            except (ValueError, IndexError):
                return b"E01"
        if text.startswith("q") or text.startswith("Q"):
            return self._query(text)
        if text.startswith("vCont"):
            return self._vcont(text)
        if text.startswith("vKill"):
            self._send(b"OK")
            return self._kill(text)
        return b""                                   # unsupported: the empty reply

    def _query(self, text: str) -> bytes:
        if text.startswith("qSupported"):
            return (b"PacketSize=4000;qXfer:features:read+;vContSupported+;"
                    b"QStartNoAckMode+")
        if text == "QStartNoAckMode":
            self._send(b"OK")                        # still acknowledged by GDB
            self._no_ack = True
            return None  # type: ignore[return-value]
        if text.startswith("qXfer:features:read:"):
            annex, _, span = text[len("qXfer:features:read:"):].partition(":")
            if annex != "target.xml":
                return b"E00"
            offset, length = (int(x, 16) for x in span.split(","))
            xml = self.target.target_xml()
            part = xml[offset:offset + length]
            return (b"l" if offset + length >= len(xml) else b"m") + part
        if text == "qAttached":
            return b"1"
        if text == "qC":
            return b"QC1"
        if text == "qfThreadInfo":
            return b"m1"
        if text == "qsThreadInfo":
            return b"l"
        if text.startswith("qSymbol"):
            return b"OK"
        if text.startswith("qRcmd,"):
            command = bytes.fromhex(text[6:]).decode("utf-8", "replace")
            output = self.monitor.run(command)
            if output:
                self._send(b"O" + output.encode().hex().encode())
            return b"OK"
        return b""

    def _question(self, _text: str) -> bytes:
        """A fresh session's first question: forget breakpoints, as on a new attach."""
        self._clear_points()
        return self._stop_reply.encode()

    def _read_all(self, _text: str) -> bytes:
        return self.target.read_g().hex().encode()

    def _write_all(self, text: str) -> bytes:
        self.target.write_g(bytes.fromhex(text[1:]))
        return b"OK"

    def _read_one(self, text: str) -> bytes:
        value = self.target.read_register(int(text[1:], 16))
        return b"E01" if value is None else value.hex().encode()

    def _write_one(self, text: str) -> bytes:
        number, _, value = text[1:].partition("=")
        ok = self.target.write_register(int(number, 16), bytes.fromhex(value))
        return b"OK" if ok else b"E01"

    def _read_mem(self, text: str) -> bytes:
        address, length = (int(x, 16) for x in text[1:].split(","))
        data = self.target.read_memory(address, min(length, 0x1000))
        return b"E14" if data is None else data.hex().encode()

    def _write_mem(self, text: str) -> bytes:
        span, _, value = text[1:].partition(":")
        address, _length = (int(x, 16) for x in span.split(","))
        return b"OK" if self.target.write_memory(address, bytes.fromhex(value)) else b"E14"

    def _detach_packet(self, _text: str) -> object:
        self._send(b"OK")
        self._detach()
        return _RESUME

    def _kill(self, _text: str) -> object:
        self._clear_points()
        self.machine.request_quit(0)
        return _RESUME

    # -- running and stepping ----------------------------------------------------------

    def _vcont(self, text: str) -> bytes | object:
        if text == "vCont?":
            return b"vCont;c;C;s;S"
        actions = [a.split(":")[0] for a in text.split(";")[1:]]
        if any(a[:1] in ("s", "S") for a in actions):
            return self._step_packet("s")
        if any(a[:1] in ("c", "C") for a in actions):
            return self._continue("c")
        return b"E01"

    def _continue(self, text: str) -> object:
        if text[:1] == "c" and len(text) > 1:
            self.target.cpu.pc = int(text[1:], 16)
        pc = self.target.cpu.pc
        self._skip_pc = pc if pc in self._breakpoints else None   # do not stop where we are
        self._waiting_for_stop = True
        return _RESUME

    def _step_packet(self, text: str) -> bytes:
        if text[:1] == "s" and len(text) > 1:
            self.target.cpu.pc = int(text[1:], 16)
        signal = self.step()
        self._waiting_for_stop = False
        if self.machine.exit_status is not None:          # the step powered the guest off
            return f"W{self.machine.exit_status & 0xFF:02x}".encode()
        self._watch_hit, hit = None, self._watch_hit
        extra = f"{hit};" if hit else ""
        self._stop_reply = f"T{signal:02x}{extra}thread:1;"
        return self._stop_reply.encode()

    def step(self) -> int:
        """One instruction with interrupts masked as the target does it (riscv: sie = 0
        around it; arm64: the IRQ line held low), as QEMU masks them by default, so
        `stepi` does not land in a trap handler; returns the signal."""
        cpu = self.target.cpu
        self._stepping = True
        try:
            with self.target.interrupts_masked():
                cpu.uc.emu_start(cpu.pc, _NEVER_REACHED, count=1)
            signal = SIGTRAP
        except cpu_module.uc_mod.UcError:
            signal = SIGSEGV
        finally:
            self._stepping = False
        return signal

    # -- breakpoints and watchpoints -----------------------------------------------------

    def _insert(self, text: str) -> bytes:
        kind, address, size = self._point(text)
        uc = self.target.cpu.uc
        if kind in (0, 1):
            if address not in self._breakpoints:
                self._breakpoints[address] = uc.hook_add(
                    cpu_module.uc_mod.UC_HOOK_CODE, self._on_breakpoint, begin=address, end=address)
                self.target.cpu.flush_code()
            return b"OK"
        if kind in _WATCH_KINDS:
            key = (kind, address, size)
            if key not in self._watchpoints:
                uc_mod = cpu_module.uc_mod
                hook_type = {2: uc_mod.UC_HOOK_MEM_WRITE, 3: uc_mod.UC_HOOK_MEM_READ,
                             4: uc_mod.UC_HOOK_MEM_READ | uc_mod.UC_HOOK_MEM_WRITE}[kind]
                self._watchpoints[key] = [
                    uc.hook_add(hook_type, self._on_access, user_data=(kind, address, start, length),
                                begin=max(start - 7, 0), end=start + length - 1)
                    for start, length in self._physical_ranges(address, max(size, 1))]
                if self._watch_stepper is None:
                    self._watch_stepper = uc.hook_add(cpu_module.uc_mod.UC_HOOK_CODE, self._after_access)
                self.target.cpu.flush_code()
            return b"OK"
        return b""

    def _remove(self, text: str) -> bytes:
        kind, address, size = self._point(text)
        uc = self.target.cpu.uc
        if kind in (0, 1):
            handle = self._breakpoints.pop(address, None)
            if handle is not None:
                uc.hook_del(handle)
                self.target.cpu.flush_code()
            return b"OK"
        if kind in _WATCH_KINDS:
            handles = self._watchpoints.pop((kind, address, size), None)
            if handles is not None:
                for handle in handles:
                    uc.hook_del(handle)
                if not self._watchpoints and self._watch_stepper is not None:
                    uc.hook_del(self._watch_stepper)
                    self._watch_stepper = None
                self.target.cpu.flush_code()
            return b"OK"
        return b""

    def _physical_ranges(self, address: int, size: int) -> list[tuple[int, int]]:
        """Where a watched virtual range is in RAM now. The engine's memory hooks see
        physical addresses (checked: a store through a Sv39 alias hits a hook on its
        physical address), so a watchpoint follows the mapping of the moment it is set,
        as a hardware trigger on a physical bus would; an unmapped page is watched at
        its virtual address, which is right while paging is off."""
        ranges = []
        while size > 0:
            chunk = min(size, 4096 - (address & 0xFFF))
            phys = self.target.translate(address)
            ranges.append((address if phys is None else phys, chunk))
            address += chunk
            size -= chunk
        return ranges

    @staticmethod
    def _point(text: str) -> tuple[int, int, int]:
        kind, address, size = text[1:].split(";")[0].split(",")
        return int(kind), int(address, 16), int(size, 16)

    def _clear_points(self) -> None:
        uc = self.target.cpu.uc
        handles = list(self._breakpoints.values()) + [
            handle for group in self._watchpoints.values() for handle in group]
        if self._watch_stepper is not None:
            handles.append(self._watch_stepper)
        for handle in handles:
            uc.hook_del(handle)
        self._breakpoints.clear()
        self._watchpoints.clear()
        self._watch_stepper = None
        if handles:
            self.target.cpu.flush_code()

    def _on_breakpoint(self, uc: Any, address: int, _size: int, _data: Any) -> None:
        """A code hook runs before its instruction: stopping here leaves pc on it."""
        if self._stepping:
            return
        if address == self._skip_pc:
            self._skip_pc = None
            return
        self._bp_hit = True
        self._halt = True
        uc.emu_stop()

    def _on_access(self, _uc: Any, _access: int, address: int, size: int, _value: int,
                   watched: tuple[int, int, int, int]) -> None:
        """A watched range was touched (the hook starts 7 bytes early: the engine
        compares only an access's first byte with the hook's range). A stop from here
        would land only at the next block (docs/engine.md, P1), so the code hook stops
        before the next instruction instead; GDB then sees the access done, as from QEMU."""
        kind, virtual, start, length = watched
        if address < start + length and start < address + size and self._watch_hit is None:
            self._watch_hit = f"{_WATCH_KINDS[kind]}:{virtual:x}"

    def _after_access(self, uc: Any, _address: int, _size: int, _data: Any) -> None:
        if self._watch_hit is not None and not self._stepping:
            self._halt = True
            uc.emu_stop()

    def _on_strict_finding(self, _finding: Any) -> None:
        """CPU thread: a `--strict` finding while GDB is attached stops the guest, with
        SIGTRAP. From inside the MMIO access the stop lands at the next block start
        (docs/engine.md E9: nothing stops mid-instruction), so GDB sees the access
        done; `monitor strict` names the access's own pc."""
        if self._conn is None or self._stepping:
            return                    # nobody to stop for; a step stops by itself
        self._halt = True
        self.machine.request_stop()

    def close(self) -> None:
        """Stop listening and drop the connection. A GDB waiting for the guest to stop
        hears how it ended: W and the exit status, as from QEMU, or X (SIGSEGV) for a
        guest death."""
        self._closed = True
        status = self.machine.exit_status
        if self._waiting_for_stop:          # an exit status, or else the guest died
            self._send(f"W{status & 0xFF:02x}".encode() if status is not None
                       else f"X{SIGSEGV:02x}".encode())
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._send_lock:
            if self._conn is not None:
                try:
                    self._conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=5)
        if self.machine.debugger is self:
            self.machine.debugger = None
        if self.machine.strict is not None:
            self.machine.strict.on_finding = None
