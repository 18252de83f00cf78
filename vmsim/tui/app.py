"""The vmsim TUI: the guest console, the device, every virtqueue's rings, the requests,
sessions, workers and rates, from one Feed (a live machine, a trace file, a socket).

The app pulls: a timer drains the feed 20 times a second into a TraceModel and redraws
(a flood of events, BUSY_HZ times a second), so the emulator never waits for the screen. Keys: p pause/resume, n step to the next
ring event, b break on a condition, f filter the rings and requests by queue or
opcode, i inject a fault (a rule of docs/faults.md, on a live machine), [ and ] (or
← →) scrub a recorded trace, { } by 100, < > to either end, tab between panes, ? help,
q quit. Typing in the console pane goes to the guest.
"""
from __future__ import annotations

import signal
import threading
import time

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Key
from textual.screen import ModalScreen
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Header, Input, Log, Static

from vmsim.trace.control import ConditionError, parse_conditions
from vmsim.trace.explain import explain
from vmsim.trace.lesson import STEPS, Lesson
from vmsim.trace.hub import Record
from vmsim.trace.model import TraceModel
from vmsim.tui.feeds import Feed, TraceFeed
from vmsim.tui.widgets import (
    DevicePane,
    RingView,
    TextPane,
    request_detail,
    request_row,
    stats_text,
)

REFRESH_HZ = 20
COLUMNS = ("#", "queue", "head", "opcode", "status", "µs", "ran")
MAX_ROWS = 200            # requests shown in the table (the newest)
# A flood of events (a busy guest: thousands a second) is drawn BUSY_HZ times a second,
# not REFRESH_HZ: a frame redraws every pane, and drawing them at REFRESH_HZ kept a core
# busy next to the emulator's, for screens that changed too fast to read. Up to FLOOD
# events a tick (stepping, a human-paced guest) are drawn at once.
BUSY_HZ = 4
FLOOD = 100
SCRUB_STEP = 1
SCRUB_BIG = 100

HELP = """\
[b]vmsim TUI[/b]

  p        pause / resume the guest (it really stops)
  n        step: run to the next ring event and stop there
  b        break when an event matches: opcode=AKCIPHER_SIGN, status!=OK,
           queue=0, kind=irq, latency... (all conditions must hold; empty clears)
  f        filter rings and requests: queue=1, opcode=CIPHER_ENCRYPT (empty clears)
  i        inject a fault (live): op=CIPHER_ENCRYPT,every=3,status=ERR
           (docs/faults.md); clear drops them; the status line lists them
  [  ]     step back / forward one event in a recorded trace (← → too)
  {  }     jump 100 events back / forward;  <  >  the start / the end
  tab      next pane; in the console pane keys go to the guest (escape leaves it)
  enter    on a request: its chain and the bytes before and after
  q        quit;  ?  this help

Colours in the ring grid: · free  A available  D at the device  U used, not yet reclaimed
"""


def fault_summary(listing: str) -> str:
    """The rules of `monitor fault`'s listing on one line: `rule (fired F of M)`; ''
    when there are none."""
    out = []
    for line in listing.splitlines():
        rule, sep, counts = line.partition("  (matched ")
        if not sep:
            continue
        matched, _, fired = counts.rstrip(")").partition(", fired ")
        out.append(f"{rule.split(': ', 1)[-1].strip()} (fired {fired} of {matched})")
    return "; ".join(out)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]
    DEFAULT_CSS = "HelpScreen { align: center middle; background: $background; } #help { width: 86; height: auto; border: round $accent; padding: 1 2; background: $surface; }"

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")


class AskScreen(ModalScreen[str | None]):
    """One line of input (a break condition, a filter)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = "AskScreen { align: center middle; background: $background; } AskScreen > Vertical { width: 80; height: auto; border: round $accent; padding: 1 2; background: $surface; }"

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self._prompt, self._value = prompt, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._prompt)
            yield Input(value=self._value, id="ask")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConsolePane(Log):
    """The guest's serial console; keys typed here go to the guest."""

    can_focus = True

    def __init__(self, feed: Feed, **kwargs) -> None:
        super().__init__(max_lines=2000, **kwargs)
        self._feed = feed
        self._partial = ""

    def add_output(self, data: bytes) -> None:
        text = self._partial + data.decode(errors="replace").replace("\r\n", "\n").replace("\r", "")
        lines = text.split("\n")
        self._partial = lines.pop()
        if lines:
            self.write_lines(lines)

    def on_key(self, event: Key) -> None:
        if not self._feed.live or event.key in ("tab", "shift+tab"):
            return
        if event.key == "escape":                 # back to commands
            self.screen.focus_next()
            event.stop()
            return
        if event.character and event.key not in ("escape",):
            self._feed.send_input(event.character.encode())
            event.stop()
        elif event.key == "enter":
            self._feed.send_input(b"\r")
            event.stop()


class VmsimApp(App[int]):
    """See the module docstring."""

    TITLE = "vmsim"
    CSS = """
    #top { height: 2fr; }
    #middle { height: 3fr; }
    #console { width: 1fr; border: round $primary; }
    #device { width: 1fr; border: round $primary; }
    #rings { width: 3fr; border: round $primary; }
    #right { width: 2fr; }
    #requests { height: 1fr; border: round $primary; }
    #detail-box { height: 1fr; border: round $primary; }
    #stats { height: 9; border: round $primary; }
    #status { height: 1; background: $boost; }
    """
    BINDINGS = [
        Binding("q", "quit_app", "quit"),
        Binding("p", "pause", "pause/resume"),
        Binding("n", "step", "step"),
        Binding("b", "break", "break on"),
        Binding("f", "filter", "filter"),
        Binding("i", "fault", "inject fault"),
        Binding("left_square_bracket,left", "scrub(-1)", "back", show=False, priority=True),
        Binding("right_square_bracket,right", "scrub(1)", "forward", show=False, priority=True),
        Binding("left_curly_bracket", "scrub(-100)", "back 100", show=False, priority=True),
        Binding("right_curly_bracket", "scrub(100)", "fwd 100", show=False, priority=True),
        Binding("less_than_sign", "scrub_to(0)", "start", show=False, priority=True),
        Binding("greater_than_sign", "scrub_to(-1)", "end", show=False, priority=True),
        Binding("question_mark", "help", "help"),
        Binding("space", "continue", "continue", show=False),
    ]

    def __init__(self, feed: Feed, position: int | None = None, refresh_hz: float = REFRESH_HZ,
                 explain: bool = False, lesson: Lesson | None = None) -> None:
        super().__init__()
        self.feed = feed
        self.model = TraceModel(feed.devices)
        self.position = 0                       # records applied (trace view)
        self._v_start_at = position
        self._v_refresh_hz = refresh_hz
        self._v_started = time.monotonic()
        self._v_rows: dict[str, object] = {}
        self._v_drawn = 0.0
        self._v_undrawn = 0             # events applied to the model, not drawn yet
        self._v_selected: str | None = None
        self.filter_text = ""
        self.break_text = ""
        self.message = ""
        self._v_fault_reply = ""
        self.explain = explain          # --explain: the panel explains where the guest stopped
        self.lesson = lesson            # vmsim learn: the panel shows the lesson's step
        self.TITLE = feed.title

    # ---- layout -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="top"):
            yield ConsolePane(self.feed, id="console")
            yield DevicePane(id="device")
        with Horizontal(id="middle"):
            yield RingView(id="rings")
            with Vertical(id="right"):
                yield DataTable(id="requests", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="detail-box"):
                    yield TextPane(Text("select a request (enter)", style="dim"), id="detail")
        yield TextPane(id="stats")
        yield TextPane(id="status")
        yield Footer()

    def _hang_up(self, signum: int, _frame: object) -> None:
        """The terminal went away (SIGHUP) or we were told to stop: quit like q, so the
        guest is not left running with nobody watching."""
        self.feed.close()
        self.exit(128 + signum)

    def on_mount(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGHUP, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    signal.signal(signum, self._hang_up)
        self._main("#console").border_title = "console"
        self._main("#device").border_title = "device"
        self._main("#rings").border_title = "rings"
        self._main("#requests").border_title = "requests"
        self._main("#detail-box").border_title = "request"
        self._main("#stats").border_title = "sessions · workers · rates"
        table = self._main("#requests", DataTable)
        for label in COLUMNS:
            table.add_column(label, key=label)
        if isinstance(self.feed, TraceFeed):
            total = len(self.feed.records)
            at = total if self._v_start_at is None else self._v_start_at
            self._goto(at if at >= 0 else total + at + 1)
            self._main(ConsolePane).write_line("(a trace records the device's events; the "
                                               "guest's console is not in it)")
        else:
            self.console_history()
        self.set_interval(1 / self._v_refresh_hz, self.tick)
        self.tick()
        table.focus()             # keys are commands until the console is focused (tab)

    def console_history(self) -> None:
        pass

    def _main(self, selector, expect_type=None):
        """A widget of the main screen, even while a modal screen is on top."""
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        return screen.query_one(selector, expect_type) if expect_type else screen.query_one(selector)

    # ---- the refresh loop ---------------------------------------------------------------

    def tick(self) -> None:
        """Pull whatever the feed has, then redraw (never called from other threads)."""
        if not self.screen_stack:
            return
        try:
            self._tick()
        except NoMatches:            # shutting down: the main screen is gone
            pass

    def _tick(self) -> None:
        records = self.feed.drain()
        for record in records:
            self.model.apply(record)
        data = self.feed.console()
        if data:
            self._main(ConsolePane).add_output(data)
        if self.feed.finished and self.feed.exit_when_finished:
            self.exit(0)                  # an attached viewer ends with its machine
            return
        self._v_undrawn += len(records)
        now = time.monotonic()
        since = now - self._v_drawn
        if ((self._v_undrawn and (self._v_undrawn <= FLOOD or since >= 1 / BUSY_HZ
                                  or not self.feed.live))
                or (self.feed.live and since >= 1.0)):
            self._v_drawn = now
            self._v_undrawn = 0
            self.redraw()
        else:
            self._show_status()

    def redraw(self) -> None:
        self._main(DevicePane).show(self.model)
        self._main(RingView).show(self.model)
        self._show_requests()
        elapsed = ((self.model.last.t if self.model.last else 0.0)
                   if isinstance(self.feed, TraceFeed) else time.monotonic() - self._v_started)
        self._main("#stats", TextPane).set(stats_text(self.model, elapsed))
        if self.explain or self.lesson is not None:
            self._show_teaching()
        self._show_status()

    def _show_status(self) -> None:
        parts = [self.feed.status(), f"{self.model.events:,} events"]
        if isinstance(self.feed, TraceFeed):
            parts.append(f"at {self.position}/{len(self.feed.records)}")
            if self.model.last is not None:
                parts.append(f"t={self.model.last.t:.6f}s {self.model.last.name}")
        if self.break_text:
            parts.append(f"break: {self.break_text}")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        if self.feed.can_fault:
            listing, reply = self.feed.fault_state()
            if reply and reply != self._v_fault_reply:       # the answer to the last `i`
                self._v_fault_reply = reply
                self.message = reply.strip()
            rules = fault_summary(listing)
            if rules:
                parts.append(f"faults: {rules}")
        if self.message:
            parts.append(self.message)
        self._main("#status", TextPane).set(Text("  │  ".join(parts)))

    def _visible(self, req) -> bool:
        for condition in self._filter_conditions():
            if condition.key == "queue" and str(req.queue) != condition.value:
                return False
            if condition.key == "opcode" and req.opcode.upper() != condition.value.upper():
                return False
        return True

    def _filter_conditions(self):
        try:
            return parse_conditions(self.filter_text)
        except ConditionError:
            return []

    def _show_requests(self) -> None:
        table = self._main("#requests", DataTable)
        wanted = [r for r in self.model.requests if self._visible(r)][-MAX_ROWS:]
        keys = {str(r.seq): r for r in wanted}
        # Incremental: drop rows that fell off, update changed ones, append new ones.
        # When many fell off (a busy guest: hundreds of requests between two frames)
        # the table is refilled instead: each removal moves the cursor and redraws.
        gone = [k for k in self._v_rows if k not in keys]
        if len(gone) > len(keys) // 4:
            table.clear()
            self._v_rows.clear()
        else:
            for key in gone:
                table.remove_row(key)
                del self._v_rows[key]
        added = False
        for key, req in keys.items():
            row = request_row(req, self.model)
            old = self._v_rows.get(key)
            if old is None:
                table.add_row(*row, key=key)
                added = True
            elif old != row:
                for label, before, after in zip(COLUMNS, old, row):
                    if before != after:
                        table.update_cell(key, label, after)
            self._v_rows[key] = row
        if added and self.feed.live:
            table.move_cursor(row=table.row_count - 1, animate=False)
            table.scroll_end(animate=False)
        if self._v_selected is not None:
            self._show_detail(self._v_selected)

    @on(DataTable.RowSelected)
    @on(DataTable.RowHighlighted)
    def _row_chosen(self, event) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self._v_selected = event.row_key.value
            self._show_detail(self._v_selected)

    def _show_detail(self, key: str) -> None:
        seq = int(key)
        req = next((r for r in reversed(self.model.requests) if r.seq == seq), None)
        if req is not None:
            self._main("#detail", TextPane).set(request_detail(req, self.model))

    # ---- actions ------------------------------------------------------------------------

    def _show_teaching(self) -> None:
        """The explanation of the event the guest stopped at (--explain), or the
        lesson's current step, in place of the statistics."""
        pane = self._main("#stats", TextPane)
        pane.border_title = "lesson" if self.lesson is not None else "explain"
        record = self.feed.stopped_at()
        out = Text()
        if self.lesson is not None:
            reached = self.lesson.current
            if reached is not None and record is not None and record.seq == reached.record.seq:
                out.append(reached.text())
                out.append("\n\n[space] next step", style="bold")
            elif self.lesson.done:
                out.append("Lesson complete: every step happened on this guest. q quits.",
                           style="bold green")
            else:
                step = STEPS[self.lesson.index]
                out.append(f"Step {self.lesson.index + 1}/{len(STEPS)}: {step.title} — "
                           "running until it happens…\n", style="bold")
                out.append(step.intro)
        elif record is not None and self.model.last is not None and self.model.last.seq >= record.seq:
            explanation = explain(record, self.model)
            if explanation is not None:
                out.append(f"[{explanation.actor}] ", style="bold cyan")
                out.append(explanation.text())
                out.append("\n[space] next event", style="bold")
        else:
            out.append("running to the next ring event…", style="dim")
        pane.set(out)

    def action_continue(self) -> None:
        """space: in --explain and the lesson, go on to the next stop."""
        if self.feed.live and (self.explain or self.lesson is not None):
            self.feed.resume()

    def action_quit_app(self) -> None:
        self.feed.close()
        self.exit(0)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_pause(self) -> None:
        if not self.feed.live:
            self.message = "a recorded trace: scrub with [ ] instead"
        elif self.feed.stopped_at() is not None or "paused" in self.feed.status():
            self.feed.resume()
            self.message = "resumed"
        else:
            self.feed.pause()
            self.message = "pausing"
        self._show_status()

    def action_step(self) -> None:
        if self.feed.live and (self.explain or self.lesson is not None):
            self.feed.resume()
        elif self.feed.live:
            self.feed.step()
            self.message = "stepping to the next ring event"
        else:
            self.action_scrub(1)
        self._show_status()

    def action_break(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                conditions = parse_conditions(text)
            except ConditionError as error:
                self.message = str(error)
                self._show_status()
                return
            self.break_text = ", ".join(map(str, conditions))
            self.feed.set_breakpoints(conditions)
            if not self.feed.live and conditions:
                self._goto_match(conditions)
            self._show_status()
        self.push_screen(AskScreen("Break when an event matches (e.g. opcode=AKCIPHER_SIGN, "
                                   "status!=OK); empty clears:", self.break_text), done)

    def action_filter(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                conditions = parse_conditions(text)
            except ConditionError as error:
                self.message = str(error)
                self._show_status()
                return
            self.filter_text = ", ".join(map(str, conditions))
            queues = {int(c.value) for c in conditions if c.key == "queue" and c.value.isdigit()}
            self._main(RingView).queue_filter = queues or None
            self._main("#requests", DataTable).clear()
            self._v_rows = {}
            self.redraw()
        self.push_screen(AskScreen("Show only (queue=N, opcode=NAME); empty shows all:",
                                   self.filter_text), done)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`i` only where the feed takes fault rules (hidden from the footer elsewhere)."""
        return self.feed.can_fault if action == "fault" else True

    def action_fault(self) -> None:
        if not self.feed.can_fault:
            return

        def done(text: str | None) -> None:
            if text is not None:
                self.feed.fault(text)
                self._show_status()
        self.push_screen(AskScreen("Inject a fault (e.g. op=CIPHER_ENCRYPT,every=3,status=ERR "
                                   "or queue=0,once,irq=drop; docs/faults.md); clear drops every "
                                   "rule:"), done)

    # ---- scrubbing a recorded trace ---------------------------------------------------------

    def action_scrub(self, delta: int) -> None:
        if isinstance(self.feed, TraceFeed):
            self._goto(self.position + delta)

    def action_scrub_to(self, where: int) -> None:
        if isinstance(self.feed, TraceFeed):
            self._goto(len(self.feed.records) if where < 0 else where)

    def _goto(self, position: int) -> None:
        assert isinstance(self.feed, TraceFeed)
        records = self.feed.records
        position = max(0, min(len(records), position))
        if position < self.position:
            self.model = TraceModel(self.feed.devices)
            self.position = 0
            self._main("#requests", DataTable).clear()
            self._v_rows = {}
        for record in records[self.position:position]:
            self.model.apply(record)
        self.position = position
        self.redraw()

    def _goto_match(self, conditions) -> None:
        assert isinstance(self.feed, TraceFeed)
        from vmsim.trace.control import matches_all

        for index in range(self.position, len(self.feed.records)):
            if matches_all(conditions, self.feed.records[index]):
                self._goto(index + 1)
                self.message = f"break at #{self.feed.records[index].seq} {self.feed.records[index].name}"
                return
        self.message = "no later event matches"

    def last_record(self) -> Record | None:
        return self.model.last
