"""Observers of a running machine, as `vmsim run` options: `--trace FILE` records the
devices' events (vmsim.trace). With no observer the devices get `discard` and build no
events at all; with one, a TraceHub fans the events out, stamped with guest time.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vmsim.devices.events import TraceEvent, TraceSink, discard
from vmsim.trace.hub import TraceHub, tee
from vmsim.trace.record import TraceWriter, device_info


def add_observer_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("observing the devices")
    group.add_argument("--trace", type=Path, metavar="FILE", dest="trace_file",
                       help="record every virtio event to FILE (JSON lines; see "
                            "`vmsim trace stats|view|export`)")


@dataclass
class Observers:
    """What observes one run; `sink()` is the MachineConfig's trace sink."""

    trace_file: Path | None = None
    hub: TraceHub | None = None
    writer: TraceWriter | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Observers:
        observers = cls(trace_file=getattr(args, "trace_file", None))
        if observers.trace_file is not None:
            observers.hub = TraceHub()
            observers.writer = TraceWriter(observers.trace_file, observers.hub)
            observers._closers.append(observers.writer.close)
        return observers

    def sink(self, log_sink: Callable[[TraceEvent], None] | None = None) -> TraceSink:
        sinks = [s for s in (log_sink, self.hub) if s is not None]
        return tee(sinks) if sinks else discard

    def attach(self, machine: Any) -> None:
        """Once the machine is built: guest time, and the header naming its devices."""
        if self.hub is not None:
            self.hub.guest_time = machine.clock.ticks
        if self.writer is not None:
            self.writer.start(device_info(machine.virtio), machine.board.timebase_hz)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
