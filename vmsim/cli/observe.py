"""Observers of a running machine, as `vmsim run` options: `--trace FILE` records the
devices' events (vmsim.trace), `--tui` shows them live (vmsim.tui). With no observer
the devices get `discard` and build no events at all; with one, a TraceHub fans the
events out, stamped with guest time, and the TUI's gate can stop the guest.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from vmsim.devices.events import TraceEvent, TraceSink, discard

if TYPE_CHECKING:   # a run with no observer starts without the trace modules (start-up)
    from vmsim.trace.control import MachineGate
    from vmsim.trace.hub import TraceHub
    from vmsim.trace.record import TraceWriter


# The niceness of `run --tui`'s drawing process: below the emulator's, so a screen that
# costs a core to draw never takes the core the guest runs on.
TUI_NICE = 5


def add_observer_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("observing the devices")
    group.add_argument("--trace", type=Path, metavar="FILE", dest="trace_file",
                       help="record every virtio event to FILE (JSON lines; see "
                            "`vmsim trace stats|view|export`)")
    group.add_argument("--tui", action="store_true",
                       help="show the console, the device, the rings and the requests live "
                            "(p pauses the guest, n steps, b breaks, ? helps)")
    group.add_argument("--observe", type=Path, metavar="SOCKET",
                       help="serve the events, the console and pause/step/break on a Unix "
                            "socket for `vmsim tui --attach SOCKET` (and so for a browser)")
    group.add_argument("--explain", action="store_true",
                       help="teaching mode (implies --tui): the guest stops at each ring "
                            "transition and a panel says what happened, what comes next and "
                            "where the spec says so; space goes on")


def _fault_commands(machine: Any) -> Callable[[str], str] | None:
    """GDB's `monitor fault` grammar on this machine's fault plans, for the TUI (None if
    no device takes fault rules)."""
    from vmsim.devices.virtio.crypto.faults import FaultControl

    control = FaultControl(machine.virtio)
    return control.command if control.plans else None


@dataclass
class Observers:
    """What observes one run; `sink()` is the MachineConfig's trace sink."""

    trace_file: Path | None = None
    tui: bool = False
    explain: bool = False
    observe: Path | None = None
    server: Any = None
    hub: TraceHub | None = None
    writer: TraceWriter | None = None
    gate: MachineGate | None = None
    console: Any = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Observers:
        explain = bool(getattr(args, "explain", False))
        observers = cls(trace_file=getattr(args, "trace_file", None),
                        tui=bool(getattr(args, "tui", False)) or explain, explain=explain,
                        observe=getattr(args, "observe", None))
        if observers.trace_file is None and not observers.tui and not observers.observe:
            return observers
        from vmsim.trace.control import MachineGate
        from vmsim.trace.explain import EXPLAIN_STOPS
        from vmsim.trace.hub import TraceHub
        from vmsim.trace.record import TraceWriter

        observers.hub = TraceHub()
        observers._closers.append(observers.hub.close)      # the last to close
        if observers.observe is not None and not observers.tui:
            from vmsim.tui.feeds import ConsoleBuffer

            observers.gate = MachineGate()
            observers.gate.watch(observers.hub)
            observers.console = ConsoleBuffer()
            observers._closers.append(observers.gate.close)
        if observers.trace_file is not None:
            observers.writer = TraceWriter(observers.trace_file, observers.hub)
            observers._closers.append(observers.writer.close)
        if observers.tui:
            from vmsim.tui.feeds import ConsoleBuffer

            observers.gate = MachineGate()
            if explain:
                observers.gate.stop_when = lambda record: record.kind in EXPLAIN_STOPS
            observers.gate.watch(observers.hub)
            observers.console = ConsoleBuffer()
            observers._closers.append(observers.gate.close)
        return observers

    def sink(self, log_sink: Callable[[TraceEvent], None] | None = None) -> TraceSink:
        sinks = [s for s in (log_sink, self.hub) if s is not None]
        if not sinks:
            return discard
        from vmsim.trace.hub import tee

        return tee(sinks)

    def devices(self, factories: Sequence[Any]) -> list[Any]:
        """The slot factories, the first held by the gate so the TUI can pause."""
        out = list(factories)
        if self.gate is not None and out:
            from vmsim.trace.control import gated

            out[0] = gated(out[0], self.gate)
        return out

    def output(self, default: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """Where the guest console goes: the terminal, or the TUI's console pane; with
        --observe also to the attached viewers."""
        if self.console is None:
            return default
        if self.tui:
            return self._console_tee(self.console.write)

        def both(data: bytes) -> None:
            default(data)
            self.console.write(data)
            if self.server is not None:
                self.server.console(data)
        return both

    def _console_tee(self, write: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def tee_(data: bytes) -> None:
            write(data)
            if self.server is not None:
                self.server.console(data)
        return tee_

    def attach(self, machine: Any) -> None:
        """Once the machine is built: guest time, the gate's wake-up, the file header."""
        if self.hub is None:
            return                                  # nothing observes this run
        from vmsim.trace.record import device_info

        if self.hub is not None:
            self.hub.guest_time = machine.clock.ticks
            from vmsim.core.clock import GuestClock

            if type(machine.clock) is GuestClock:   # CLOCK_MONOTONIC through the timebase
                self.hub.timebase_hz = machine.clock.timebase_hz
        if self.gate is not None:
            def attention() -> None:
                machine.request_stop()
                machine.watchdog.wake()
            self.gate.attention = attention
        if self.writer is not None:
            self.writer.start(device_info(machine.virtio), machine.clock.timebase_hz)
        if self.observe is not None:
            from vmsim.trace.serve import TraceServer

            assert self.hub is not None and self.gate is not None
            console = self.console
            self.server = TraceServer(
                self.observe, self.hub, self.gate, lambda: device_info(machine.virtio),
                console.history, machine.push_input,
                lambda: "running" if machine.exit_status is None
                else f"the guest exited with status {machine.exit_status}",
                faults=_fault_commands(machine))
            self._closers.append(self.server.close)

    def run_tui_process(self, machine: Any, headless: bool = False) -> int:
        """`vmsim run --tui`: the machine on this (main) thread, the TUI in a child
        process attached through a private socket, so drawing the screen never competes
        with the CPU thread for the GIL. The TUI owns the terminal; quitting it ends the
        guest, and after the guest ends it stays until quit (headless: it is closed)."""
        from vmsim.trace.record import device_info

        import shutil
        import subprocess
        import tempfile

        from vmsim.trace.serve import TraceServer

        assert self.hub is not None and self.gate is not None and self.console is not None
        folder = Path(tempfile.mkdtemp(prefix="vmsim-tui-"))
        exit_status: list[int] = []
        self.server = TraceServer(
            folder / "tui.sock", self.hub, self.gate, lambda: device_info(machine.virtio),
            self.console.history, machine.push_input,
            lambda: (f"the guest exited with status {exit_status[0]} (q quits)"
                     if exit_status else "running"),
            faults=_fault_commands(machine))
        vmsim = Path(sys.executable).with_name("vmsim")
        command = [str(vmsim)] if vmsim.exists() else [sys.executable, "-m", "vmsim.cli.main"]
        command += ["tui", "--attach", str(folder / "tui.sock")]
        command += ["--explain"] * self.explain + ["--headless"] * headless
        child = subprocess.Popen(command)
        try:    # drawing yields to the guest when the host's cores are busy
            os.setpriority(os.PRIO_PROCESS, child.pid, TUI_NICE)
        except OSError:
            pass

        def watch() -> None:                  # q in the TUI ends the guest too
            child.wait()
            if not exit_status:
                self.gate.close()
                machine.request_quit(0)
        threading.Thread(target=watch, name="vmsim-tui-watch", daemon=True).start()
        try:
            status = machine.run()
            exit_status.append(status)
            if headless:
                self.server.close()
            child.wait()
            return status
        finally:
            self.gate.close()
            if child.poll() is None:
                child.terminate()
                child.wait()
            self.server.close()
            shutil.rmtree(folder, ignore_errors=True)

    def run_tui(self, machine: Any, title: str = "vmsim run", headless: bool = False,
                exit_when_done: bool = False, auto_pilot: Any = None,
                size: tuple[int, int] | None = None) -> int:
        """Run the machine on its own thread and the TUI on this one; return the guest's
        exit status (quitting the TUI first stops the guest). `headless` renders without
        a terminal and `exit_when_done` closes the TUI when the guest ends: for the
        benchmark, which measures the guest with a TUI really drawing."""
        from vmsim.trace.record import device_info

        from vmsim.tui.app import VmsimApp
        from vmsim.tui.feeds import HubFeed

        assert self.hub is not None and self.gate is not None
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["status"] = machine.run()
            except BaseException as error:      # noqa: BLE001 - shown, then re-raised
                outcome["error"] = error
            if exit_when_done:
                try:
                    app.call_from_thread(app.exit)
                except RuntimeError:            # the app is not running (any more)
                    pass

        thread = threading.Thread(target=run, name="vmsim-cpu", daemon=True)

        def state() -> str:
            if "error" in outcome:
                return f"stopped: {outcome['error']}"
            if "status" in outcome:
                return f"the guest exited with status {outcome['status']} (q quits)"
            return "running"

        feed = HubFeed(self.hub, self.gate, self.console, device_info(machine.virtio),
                       machine.push_input, state, title=title, faults=_fault_commands(machine))
        app = VmsimApp(feed, explain=self.explain)
        thread.start()
        try:
            app.run(headless=headless, auto_pilot=auto_pilot, size=size)
        finally:
            self.gate.close()
            if thread.is_alive():
                machine.request_quit(0)
                thread.join(timeout=10)
        if "error" in outcome:
            raise outcome["error"]
        return int(outcome.get("status", 0))

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
