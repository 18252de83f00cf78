"""`vmsim trace stats`: a table per opcode from a recorded trace."""
from __future__ import annotations

from rich.table import Table

from vmsim.trace.model import TraceModel, percentile
from vmsim.trace.record import Trace


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def model_of(trace: Trace) -> TraceModel:
    model = TraceModel(trace.devices)
    model.apply_all(trace.records)
    return model


def stats_table(model: TraceModel, title: str = "Requests by opcode") -> Table:
    """counts, bytes in and out, latency percentiles (pop to used, µs) and statuses."""
    table = Table(title=title)
    for column, justify in (("opcode", "left"), ("count", "right"), ("bytes in", "right"),
                            ("bytes out", "right"), ("p50 µs", "right"), ("p90 µs", "right"),
                            ("p99 µs", "right"), ("max µs", "right"), ("statuses", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    total = 0
    for opcode in sorted(model.ops, key=lambda name: (-model.ops[name].count, name)):
        s = model.ops[opcode]
        total += s.count
        statuses = ", ".join(f"{name} {count}" for name, count in s.statuses.most_common())
        table.add_row(opcode, f"{s.count:,}", f"{s.bytes_in:,}", f"{s.bytes_out:,}",
                      _us(percentile(s.latencies, 0.5)), _us(percentile(s.latencies, 0.9)),
                      _us(percentile(s.latencies, 0.99)),
                      _us(max(s.latencies) if s.latencies else None), statuses)
    table.caption = f"{total:,} requests, {model.events:,} events"
    return table


def queue_table(model: TraceModel) -> Table:
    table = Table(title="Queues")
    for column in ("device", "queue", "size", "notifies", "pops", "fills", "irqs",
                   "suppressed"):
        table.add_column(column, justify="left" if column in ("device", "queue") else "right")
    for (device, _), q in sorted(model.queues.items()):
        table.add_row(device, q.name, str(q.size), f"{q.notifies:,}", f"{q.pops:,}",
                      f"{q.fills:,}", f"{q.irqs:,}", f"{q.suppressed:,}")
    return table
