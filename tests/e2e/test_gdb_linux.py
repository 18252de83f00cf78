"""The GDB stub on the Linux guests, with the real gdb-multiarch and the kernel's vmlinux:
a breakpoint on start_kernel by symbol (a virtual address under Sv57 on riscv64, under
TTBR1 on arm64), `bt`, the privileged state, continue, and Ctrl-C while the kernel
runs; then, on both boards, the monitor commands that show the virtio-crypto device
once the driver has set it up."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading

import pytest

from tests.support.gdb_client import Client, start_vmsim_with_stub
from tests.support.guest import (BOARD_ARCHES, built_default_guest, missing,
                                 require_patched_engine, require_tools)
from vmsim.boards import default_append, for_arch
from vmsim.gdb.packets import frame
from vmsim.build.cache import Requirement

pytestmark = pytest.mark.linux

GDB = Requirement("gdb-multiarch", "gdb-multiarch")


def start_vmsim(append: str, arch: str = "riscv64") -> tuple[subprocess.Popen, int]:
    built_default_guest(arch)
    return start_vmsim_with_stub(["run", "--arch", arch, "--append", append, "--gdb", "0",
                                  "--wait", "--crypto-workers", "0"])


def vmlinux_of(arch: str) -> str:
    require_tools(GDB)
    path = built_default_guest(arch).vmlinux
    if not path.exists():
        option = "" if arch == "riscv64" else f" --arch {arch}"
        missing(f"{path} is missing: the cached kernel predates vmlinux being kept; "
                f"remove {path.parent} and run `vmsim guest build{option}`")
    return str(path)


@pytest.fixture
def vmlinux() -> str:
    return vmlinux_of("riscv64")


def gdb_until_init_then_ctrl_c(vmlinux: str, append: str, before: list[str], after: list[str],
                               arch: str = "riscv64") -> str:
    """Boot the default guest of `arch` under gdb-multiarch: `before` runs at the first
    stop, then `continue`, and once the guest's init has started (read from its
    console) a SIGINT to gdb (what Ctrl-C at its prompt does); then `after` and kill.
    Returns gdb's output; vmsim must exit 0."""
    proc, port = start_vmsim(append, arch)
    init_started = threading.Event()

    def read_console() -> None:
        for line in proc.stdout:
            if "@vmsim event=init-start" in line:
                init_started.set()

    threading.Thread(target=read_console, daemon=True).start()
    try:
        commands = [f"target remote localhost:{port}", *before,
                    "set debug remote 1", "continue", "set debug remote 0", *after, "kill"]
        gdb = subprocess.Popen(
            ["gdb-multiarch", "-batch", "-nx", vmlinux]
            + [arg for command in commands for arg in ("-ex", command)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        lines = []
        for line in gdb.stdout:
            lines.append(line)
            # The continue after `before`: once the guest's init runs, interrupt.
            if "Sending packet: $vCont;c" in line:
                assert init_started.wait(timeout=120), "the guest's init never started"
                os.kill(gdb.pid, signal.SIGINT)
        assert gdb.wait(timeout=120) == 0
        assert proc.wait(timeout=30) == 0
        return "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_break_at_start_kernel_backtrace_continue_and_ctrl_c(vmlinux: str) -> None:
    out = gdb_until_init_then_ctrl_c(
        vmlinux, "console=ttyS0 vmsim.run=busy vmsim.busy_ms=600000",
        ["break start_kernel", "continue", "bt", "print $priv", "print/x $satp", "x/2i $pc",
         "delete"],
        ["print/x $pc", "bt 1"])
    assert re.search(r"Breakpoint 1, 0xffffffff8[0-9a-f]+ in start_kernel \(\)", out), out
    assert re.search(r"#0\s+0xffffffff8[0-9a-f]+ in start_kernel \(\)\n"
                     r"#1\s+0x[0-9a-f]+ in _start_kernel \(\)", out), out
    assert "$1 = prv:1 [Supervisor]" in out or "$1 = 1" in out
    assert re.search(r"\$2 = 0x[89a]0000000000[0-9a-f]{5}", out), out  # paging is on
    assert re.search(r"=> 0xffffffff8[0-9a-f]+ <start_kernel>:\s+\w+", out), out
    assert "Program received signal SIGINT" in out, out[-3000:]
    stopped_at = re.search(r"\$3 = (0x[0-9a-f]+)", out)
    assert stopped_at and stopped_at.group(1) not in out.split("Program received")[0]


def test_arm64_break_at_start_kernel_backtrace_continue_and_ctrl_c() -> None:
    """The same on the arm64 board: start_kernel by symbol (a TTBR1 address with the
    MMU on), `bt` down to head.S's __primary_switched, the AArch64 registers, Ctrl-C
    once init runs."""
    require_patched_engine()
    vmlinux = vmlinux_of("arm64")
    out = gdb_until_init_then_ctrl_c(
        vmlinux, "console=ttyAMA0 vmsim.run=busy vmsim.busy_ms=600000",
        ["break start_kernel", "continue", "bt", "info registers cpsr", "print/x $sp",
         "x/2i $pc", "delete"],
        ["print/x $pc", "bt 1"], arch="arm64")
    assert re.search(r"Breakpoint 1, 0xffffffc0[0-9a-f]+ in start_kernel \(\)", out), out
    assert re.search(r"#0\s+0xffffffc0[0-9a-f]+ in start_kernel \(\)\n"
                     r"#1\s+0x[0-9a-f]+ in __primary_switched \(\)", out), out
    assert re.search(r"cpsr\s+0x[0-9a-f]+\s+\[ .*EL=1.*\]", out), out     # the kernel, EL1
    assert re.search(r"\$1 = 0xffffffc0[0-9a-f]+", out), out               # init_task's stack
    assert re.search(r"=> 0xffffffc0[0-9a-f]+ <start_kernel>:\s+\w+", out), out
    assert "Program received signal SIGINT" in out, out[-3000:]
    stopped_at = re.search(r"\$2 = (0x[0-9a-f]+)", out)
    assert stopped_at and stopped_at.group(1) not in out.split("Program received")[0]


def monitor(gdb: Client, command: str) -> str:
    """A monitor command's output (O packets) up to its OK."""
    out, reply = "", gdb.ask(b"qRcmd," + command.encode().hex().encode())
    while reply != b"OK":
        assert reply.startswith(b"O"), reply
        out += bytes.fromhex(reply[1:].decode()).decode()
        reply = gdb.reply()
    return out


@pytest.mark.parametrize("arch", BOARD_ARCHES)
def test_monitor_shows_the_crypto_device_its_queues_and_sessions(arch: str) -> None:
    """Once the driver has registered (crypto-reg passed), Ctrl-C and ask the monitor;
    the same on every board."""
    if arch != "riscv64":
        require_patched_engine()
    console = default_append(for_arch(arch))
    proc, port = start_vmsim(f"{console} vmsim.run=crypto-reg,busy vmsim.busy_ms=600000", arch)
    try:
        gdb = Client(port)
        gdb.ask(b"qSupported")
        gdb.ask(b"?")
        gdb.send_raw(frame(b"c"))
        seen = ""
        while "test=crypto-reg" not in seen:
            chunk = proc.stdout.readline()
            assert chunk, seen[-2000:]
            seen += chunk
        assert "test=crypto-reg result=pass" in seen
        gdb.send_raw(b"\x03")
        assert gdb.reply().startswith(b"T02")
        assert re.search(r"slot 0: virtio-crypto \(device id 20\) status 0xf .*DRIVER_OK",
                         monitor(gdb, "virtio"))
        queue = monitor(gdb, "virtqueue 0 1")
        assert "vring-num: 1024" in queue and "ready: True" in queue
        assert re.search(r"used-idx: [1-9]\d*", queue) and "descriptors: " in queue
        assert "chain at head 0:" in monitor(gdb, "virtqueue 0 1 0")
        assert re.search(r"slot 0: \d+ session\(s\)", monitor(gdb, "crypto-sessions"))
        assert "no virtio slot 5" in monitor(gdb, "virtqueue 5 0")
        gdb.send_raw(frame(b"k"))
        assert proc.wait(timeout=30) == 0
        gdb.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
