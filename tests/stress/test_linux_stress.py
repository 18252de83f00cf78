"""Stress gate for safe preemption: many Linux boots under a stop every 100 µs, on
every board.

Each boot runs the board's default guest with a busy user-space init (`vmsim.run=busy`,
whose every result is known in advance) while an extra thread requests a stop every
100 µs, on top of the machine's own watchdog. A boot passes when the guest powers off
with status 0, the init printed its pass line and ended with exit 0 (its `@vmsim
event=done` line: on arm64 the PSCI poweroff carries no code, so the status alone would
say nothing), and the console shows no Oops, BUG, panic, warning or stall
(docs/engine.md, E14: unsafe stops broke 9 of 10 boots).

Each engine runs in its own interpreter (the binding binds one library per process):
    python tests/stress/test_linux_stress.py --boots N [--arch arm64]
                                                       (engine from VMSIM_ENGINE)
prints one JSON object (--unsafe-direct-stop: see StopStorm). VMSIM_STRESS_BOOTS
overrides the number of boots per board and engine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOTS = int(os.environ.get("VMSIM_STRESS_BOOTS", "20"))
BUSY_MS = 300
STOP_INTERVAL_S = 100e-6
BOOT_TIMEOUT_S = 60.0
TIMED_OUT = 124
OPTIONS = f"vmsim.run=busy vmsim.busy_ms={BUSY_MS}"         # after the board's console=
PASS_LINE = re.compile(r"^@vmsim test=busy result=pass\b", re.M)
DONE_LINE = re.compile(r"^@vmsim event=done exit=0\s*$", re.M)
# riscv64 and arm64 kernels word trouble alike, but for arm64's own: a bad exception
# vector (Bad mode), an SError, a fault no handler took, and a user task's fault
# ("unhandled level 2 translation fault", where riscv prints "segfault").
TROUBLE = re.compile(r"Oops|\bBUG\b|Kernel panic|WARNING:|detected stall|stalls? on CPU|"
                     r"soft lockup|hard LOCKUP|blocked for more than|Unable to handle kernel|"
                     r"segfault|Internal error|Bad mode|SError|Unhandled fault|unhandled")

pytestmark = [pytest.mark.stress, pytest.mark.linux]


class StopStorm:
    """A thread that requests a stop every `interval` seconds until closed.

    direct=True uses the engine's plain `emu_stop()` instead of `make_stopper`: unsafe on
    the wheel, for showing by hand that this gate catches the corruption.
    """

    def __init__(self, machine, interval: float, direct: bool = False) -> None:
        from vmsim.core.preempt import BlockBoundaryStopper

        self.requests = 0
        self._direct = BlockBoundaryStopper(machine.cpu.uc) if direct else None
        self._request = self._direct.request if direct else machine.request_stop
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stop-storm", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            self._request()
            self.requests += 1

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        if self._direct is not None:
            self._direct.close()


def append_for(arch: str) -> str:
    """The busy init's command line on `arch`'s board console."""
    from vmsim.boards import default_append, for_arch

    return f"{default_append(for_arch(arch))} {OPTIONS}"


def boot_once(kernel: Path, initrd: Path, direct: bool = False,
              arch: str = "riscv64") -> dict:
    """One boot under the stop storm; returns status, requests, seconds and any trouble."""
    from vmsim.boards import for_arch
    from vmsim.errors import GuestError
    from vmsim.core.machine import MachineConfig, create_machine

    console = bytearray()
    machine = create_machine(MachineConfig(kernel=kernel, initrd=initrd,
                                           append=append_for(arch), board=for_arch(arch)),
                             output=console.extend)
    machine.load()
    storm = StopStorm(machine, STOP_INTERVAL_S, direct)
    deadline = threading.Timer(BOOT_TIMEOUT_S, machine.request_quit, args=(TIMED_OUT,))
    deadline.start()
    started = time.perf_counter()
    try:
        status, death = machine.run(), None
    except GuestError as error:
        status, death = None, str(error).splitlines()[0]
    finally:
        seconds = time.perf_counter() - started
        deadline.cancel()
        storm.close()
        machine.close()
    text = console.decode(errors="replace")
    problems = [line.strip() for line in text.splitlines() if TROUBLE.search(line)]
    if death:
        problems.append(death)
    if status != 0:
        problems.append(f"exit status {status}")
    if not PASS_LINE.search(text):
        problems.append("no busy pass line")
    if not DONE_LINE.search(text):
        problems.append("no `@vmsim event=done exit=0` line")
    return {"status": status, "requests": storm.requests, "seconds": seconds,
            "problems": problems, "tail": text[-1500:] if problems else ""}


def stress_in_subprocess(engine: str, boots: int, arch: str = "riscv64") -> dict:
    env = dict(os.environ, VMSIM_ENGINE=engine, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, __file__, "--boots", str(boots), "--arch", arch],
                         env=env, capture_output=True, text=True,
                         timeout=boots * (BOOT_TIMEOUT_S + 30))
    if out.returncode != 0:
        raise AssertionError(f"stress run failed ({arch}, {engine}): "
                             f"{out.stderr.strip()[-3000:]}")
    return json.loads(out.stdout)


# Each board with each engine it runs on. arm64 runs only on the patched engine: the
# wheel's aarch64 target cannot take the guest's exceptions, timer or IRQ line at all
# (vmsim.core.arm64_cpu refuses it), so there is no wheel stop method to gate there.
BOARD_ENGINES = [("riscv64", "patched"), ("riscv64", "wheel"), ("arm64", "patched")]


@pytest.mark.parametrize(("arch", "engine"), BOARD_ENGINES,
                         ids=[f"{arch}-{engine}" for arch, engine in BOARD_ENGINES])
def test_linux_survives_a_stop_every_100us(arch: str, engine: str) -> None:
    from vmsim.build.guest import ensure_default_guest

    if engine == "patched":
        from tests.support.guest import require_patched_engine

        require_patched_engine()
    ensure_default_guest(arch=arch)        # built here, with its progress, not in the child
    summary = stress_in_subprocess(engine, BOOTS, arch)
    failures = [b for b in summary["boots"] if b["problems"]]
    assert not failures, (f"{len(failures)} of {len(summary['boots'])} {arch} boots failed "
                          f"on {summary['engine']}; first: {failures[0]['problems']}\n"
                          f"{failures[0]['tail']}")
    assert summary["requests"] >= 1000 * len(summary["boots"]), summary


def _main() -> None:
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=BOOTS)
    parser.add_argument("--arch", default="riscv64", choices=("riscv64", "arm64"),
                        help="the board, and so its default guest")
    parser.add_argument("--unsafe-direct-stop", action="store_true",
                        help="storm with plain emu_stop (shows the gate bites on the wheel)")
    args = parser.parse_args()
    from vmsim.core.engine import engine_description
    from vmsim.build.guest import ensure_default_guest

    paths = ensure_default_guest(arch=args.arch)
    boots = [boot_once(paths.kernel, paths.initrd, args.unsafe_direct_stop, args.arch)
             for _ in range(args.boots)]
    print(json.dumps({"engine": engine_description(), "boots": boots,
                      "requests": sum(b["requests"] for b in boots)}))


if __name__ == "__main__":
    _main()
