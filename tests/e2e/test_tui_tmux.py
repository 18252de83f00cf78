"""`vmsim run --tui` on the real default guest, in tmux, read with capture-pane as a
person would see it: both virtio-crypto queues appear with non-zero counts once the
Linux driver has registered its algorithms (its self-tests go through them), p pauses
the guest and q ends vmsim."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.guest import board_guest, built_default_guest, require_tools
from vmsim.build.cache import Requirement

TMUX = Requirement("tmux", "tmux")
VMSIM = Path(sys.executable).with_name("vmsim")
BOOT_TIMEOUT = 180.0
# The demo runs every guest program under the TUI, which slows the guest down most on a
# loaded 2-core machine; the bound only limits how long a failure takes to show.
DEMO_TIMEOUT = 600.0


def _capture(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=True).stdout


def _wait_for(session: str, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        screen = _capture(session)
        match = re.search(pattern, screen)
        if match:
            return match
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {pattern!r}; the screen:\n{screen}")
        time.sleep(0.25)       # polling the screen: tmux has nothing to wait on


@pytest.mark.linux
def test_run_tui_shows_both_queues_working(tmp_path: Path) -> None:
    require_tools(TMUX)
    built_default_guest()
    session = f"vmsim-tui-{uuid.uuid4().hex[:8]}"
    status = tmp_path / "status"
    # COLUMNS/LINES from the test runner would override the terminal size for Textual
    command = f"env -u COLUMNS -u LINES {VMSIM} run --tui; echo $? > {status}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                    "-e", "TERM=xterm-256color", command], check=True)
    # Without a client tmux may fall back to its default 80x24: fix the size.
    subprocess.run(["tmux", "set-option", "-t", session, "window-size", "manual"], check=True)
    subprocess.run(["tmux", "resize-window", "-t", session, "-x", "160", "-y", "50"], check=True)
    try:
        dataq = _wait_for(session, r"dataq0\s+size \d+\s+in flight \d+\s+kicks ([1-9]\d*)\s+"
                                   r"pops ([1-9]\d*)", BOOT_TIMEOUT)
        controlq = _wait_for(session, r"controlq\s+size \d+\s+in flight \d+\s+kicks ([1-9]\d*)",
                             30)
        screen = _capture(session)
        assert "DRIVER_OK" in screen and "VERSION_1" in screen, screen
        assert "Registered algo cbc(aes)" in screen or "virtio_crypto" in screen, screen
        assert int(dataq.group(2)) > 0 and int(controlq.group(1)) > 0
        subprocess.run(["tmux", "send-keys", "-t", session, "p"], check=True)
        _wait_for(session, r"\bpaused\b", 30)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status.exists(), _capture(session)
        assert status.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


@pytest.mark.linux
@pytest.mark.parametrize("arch", ["riscv64", "arm64"])
def test_demo_tui_summarises_after_quitting(tmp_path: Path, arch: str) -> None:
    """`vmsim demo --tui` on each board: the guest's programs run under the TUI; once it
    says the guest exited, q closes it and the demo's usual summary follows."""
    require_tools(TMUX)
    board_guest(arch)
    session = f"vmsim-demo-{uuid.uuid4().hex[:8]}"
    out, status = tmp_path / "out", tmp_path / "status"
    command = (f"env -u COLUMNS -u LINES {VMSIM} demo --arch {arch} --tui; echo $? > {status}; "
               f"tmux capture-pane -p -S -200 > {out}.part; mv {out}.part {out}; sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                    "-e", "TERM=xterm-256color", command], check=True)
    subprocess.run(["tmux", "set-option", "-t", session, "window-size", "manual"], check=True)
    subprocess.run(["tmux", "resize-window", "-t", session, "-x", "160", "-y", "50"], check=True)
    try:
        _wait_for(session, r"the guest exited with status 0", DEMO_TIMEOUT)
        screen = _capture(session)
        assert re.search(r"dataq0\s+size \d+\s+in flight \d+\s+kicks [1-9]", screen), screen
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 60
        while not (status.exists() and out.exists()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status.exists() and status.read_text().strip() == "0", _capture(session)
        assert "Every check passed." in out.read_text(), out.read_text()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
