"""`vmsim demo`: boot the default guest with the virtio-crypto device and show what happened.

The guest's own programs do the work (guests/initramfs/programs/): registration and
self-tests from /proc/crypto, AF_ALG known answers bound to the virtio driver by name,
RSA through keyctl, a multi-process stress run and a short benchmark. The host checks
every result line against `cryptography` (vmsim.harness.guest_crypto), and reads the device's
own per-queue counters, so the summary says both what the guest saw and what the
device did.

It runs on either board (`--arch riscv64|arm64`), with the console on the board's UART.
Whether the programs passed is read from the init's `@vmsim event=done exit=N` line on
both: on arm64 the guest powers off through PSCI SYSTEM_OFF, which carries no status,
so vmsim's own exit status is always 0 there; on riscv64 it must be 0 as well.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from rich.console import Console
from rich.table import Table

from vmsim.devices.virtio.crypto.device import QueueStats
from vmsim.harness import guest_crypto as gc
from vmsim.harness.results import GuestRun, check_result, init_exit, kernel_problems
from vmsim.boards import default_append, for_arch
from vmsim.build.guest import DEFAULT_ARCH, ensure_default_guest
from vmsim.core.machine import MachineConfig, create_machine
from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO, find_crypto_device

STRESS_PROCS = 2
STRESS_OPS = 64
BENCH_MS = 400
PROGRAMS = ("crypto-reg", "afalg-kat", "rsa-keyctl", "afalg-stress", "afalg-bench")
OPTIONS = (f"quiet vmsim.run={','.join(PROGRAMS)} vmsim.procs={STRESS_PROCS} "
           f"vmsim.ops={STRESS_OPS} vmsim.bench_ms={BENCH_MS}")


def demo_append(arch: str = DEFAULT_ARCH) -> str:
    """The demo's kernel command line: the console on the board's UART, then its programs."""
    return f"{default_append(for_arch(arch))} {OPTIONS}"


@dataclass
class DemoResult:
    run: GuestRun
    seconds: float
    queue_stats: list[QueueStats]
    control_queue: int
    arch: str = DEFAULT_ARCH


class _ConsoleFollower:
    """Collects the guest console and turns its progress lines into a status text."""

    def __init__(self, on_status: Callable[[str], None], echo: Console | None) -> None:
        self.text = bytearray()
        self._partial = b""
        self._on_status = on_status
        self._echo = echo

    def __call__(self, data: bytes) -> None:
        self.text.extend(data)
        if self._echo is not None:
            self._echo.file.write(data.decode(errors="replace"))
            self._echo.file.flush()
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(b"@vmsim event=init-start"):
                self._on_status("Linux is up: running the crypto programs in the guest")
            elif line.startswith(b"@vmsim event=program"):
                self._on_status(f"guest: {line.decode(errors='replace')[7:]}")


def run_demo(console: Console, queues: int = 1, show_console: bool = False,
             tui: bool = False, arch: str = DEFAULT_ARCH) -> int:
    """Boot, check, summarise; 0 when every check passed."""
    paths = ensure_default_guest(console, arch=arch)
    config = MachineConfig(kernel=paths.kernel, initrd=paths.initrd, append=demo_append(arch),
                           board=for_arch(arch), virtio=[CRYPTO.configure(queues=queues)])
    if tui:
        return _run_demo_tui(console, config)
    with console.status(f"Booting Linux 6.1 ({arch}) with a virtio-crypto device…") as status:
        follower = _ConsoleFollower(status.update, console if show_console else None)
        machine = create_machine(config, output=follower)
        try:
            started = time.perf_counter()
            exit_status = machine.run()
            seconds = time.perf_counter() - started
            device = find_crypto_device(machine.virtio)
            stats = list(device.stats) if device else []
            control = device.control_queue if device else -1
        finally:
            machine.close()
    result = DemoResult(GuestRun(exit_status, follower.text.decode(errors="replace")),
                        seconds, stats, control, config.board.arch)
    checks = _program_checks(result.run)
    problems = _problems(result.run, checks)
    _show(console, result, checks, problems)
    return 0 if not problems else 1


def _run_demo_tui(console: Console, config: MachineConfig) -> int:
    """The demo with the TUI watching: the same programs and checks; the summary is
    printed once the TUI is closed (quit early and the checks say what was missed)."""
    import argparse

    from vmsim.cli.observe import Observers

    observers = Observers.from_args(argparse.Namespace(trace_file=None, tui=True))
    config.trace = observers.sink()
    config.virtio = observers.devices(config.virtio)
    follower = _ConsoleFollower(lambda _status: None, None)

    def output(data: bytes) -> None:
        follower(data)
        observers.console.write(data)

    machine = create_machine(config, output=output)
    try:
        observers.attach(machine)
        started = time.perf_counter()
        exit_status = observers.run_tui(machine, title="vmsim demo")
        seconds = time.perf_counter() - started
        device = find_crypto_device(machine.virtio)
        stats = list(device.stats) if device else []
        control = device.control_queue if device else -1
    finally:
        observers.close()
        machine.close()
    result = DemoResult(GuestRun(exit_status, follower.text.decode(errors="replace")),
                        seconds, stats, control, config.board.arch)
    checks = _program_checks(result.run)
    problems = _problems(result.run, checks)
    _show(console, result, checks, problems)
    return 0 if not problems else 1


Check = tuple[str, str, list[str]]      # guest program, what it shows, the host's problems


def _program_checks(run: GuestRun) -> list[Check]:
    """The host's verdict on each guest program's output, computed once."""
    return [
        ("crypto-reg", "registration and self-tests", gc.check_registration(run)),
        ("afalg-kat", f"AF_ALG cbc(aes) known answers ({len(run.events('kat'))} cases, "
                      "checked on the host)", gc.check_kat(run)),
        ("rsa-keyctl", "RSA through keyctl (checked on the host)", gc.check_rsa(run)),
        ("afalg-stress", f"{STRESS_PROCS} processes x {STRESS_OPS} requests",
         gc.check_stress(run, STRESS_PROCS, STRESS_OPS)),
    ]


def _problems(run: GuestRun, checks: list[Check]) -> list[str]:
    problems = [problem for _, _, found in checks for problem in found]
    problems += check_result(run, "afalg-bench") + kernel_problems(run.console)
    status = init_exit(run.lines)
    if status is None:
        problems.append(f"the guest's init never printed its done line (vmsim exit status "
                        f"{run.status})")
    elif status != 0:
        problems.append(f"the guest's programs ended with status {status}")
    if run.status != 0:
        problems.append(f"the guest powered off with status {run.status}")
    return problems


def _show(console: Console, result: DemoResult, checks: list[Check],
          problems: list[str]) -> None:
    run = result.run
    status = init_exit(run.lines)
    shown = "none" if status is None else str(status)
    console.print(f"[bold]vmsim demo[/] ({result.arch}): Linux 6.1 booted, ran {len(PROGRAMS)} "
                  f"programs and powered off in {result.seconds:.1f} s (the programs' exit "
                  f"status {shown}, vmsim's {run.status})")
    console.print(_algorithms_table(run))
    console.print(_checks_table(checks))
    console.print(_bench_table(run))
    console.print(_queues_table(result))
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s):[/]")
        for problem in problems[:20]:
            console.print(f"  [red]•[/] {problem}")
    else:
        console.print("[bold green]Every check passed.[/]")


def _mark(ok: bool) -> str:
    return "[green]pass[/]" if ok else "[red]FAIL[/]"


def _algorithms_table(run: GuestRun) -> Table:
    table = Table(title="Algorithms the guest's virtio_crypto driver registered")
    for column in ("algorithm", "driver", "kernel self-test"):
        table.add_column(column)
    for alg in run.events("alg"):
        selftest = alg.get("selftest", "none")
        shown = f"[green]{selftest}[/]" if selftest == "passed" else f"[red]{selftest}[/]"
        table.add_row(alg.get("name", "?"), alg.get("driver", "?"), shown)
    return table


def _checks_table(checks: list[Check]) -> Table:
    """One row per guest program, with the host's own verdict on its output."""
    table = Table(title="Checks")
    for column in ("program", "what", "result"):
        table.add_column(column)
    for program, what, problems in checks:
        table.add_row(program, what, _mark(not problems))
    return table


def _bench_table(run: GuestRun) -> Table:
    table = Table(title=f"AF_ALG cbc(aes) through the device ({BENCH_MS} ms per point)")
    for column in ("size", "processes", "ops/s", "MB/s"):
        table.add_column(column, justify="right")
    for point in gc.bench_points(run):
        table.add_row(f"{point.size} B", str(point.procs), f"{point.ops_per_s:,.0f}",
                      f"{point.mb_per_s:.2f}")
    return table


def _queues_table(result: DemoResult) -> Table:
    table = Table(title="Requests the device saw, per virtqueue")
    for column in ("queue", "requests", "bytes in", "inline", "worker pool", "statuses"):
        table.add_column(column, justify="right" if column != "statuses" else "left")
    for index, stats in enumerate(result.queue_stats):
        name = "controlq" if index == result.control_queue else f"dataq.{index}"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(stats.statuses.items())) or "-"
        table.add_row(name, f"{stats.requests:,}", f"{stats.bytes_in:,}", f"{stats.inline:,}",
                      f"{stats.pooled:,}", statuses)
    return table
