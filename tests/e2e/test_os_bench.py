"""The guest OS benchmark program (guests/initramfs/programs/os-bench.c) runs every
point on vmsim and reports it: page faults, mmap/munmap, fork, system calls, a pipe
between two processes, clock reads, a user loop and memcpy. bench/guest_os.py times
them; this only shows that the program works, and so exercises every trap path the
benchmark measures (faults, context switches, timer ticks) under Linux."""
from __future__ import annotations

import pytest

from tests.support.guest import built_default_guest

from vmsim.build.guest import GuestPaths
from vmsim.core.machine import Machine, MachineConfig
from vmsim.harness.results import GuestRun, check_result, kernel_problems

pytestmark = pytest.mark.linux

POINTS = {"pagefault", "mmap", "fork", "syscall", "pipe", "clock", "loop", "memcpy"}


@pytest.fixture(scope="module")
def guest() -> GuestPaths:
    return built_default_guest()


def test_os_bench_reports_every_point(guest: GuestPaths) -> None:
    output = bytearray()
    append = "console=ttyS0 vmsim.run=os-bench vmsim.bench_ms=30"
    machine = Machine(MachineConfig(kernel=guest.kernel, initrd=guest.initrd, append=append),
                      output=output.extend)
    try:
        status = machine.run()
    finally:
        machine.close()
    run = GuestRun(status, output.decode("utf-8", "replace"))
    assert not check_result(run, "os-bench"), run.tail()
    lines = {line["name"]: line for line in run.events("osbench")}
    assert set(lines) == POINTS, run.tail()
    for name, line in lines.items():
        assert line["err"] == "0" and int(line["ops"]) > 0, (name, line)
        assert float(line["ns_per_op"]) > 0, (name, line)
    assert not kernel_problems(run.console), run.tail()
    assert status == 0


def test_os_bench_runs_only_the_points_asked_for(guest: GuestPaths) -> None:
    output = bytearray()
    append = "console=ttyS0 vmsim.run=os-bench vmsim.bench_ms=20 vmsim.points=syscall,pipe"
    machine = Machine(MachineConfig(kernel=guest.kernel, initrd=guest.initrd, append=append),
                      output=output.extend)
    try:
        status = machine.run()
    finally:
        machine.close()
    run = GuestRun(status, output.decode("utf-8", "replace"))
    assert [line["name"] for line in run.events("osbench")] == ["syscall", "pipe"], run.tail()
    assert status == 0
