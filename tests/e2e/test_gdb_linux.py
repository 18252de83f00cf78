"""The GDB stub on the Linux guest, with the real gdb-multiarch and the kernel's vmlinux:
a breakpoint on start_kernel by symbol (a virtual address under Sv39), `bt`, the
supervisor state, continue, and Ctrl-C while the kernel runs; then the monitor
commands that show the virtio-crypto device once the driver has set it up."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests.support.gdb_client import Client
from tests.support.guest import built_default_guest, missing, require_tools
from vmsim.gdb.packets import frame
from vmsim.build.cache import Requirement

pytestmark = pytest.mark.linux

GDB = Requirement("gdb-multiarch", "gdb-multiarch")
VMSIM = [sys.executable, "-c", "import sys; from vmsim.cli.main import main; sys.exit(main())"]


def start_vmsim(append: str) -> tuple[subprocess.Popen, int]:
    built_default_guest()
    proc = subprocess.Popen(VMSIM + ["run", "--append", append, "--gdb", "0", "--wait",
                                     "--crypto-workers", "0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"gdb stub on localhost:(\d+)", line)
    assert match, line + proc.stderr.read()
    return proc, int(match.group(1))


@pytest.fixture
def vmlinux() -> str:
    require_tools(GDB)
    path = built_default_guest().vmlinux
    if not path.exists():
        missing(f"{path} is missing: the cached kernel predates vmlinux being kept; "
                f"remove {path.parent} and run `vmsim guest build`")
    return str(path)


def test_break_at_start_kernel_backtrace_continue_and_ctrl_c(vmlinux: str) -> None:
    proc, port = start_vmsim("console=ttyS0 vmsim.run=busy vmsim.busy_ms=600000")
    init_started = threading.Event()

    def read_console() -> None:
        for line in proc.stdout:
            if "@vmsim event=init-start" in line:
                init_started.set()

    threading.Thread(target=read_console, daemon=True).start()
    try:
        gdb = subprocess.Popen(
            ["gdb-multiarch", "-batch", "-nx", vmlinux,
             "-ex", f"target remote localhost:{port}",
             "-ex", "break start_kernel", "-ex", "continue", "-ex", "bt",
             "-ex", "print $priv", "-ex", "print/x $satp", "-ex", "x/2i $pc",
             "-ex", "delete", "-ex", "set debug remote 1", "-ex", "continue",
             "-ex", "set debug remote 0", "-ex", "print/x $pc", "-ex", "bt 1", "-ex", "kill"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        lines = []
        for line in gdb.stdout:
            lines.append(line)
            # The second continue: once the guest's init runs, interrupt (what Ctrl-C
            # at gdb's prompt does).
            if "Sending packet: $vCont;c" in line:
                assert init_started.wait(timeout=120), "the guest's init never started"
                os.kill(gdb.pid, signal.SIGINT)
        assert gdb.wait(timeout=120) == 0
        out = "".join(lines)
        assert re.search(r"Breakpoint 1, 0xffffffff8[0-9a-f]+ in start_kernel \(\)", out), out
        assert re.search(r"#0\s+0xffffffff8[0-9a-f]+ in start_kernel \(\)\n"
                         r"#1\s+0x[0-9a-f]+ in _start_kernel \(\)", out), out
        assert "$1 = prv:1 [Supervisor]" in out or "$1 = 1" in out
        assert re.search(r"\$2 = 0x[89a]0000000000[0-9a-f]{5}", out), out  # paging is on
        assert re.search(r"=> 0xffffffff8[0-9a-f]+ <start_kernel>:\s+\w+", out), out
        assert "Program received signal SIGINT" in out, out[-3000:]
        stopped_at = re.search(r"\$3 = (0x[0-9a-f]+)", out)
        assert stopped_at and stopped_at.group(1) not in out.split("Program received")[0]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def monitor(gdb: Client, command: str) -> str:
    """A monitor command's output (O packets) up to its OK."""
    out, reply = "", gdb.ask(b"qRcmd," + command.encode().hex().encode())
    while reply != b"OK":
        assert reply.startswith(b"O"), reply
        out += bytes.fromhex(reply[1:].decode()).decode()
        reply = gdb.reply()
    return out


def test_monitor_shows_the_crypto_device_its_queues_and_sessions() -> None:
    """Once the driver has registered (crypto-reg passed), Ctrl-C and ask the monitor."""
    proc, port = start_vmsim("console=ttyS0 vmsim.run=crypto-reg,busy vmsim.busy_ms=600000")
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
