"""The TUI's panes. Each renders from a TraceModel, and is refreshed by the app from a
timer, never from the emulator's threads. The ring grid is a line-API widget: a
1024-entry descriptor table costs a few strips, not thousands of cells."""
from __future__ import annotations

import io

from rich.console import Console, Group
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from vmsim.trace.model import AVAIL, DEVICE, FREE, USED, QueueState, Request, TraceModel, percentile

OWNER_STYLE = {FREE: Style(color="grey39"), AVAIL: Style(color="yellow", bold=True),
               DEVICE: Style(color="magenta", bold=True), USED: Style(color="green", bold=True)}
OWNER_CHAR = {FREE: "·", AVAIL: "A", DEVICE: "D", USED: "U"}
GRID_COLUMNS = 64
STRIP_CELLS = 32


def _hexdump(hex_text: str, limit: int = 64) -> str:
    try:
        data = bytes.fromhex(hex_text)[:limit]
    except ValueError:
        return hex_text
    lines = []
    for offset in range(0, len(data), 8):
        chunk = data[offset:offset + 8]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"  {offset:04x}  {chunk.hex(' '):<23}  {ascii_}")
    return "\n".join(lines) or "  (empty)"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} µs"


class RingView(ScrollView):
    """Every queue: its descriptor table as a grid coloured by owner (free ·, available
    A, at the device D, used U), its avail and used rings as strips around their idx
    pointers, and its counters."""

    DEFAULT_CSS = "RingView { height: 1fr; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lines: list[list[Segment]] = []
        self.queue_filter: set[int] | None = None

    def show(self, model: TraceModel) -> None:
        lines: list[list[Segment]] = []
        for (_, index), q in sorted(model.queues.items()):
            if self.queue_filter is not None and index not in self.queue_filter:
                continue
            lines.extend(self._queue_lines(q))
            lines.append([])
        if not lines:
            lines = [[Segment("no queue is set up yet (the driver has not reached DRIVER_OK)",
                              Style(dim=True))]]
        self._lines = lines
        width = max((sum(len(s.text) for s in line) for line in lines), default=0)
        self.virtual_size = Size(width, len(lines))
        self.refresh()

    @staticmethod
    def _queue_lines(q: QueueState) -> list[list[Segment]]:
        bold, dim = Style(bold=True), Style(dim=True)
        counts = q.counts()
        head = [Segment(f"{q.name} ", Style(bold=True, color="cyan")),
                Segment(f"  size {q.size}  in flight {q.in_flight}  kicks {q.notifies}"
                        f"  pops {q.pops}  used {q.fills}  irqs {q.irqs}"),
                Segment(f"  (free {counts.get(FREE, 0)} avail {counts.get(AVAIL, 0)}"
                        f" device {counts.get(DEVICE, 0)} used {counts.get(USED, 0)})", dim)]
        lines = [head]
        free_from: int | None = None      # a run of all-free rows is one line
        for row in range(0, len(q.owners), GRID_COLUMNS):
            cells = q.owners[row:row + GRID_COLUMNS]
            if all(owner == FREE for owner in cells):
                free_from = row if free_from is None else free_from
                continue
            if free_from is not None:
                lines.append(RingView._free_run(free_from, row - 1))
                free_from = None
            line = [Segment(f"{row:5d} ", dim)]
            for owner in cells:
                line.append(Segment(OWNER_CHAR[owner], OWNER_STYLE[owner]))
            lines.append(line)
        if free_from is not None:
            lines.append(RingView._free_run(free_from, len(q.owners) - 1))
        lines.append(RingView._strip("avail", q.avail_ring, q.avail_idx, q.last_avail, q.size,
                                     "idx", "last_avail"))
        lines.append(RingView._strip("used ", q.used_ring, q.used_idx,
                                     q.used_event if q.used_event is not None else q.used_idx,
                                     q.size, "idx", "used_event"))
        del bold
        return lines

    @staticmethod
    def _free_run(first: int, last: int) -> list[Segment]:
        return [Segment(f"{first:5d} ", Style(dim=True)),
                Segment(f"{OWNER_CHAR[FREE] * 3} descriptors {first}-{last} free", OWNER_STYLE[FREE])]

    @staticmethod
    def _strip(label: str, ring: dict[int, int], idx: int, other: int, size: int,
               idx_name: str, other_name: str) -> list[Segment]:
        """The STRIP_CELLS ring slots before idx (a window onto the circular ring), each
        with the head it last held; ▶ marks idx, ◆ the other pointer."""
        line = [Segment(f"{label} ", Style(bold=True))]
        if not size:
            return line
        start = idx - STRIP_CELLS + 1
        for position in range(start, idx + 2):
            slot = position % size
            head = ring.get(slot)
            text = "  ." if head is None or position > idx else f"{head:3d}"
            style = Style(color="yellow" if label.startswith("avail") else "green")
            if position == idx + 1:
                text, style = " ▶", Style(bold=True, color="white")
            elif position == other:
                style = Style(bold=True, reverse=True)
            line.append(Segment(text, style))
        line.append(Segment(f"  {idx_name} {idx}  {other_name} {other}", Style(dim=True)))
        return line

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = y + scroll_y
        if index >= len(self._lines):
            return Strip.blank(self.size.width)
        strip = Strip(self._lines[index])
        return strip.crop(scroll_x, scroll_x + self.size.width).extend_cell_length(self.size.width)


class TextPane(Static):
    """A Static that remembers what it shows, so tests and the attach server can read
    it as plain text."""

    last: object = ""

    def set(self, renderable: object) -> None:
        if isinstance(renderable, Text) and renderable == self.last:
            return                     # unchanged: no layout pass at the refresh rate
        self.last = renderable
        self.update(renderable)

    @property
    def plain(self) -> str:
        console = Console(width=max(40, self.size.width or 160), record=True,
                          file=io.StringIO(), color_system=None)
        console.print(self.last)
        return console.export_text()


class DevicePane(TextPane):
    """Status bits, features offered and accepted by name, config fields."""

    def show(self, model: TraceModel) -> None:
        parts = []
        for dev in model.devices.values():
            table = Table.grid(padding=(0, 1))
            table.add_column(style="bold")
            table.add_column()
            table.add_row("device", f"{dev.name} (id {dev.device_id})")
            table.add_row("status", f"{dev.status:#04x} {dev.status_names}")
            table.add_row("offered", " ".join(dev.offered) or "-")
            table.add_row("accepted", " ".join(dev.accepted) or "-")
            config = " ".join(f"{k}={v:#x}" if k.endswith(("algo", "_l", "_h", "services"))
                              else f"{k}={v}" for k, v in dev.config.items())
            table.add_row("config", config or "-")
            table.add_row("irq line", "high" if dev.irq_line else "low")
            if dev.needs_reset:
                table.add_row("NEEDS_RESET", Text(dev.needs_reset, style="bold red"))
            if dev.errors:
                table.add_row("last error", Text(dev.errors[-1], style="red"))
            parts.append(table)
        self.set(Group(*parts) if parts else Text("no device has spoken yet", style="dim"))


def request_row(req: Request, model: TraceModel) -> tuple[str, ...]:
    status = req.status or ("…" if not req.done else "?")
    latency = "-" if req.latency_us is None else f"{req.latency_us:,.0f}"
    return (str(req.seq), model.queue_name(req.device, req.queue), str(req.head), req.opcode,
            status, latency, req.where or "-")


def request_detail(req: Request, model: TraceModel) -> Text:
    """One request: its chain (descriptor by descriptor, with the bytes it held) and
    what the device wrote back."""
    out = Text()
    out.append(f"{req.opcode}", style="bold")
    out.append(f"  on {model.queue_name(req.device, req.queue)}, head {req.head}\n")
    out.append(f"status {req.status or 'in flight'}   used.len {req.used}   "
               f"latency {_us(req.latency_us)}   ran {req.where or '-'}"
               + (f" (worker {req.worker})" if req.worker is not None else "") + "\n")
    if req.session is not None:
        out.append(f"session {req.session}   algo {req.algo}   mode {req.mode}\n")
    if req.fault:
        out.append(f"fault injected: {req.fault}\n", style="bold red")
    writable = 0
    for desc in req.chain:
        if "more" in desc:
            out.append(f"… {desc['more']} more indirect descriptors\n", style="cyan")
            continue
        flags = int(desc.get("flags", 0))
        names = "|".join(n for bit, n in ((1, "NEXT"), (2, "WRITE"), (4, "INDIRECT"))
                         if flags & bit) or "-"
        where = "indirect " if desc.get("indirect") else ""
        out.append(f"{where}desc {desc.get('index')}: {int(desc.get('addr', 0)):#x} "
                   f"len {desc.get('len')} {names}\n", style="cyan")
        if flags & 4:
            continue
        if flags & 2:
            out.append(" before:\n" + _hexdump(str(desc.get("data", ""))) + "\n", style="dim")
            if writable < len(req.written):
                out.append(" after:\n" + _hexdump(req.written[writable]) + "\n")
            writable += 1
        else:
            out.append(_hexdump(str(desc.get("data", ""))) + "\n")
    return out


def stats_text(model: TraceModel, elapsed: float) -> Text:
    """Sessions, the worker pool and rates, as sparklines of the last minute."""
    out = Text()
    live = model.live_sessions()
    out.append("sessions ", style="bold")
    out.append(f"{len(live)} open, {len(model.sessions)} ever  ")
    out.append(" ".join(f"#{s.id}:{s.opcode.split('_')[0]}({s.requests})" for s in live[-6:]) + "\n")
    out.append("workers  ", style="bold")
    shares = model.worker_share(elapsed)
    out.append(" ".join(f"w{lane} {share:4.0%}" for lane, share in shares.items()) or "none used")
    out.append(f"   backlog {model.backlog}")
    restarts = model.worker_restarts
    out.append(f"   restarts {sum(restarts.values())}" + (
        " (" + ", ".join(f"{n} {why}" for why, n in sorted(restarts.items())) + ")" if restarts else "")
        + "\n")
    lat = [lat for s in model.ops.values() for lat in s.latencies[-2000:]]
    out.append("latency  ", style="bold")
    out.append(f"p50 {_us(percentile(lat, 0.5))}  p99 {_us(percentile(lat, 0.99))}\n")
    for key, label in (("requests", "req/s   "), ("irqs", "irq/s   "), ("p50", "p50 µs  "),
                       ("p99", "p99 µs  ")):
        values = list(model.rates[key])[-40:]
        out.append(f"{label} ", style="bold")
        out.append(sparkline(values), style="green")
        out.append(f" {values[-1]:,.0f}\n" if values else " -\n")
    return out


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(_BARS[min(7, int(v / top * 7.999))] for v in values)
