"""SVG snapshots of the TUI's main screens (pytest-textual-snapshot), from the trace
recorded on the default guest, so they are the same on every run. After an intended
change of the screens: pytest tests/unit/test_tui_snapshots.py --snapshot-update, and
look at the new SVGs before committing them."""
from __future__ import annotations

from pathlib import Path

from vmsim.trace.record import read_trace
from vmsim.tui.app import VmsimApp
from vmsim.tui.feeds import TraceFeed

RECORDED = Path(__file__).parents[1] / "data" / "boot-rsa.trace.jsonl.gz"
SIZE = (160, 50)


def app_at(position: int | None) -> VmsimApp:
    return VmsimApp(TraceFeed(read_trace(RECORDED), RECORDED.name), position=position)


def test_main_screen_mid_boot(snap_compare) -> None:
    """Negotiated, queues set up, the first RSA requests done."""
    assert snap_compare(app_at(400), terminal_size=SIZE)


def test_main_screen_at_the_end_with_a_request_open(snap_compare) -> None:
    assert snap_compare(app_at(None), terminal_size=SIZE, press=["up", "enter"])


def test_help_screen(snap_compare) -> None:
    assert snap_compare(app_at(400), terminal_size=SIZE, press=["question_mark"])
