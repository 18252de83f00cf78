"""Booting a guest to poweroff as a separate process, on vmsim or on QEMU, for tests,
benchmarks and the demo's checks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from vmsim.build.guest import GuestPaths, ensure_default_guest
from vmsim.errors import VmsimError
from vmsim.harness.qemu import qemu_command
from vmsim.harness.results import GuestRun


def vmsim_command(paths: GuestPaths, append: str, extra: tuple[str, ...] = ()) -> list[str]:
    """`vmsim run` on the given guest, from the same environment as this Python."""
    vmsim = Path(sys.executable).parent / "vmsim"
    return [str(vmsim), "run", "--kernel", str(paths.kernel), "--initrd", str(paths.initrd),
            "--append", append, *extra]


def run_command(cmd: list[str], timeout: float) -> GuestRun:
    """Run an emulator to poweroff, console and stderr together. On timeout the whole
    process group goes (vmsim's crypto workers included) and the run says so."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    return GuestRun(proc.returncode, out.decode(errors="replace"), timed_out)


def run_vmsim(paths: GuestPaths, append: str, extra: tuple[str, ...] = (),
              timeout: float = 120.0) -> GuestRun:
    return run_command(vmsim_command(paths, append, extra), timeout)


def run_qemu(paths: GuestPaths, append: str, timeout: float = 120.0,
             arch: str = "riscv64") -> GuestRun:
    """The same guest on QEMU 7.2 with its builtin virtio-crypto backend."""
    return run_command(qemu_command(paths, append, arch=arch), timeout)


def default_guest_for_bench(tool: str, arch: str = "riscv64") -> GuestPaths | None:
    """The default guest of `arch` for a side-by-side benchmark, named on stdout so every
    table says what it ran; None after one `tool: error` line on stderr if it cannot be
    had."""
    try:
        paths = ensure_default_guest(arch=arch)
    except VmsimError as error:
        print(f"{tool}: {error}", file=sys.stderr)
        return None
    print(f"guest: {paths.kernel}\n       {paths.initrd}")
    return paths
