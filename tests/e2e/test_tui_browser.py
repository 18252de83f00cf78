"""The attach TUI in a browser, as a classroom would use it: the default guest runs
with `--observe SOCKET`, `vmsim tui --attach SOCKET --serve PORT` serves the TUI through
textual-serve, and headless Chromium opens it; the screenshot (read with tesseract)
shows both virtio-crypto queues with their counts."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.guest import built_default_guest, require_tools
from vmsim.build.cache import Requirement

CHROMIUM = Requirement("chromium", "chromium")
TESSERACT = Requirement("tesseract", "tesseract-ocr")
VMSIM = Path(sys.executable).with_name("vmsim")
APPEND = "console=ttyS0 vmsim.run=crypto-reg,idle vmsim.idle_ms=180000"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(what: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.linux
def test_the_attached_tui_in_chromium_shows_the_queues(tmp_path: Path) -> None:
    require_tools(CHROMIUM, TESSERACT)
    built_default_guest()
    from tests.support.browser import Browser, ocr

    sock, log, shot = tmp_path / "vm.sock", tmp_path / "guest.log", tmp_path / "tui.png"
    port = _free_port()
    with open(log, "wb") as out:
        guest = subprocess.Popen([str(VMSIM), "run", "--observe", str(sock), "--append", APPEND],
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = None
    try:
        _wait("the guest's crypto-reg result", lambda: b"test=crypto-reg" in log.read_bytes(), 180)
        assert sock.exists()
        # Its own process group: textual-serve starts one attached TUI per visit.
        server = subprocess.Popen([str(VMSIM), "tui", "--attach", str(sock), "--serve", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        _wait("textual-serve", lambda: _listening(port), 30)

        async def look() -> str:
            async with Browser() as browser:
                await browser.open(f"http://127.0.0.1:{port}/")
                deadline = time.monotonic() + 90
                text = ""
                while time.monotonic() < deadline:
                    await asyncio.sleep(1)
                    await browser.screenshot(shot)
                    text = ocr(shot)
                    if re.search(r"dataq[0oO]", text) and "controlq" in text:
                        return text
                return text
        text = asyncio.run(look())
        assert re.search(r"dataq[0oO]", text) and "controlq" in text, f"{shot}:\n{text}"
        assert re.search(r"kicks \d+", text) and "virtio-crypto" in text, f"{shot}:\n{text}"
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
        for proc in (server, guest):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
