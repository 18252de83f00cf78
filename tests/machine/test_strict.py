"""`vmsim run --strict` on the machine: bare-metal drivers, the real process, the real
gdb-multiarch. The bare-metal example keeps every rule; a small program that breaks
one is reported once, at the pc of its store, on stderr, in the `-d strict` log and in
the trace, and with GDB attached the guest stops there (SIGTRAP) and `monitor strict`
shows the finding.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Callable

from tests.machine.test_gdb import GDB, run_gdb, symbol
from tests.support.gdb_client import VMSIM, start_vmsim_with_stub
from tests.support.guest import require_tools
from vmsim.build import baremetal
from vmsim.harness.results import parse_result_lines


# Identifies slot 0's device, then writes InterruptACK with an undefined bit, twice.
# Each store ends its block (a jump follows), so a stop lands right after it.
BREAKS_A_RULE = r"""
    li s0, 0x10001000
    lw t1, 0(s0)
    lw t1, 4(s0)
    lw t1, 8(s0)
    li t1, 0x10
bad:
    sw t1, 0x64(s0)
    j after
after:
    li t1, 0x20
    sw t1, 0x64(s0)
    j done
done:
    exit 0
"""


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(VMSIM + ["run", "--mem", "16M", "--crypto-workers", "0", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def test_the_bare_metal_example_keeps_every_rule(tmp_path: Path) -> None:
    require_tools(*baremetal.REQUIREMENTS)
    elf = baremetal.ensure_example({})
    log = tmp_path / "strict.log"
    result = run(["--kernel", str(elf), "--strict", "-d", "strict", "-D", str(log)])
    lines = parse_result_lines(result.stdout)
    assert result.returncode == 0, result.stderr
    assert lines and all(line["result"] == "pass" for line in lines), result.stdout
    assert "strict" not in result.stderr and log.read_text() == ""


def test_a_finding_names_the_store_on_stderr_in_the_log_and_in_the_trace(
        build: Callable[[str], Path], tmp_path: Path) -> None:
    elf = build(BREAKS_A_RULE)
    bad = symbol(elf, "bad")
    log, trace = tmp_path / "strict.log", tmp_path / "trace.jsonl"
    result = run(["--kernel", str(elf), "--strict", "-d", "strict", "-D", str(log),
                  "--trace", str(trace)])
    assert result.returncode == 0, result.stderr
    reported = [line for line in result.stderr.splitlines() if line.startswith("vmsim: strict:")]
    assert reported == [
        f"vmsim: strict: virtio-crypto: mmio-interrupt-ack-bits: set no undefined bit in "
        f"InterruptACK (virtio 4.2.2.2, drivernormative:Virtio Transport Options / Virtio "
        f"Over MMIO / MMIO Device Register Layout) at pc {bad:#x}: value=0x10 undefined=0x10"]
    assert reported[0].removeprefix("vmsim: strict: ") in log.read_text()
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    strict = [event for event in events if event.get("ev") == "strict"]
    assert len(strict) == 1 and strict[0]["dev"] == "virtio-crypto"
    assert strict[0]["f"]["rule"] == "mmio-interrupt-ack-bits" and strict[0]["f"]["pc"] == bad
    assert strict[0]["f"]["value_value"] == 0x10


def test_without_strict_nothing_is_checked(build: Callable[[str], Path]) -> None:
    result = run(["--kernel", str(build(BREAKS_A_RULE)), "-d", "strict"])
    assert result.returncode == 0 and "strict" not in result.stderr


def test_gdb_stops_at_a_finding_and_monitor_strict_shows_it(
        build: Callable[[str], Path]) -> None:
    require_tools(GDB)
    elf = build(BREAKS_A_RULE)
    proc, port = start_vmsim_with_stub(["run", "--kernel", str(elf), "--mem", "16M",
                                        "--crypto-workers", "0", "--strict", "--gdb", "0",
                                        "--wait"])
    try:
        out = run_gdb(elf, port, [
            "monitor strict", "continue", "print/x $pc", "monitor strict", "continue"])
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "strict: no rule broken so far" in out
    assert "Program received signal SIGTRAP" in out, out
    assert f"$1 = {symbol(elf, 'after'):#x}" in out, out
    assert re.search(r"1x virtio-crypto: mmio-interrupt-ack-bits: .* at pc "
                     f"{symbol(elf, 'bad'):#x}: value=0x10", out), out
    assert "exited normally" in out
