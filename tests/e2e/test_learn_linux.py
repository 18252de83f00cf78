"""`vmsim learn --headless` on the default guest: the lesson runs end to end without a
screen, every step happens on the real Linux driver's events and is explained with a
spec citation, and vmsim ends by itself once the last step has happened."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.guest import board_guest
from vmsim.trace.lesson import STEPS

VMSIM = Path(sys.executable).with_name("vmsim")


@pytest.mark.linux
@pytest.mark.parametrize("arch", ["riscv64", "arm64"])
def test_the_lesson_runs_end_to_end_headless(arch: str) -> None:
    board_guest(arch)
    result = subprocess.run([str(VMSIM), "learn", "--headless", "--arch", arch],
                            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith(f"vmsim learn: {len(STEPS)} steps on the default {arch} guest"), out
    titles = re.findall(r"^Step (\d)/6: (.+)$", out, re.MULTILINE)
    assert titles == [(str(n), step.title) for n, step in enumerate(STEPS, 1)], out
    assert len(re.findall(r"^— virtio \d+(\.\d+)+ .+; (driver|device)normative:", out,
                          re.MULTILINE)) == len(STEPS), out
    assert re.search(r"device set bit 0x1 in InterruptStatus .* for dataq0", out), out
    assert out.rstrip().endswith("Lesson complete: every step happened on this guest.")
