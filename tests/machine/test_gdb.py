"""The GDB stub (`vmsim run --gdb PORT --wait`) against bare-metal programs: the wire
protocol over a raw socket (acks, no-ack mode, the target description, Sv39 memory,
0x03), and the real gdb-multiarch in batch mode (break, step, registers, CSRs, memory,
a watchpoint, Ctrl-C). Every wait is on a reply or a line of output, never a sleep.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.guest import require_tools
from vmsim.build import baremetal
from vmsim.build.cache import Requirement
from tests.support.gdb_client import VMSIM, Client, start_vmsim_with_stub, stub_starter
from vmsim.gdb.packets import Packet, frame

GDB = Requirement("gdb-multiarch", "gdb-multiarch")

# Counts to 5 in memory, then powers off. `counter` is in RAM at a known label.
COUNTER = r"""
    li s1, 0
    la s2, counter
loop:
    addi s1, s1, 1
    sd s1, 0(s2)
    li t0, 5
    bne s1, t0, loop
done:
    exit 0
    .data
    .balign 8
    .globl counter
counter: .dword 0
"""

# Spins forever: only a debugger's Ctrl-C or kill ends it.
SPIN = r"""
    li s1, 0
spin:
    addi s1, s1, 1
    j spin
"""

# Maps the 1 GiB at virtual 0x40000000 onto RAM at 0x80000000 (RAM and devices onto
# themselves),
# turns Sv39 on, then stores to the marker through its alias at 0x40000000 + its offset.
PAGED = r"""
    la t0, root
    li t1, (0x80000 << 10) | 0xcf       # V R W X A D, a gigapage at 0x80000000
    sd t1, 8(t0)                        # VPN[2] = 1: virtual 0x40000000
    sd t1, 16(t0)                       # VPN[2] = 2: the identity map the code runs in
    li t1, 0xcf
    sd t1, 0(t0)                        # VPN[2] = 0: the devices, onto themselves
    srli t0, t0, 12
    li t1, 8 << 60
    or t0, t0, t1
    csrw satp, t0
    sfence.vma
paged:
    la t2, marker
    li t3, 0x40000000
    sub t2, t2, t3                      # marker's alias at 0x40000000 + its offset
    li t4, 99
    sd t4, 0(t2)
stored:
    exit 0
    .data
    .balign 8
    .globl marker
marker: .dword 0x1122334455667788
    .balign 4096
root: .zero 4096
"""


@pytest.fixture
def vmsim_gdb(build: Callable[[str], Path]) -> Iterator[Callable[..., tuple[subprocess.Popen, int]]]:
    """Start `vmsim run --kernel PROGRAM --gdb 0 [--wait]`; return it and its port,
    read from the one line it prints on stderr."""
    with stub_starter() as start_stub:
        def start(source: str, wait: bool = True) -> tuple[subprocess.Popen, int]:
            return start_stub(["run", "--kernel", str(build(source)), "--mem", "16M",
                               "--no-crypto", "--gdb", "0"] + (["--wait"] if wait else []))

        yield start


def symbol(elf: Path, name: str) -> int:
    out = subprocess.run(["riscv64-linux-gnu-nm", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    return int(next(line.split()[0] for line in out.splitlines() if line.endswith(f" {name}")), 16)


def test_handshake_acks_target_description_and_no_ack_mode(vmsim_gdb, build) -> None:
    proc, port = vmsim_gdb(COUNTER)
    gdb = Client(port)
    supported = gdb.ask(b"qSupported:multiprocess+;swbreak+;xmlRegisters=i386")
    assert b"qXfer:features:read+" in supported and b"vContSupported+" in supported
    assert gdb.ask(b"?").startswith(b"T05")
    assert gdb.ask(b"qAttached") == b"1"
    assert gdb.ask(b"vCont?") == b"vCont;c;C;s;S"

    # A bad checksum is answered with '-', and nothing else.
    gdb.send_raw(b"$g#00")
    assert gdb._next() == "nak"
    # A '-' from us makes the stub send its last reply again.
    first = gdb.ask(b"qAttached")
    gdb.send_raw(b"-")
    assert gdb.reply() == first

    xml = gdb.target_xml()
    for feature in (b"org.gnu.gdb.riscv.cpu", b"org.gnu.gdb.riscv.fpu",
                    b"org.gnu.gdb.riscv.virtual", b"org.gnu.gdb.riscv.csr"):
        assert feature in xml
    assert b'name="priv"' in xml and b'name="satp"' in xml and b'name="mstatus"' in xml

    # No-ack mode: the OK is still acknowledged, then neither side sends '+' again.
    gdb.send_raw(frame(b"QStartNoAckMode"))
    assert gdb._next() == "ack"
    assert gdb.reply() == b"OK"
    gdb.acks = False
    gdb.send_raw(frame(b"p20"))                         # pc
    assert gdb._next() == Packet((0x80200000).to_bytes(8, "little").hex().encode(), True)

    # The priv register is writable (and reads back).
    assert gdb.ask(b"p%x" % (65 + 4096)) == (1).to_bytes(8, "little").hex().encode()
    gdb.ask(b"P%x=%s" % (65 + 4096, (1).to_bytes(8, "little").hex().encode()))
    gdb.send_raw(frame(b"k"))
    assert proc.wait(timeout=20) == 0
    gdb.close()


def test_memory_is_virtual_under_sv39_and_physical_through_monitor(vmsim_gdb, build) -> None:
    elf = build(PAGED)
    proc, port = vmsim_gdb(PAGED)
    paged, marker = symbol(elf, "paged"), symbol(elf, "marker")
    alias = 0x4000_0000 + (marker - 0x8000_0000)
    gdb = Client(port)
    gdb.ask(b"qSupported")
    gdb.ask(b"?")
    # Before paging, the alias is not mapped; physical addresses are virtual ones.
    assert gdb.ask(b"m%x,8" % alias) == b"E14"
    assert gdb.ask(b"Z0,%x,4" % paged) == b"OK"
    assert gdb.ask(b"c").startswith(b"T05")
    assert gdb.ask(b"p20") == paged.to_bytes(8, "little").hex().encode()
    assert gdb.ask(b"m%x,8" % alias) == (0x1122334455667788).to_bytes(8, "little").hex().encode()
    assert gdb.ask(b"M%x,2:abcd" % alias) == b"OK"
    assert gdb.ask(b"m%x,2" % marker) == b"abcd"
    # monitor xp reads physical memory (hex-encoded console output, then OK).
    out = gdb.ask(b"qRcmd," + f"xp {marker:#x} 8".encode().hex().encode())
    assert out.startswith(b"O")
    assert b"ab cd 66 55 44 33 22 11" in bytes.fromhex(out[1:].decode())
    assert gdb.reply() == b"OK"
    assert gdb.ask(b"qRcmd," + b"nonsense".hex().encode()).startswith(b"O")
    assert gdb.reply() == b"OK"
    gdb.ask(b"z0,%x,4" % paged)
    # A watchpoint on the virtual alias catches the store through it; the stop is
    # right after the store, and the stop reply names the virtual address.
    assert gdb.ask(b"Z2,%x,8" % alias) == b"OK"
    assert gdb.ask(b"c") == b"T05watch:%x;thread:1;" % alias
    assert gdb.ask(b"p20") == symbol(elf, "stored").to_bytes(8, "little").hex().encode()
    assert gdb.ask(b"m%x,8" % alias) == (99).to_bytes(8, "little").hex().encode()
    assert gdb.ask(b"z2,%x,8" % alias) == b"OK"
    gdb.send_raw(frame(b"c"))
    assert gdb.reply() == b"W00"                  # the guest powered off
    assert proc.wait(timeout=20) == 0
    gdb.close()


def test_interrupt_stops_a_running_guest_and_kill_ends_it(vmsim_gdb, build) -> None:
    spin = symbol(build(SPIN), "spin")
    proc, port = vmsim_gdb(SPIN, wait=False)
    gdb = Client(port)
    gdb.ask(b"qSupported")
    assert gdb.ask(b"?").startswith(b"T05")       # attaching stopped the guest
    counts = []
    for _ in range(2):
        gdb.send_raw(frame(b"vCont;c"))
        assert gdb._next() == "ack"
        gdb.send_raw(b"\x03")
        assert gdb.reply().startswith(b"T02")
        counts.append(int.from_bytes(bytes.fromhex(gdb.ask(b"p9").decode()), "little"))
    assert counts[1] >= counts[0]
    # A breakpoint on the loop, then one instruction at a time: s1 grows by one every
    # two steps, and pc comes back to the loop.
    at_spin = spin.to_bytes(8, "little").hex().encode()
    assert gdb.ask(b"Z0,%x,2" % spin) == b"OK"
    assert gdb.ask(b"vCont;c").startswith(b"T05") and gdb.ask(b"p20") == at_spin
    assert gdb.ask(b"z0,%x,2" % spin) == b"OK"
    before = int.from_bytes(bytes.fromhex(gdb.ask(b"p9").decode()), "little")
    steps = [gdb.ask(b"vCont;s:1") for _ in range(4)]
    assert all(s.startswith(b"T05") for s in steps)
    s1 = int.from_bytes(bytes.fromhex(gdb.ask(b"p9").decode()), "little")
    assert s1 == before + 2 and gdb.ask(b"p20") == at_spin
    gdb.send_raw(frame(b"vKill;1"))
    assert proc.wait(timeout=20) == 0
    gdb.close()


def test_detach_lets_the_guest_run_to_its_end(vmsim_gdb, build) -> None:
    elf = build(COUNTER)
    proc, port = vmsim_gdb(COUNTER)
    gdb = Client(port)
    gdb.ask(b"qSupported")
    gdb.ask(b"?")
    gdb.ask(b"Z0,%x,2" % symbol(elf, "done"))       # removed by the detach
    assert gdb.ask(b"D") == b"OK"
    assert proc.wait(timeout=20) == 0
    gdb.close()


def run_gdb(elf: Path, port: int, commands: list[str]) -> str:
    args = ["gdb-multiarch", "-batch", "-nx", str(elf),
            "-ex", f"target remote localhost:{port}"]
    for command in commands:
        args += ["-ex", command]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def test_gdb_break_step_registers_csrs_memory_and_watchpoint(vmsim_gdb, build) -> None:
    require_tools(GDB)
    elf = build(COUNTER)
    proc, port = vmsim_gdb(COUNTER)
    out = run_gdb(elf, port, [
        "watch *(long *)&counter", "continue", "continue", "print *(long *)&counter",
        "delete", "break *done", "continue", "print $s1", "print/x $pc",
        "stepi", "print/x $pc", "print $priv", "print/x $satp", "print/x $sstatus",
        "print/x $misa", "print/x $mhartid", "set var $s1 = 77", "print $s1",
        "set var *(long *)&counter = 1234", "x/1gd &counter",
        "monitor help", "continue"])
    assert "Hardware watchpoint 1: *(long *)&counter" in out
    assert "Old value = 0\nNew value = 1" in out and "Old value = 1\nNew value = 2" in out
    done = symbol(elf, "done")
    assert f"Breakpoint 2, {done:#018x} in done ()" in out
    assert "$2 = 5" in out and f"$3 = {done:#x}" in out
    assert re.search(r"\$4 = 0x8020[0-9a-f]{4}", out)
    assert "$5 = prv:1 [Supervisor]" in out or "$5 = 1" in out
    assert "$6 = 0x0" in out and re.search(r"\$8 = 0x8000000000\w+", out)
    assert "$9 = 0x0" in out and "$10 = 77" in out
    assert re.search(r"0x[0-9a-f]+( <counter>)?:\s+1234", out)
    assert "monitor commands:" in out
    assert "exited normally" in out
    assert proc.wait(timeout=20) == 0


def test_gdb_ctrl_c_stops_a_spinning_guest(vmsim_gdb, build) -> None:
    """SIGINT to gdb (what Ctrl-C at its prompt sends) becomes 0x03 on the wire; the
    signal is sent once gdb's remote log shows the continue packet went out."""
    require_tools(GDB)
    elf = build(SPIN)
    proc, port = vmsim_gdb(SPIN, wait=False)
    gdb = subprocess.Popen(
        ["gdb-multiarch", "-batch", "-nx", str(elf), "-ex", f"target remote localhost:{port}",
         "-ex", "set debug remote 1", "-ex", "continue", "-ex", "set debug remote 0",
         "-ex", "print $s1 > 0", "-ex", "kill"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    for line in gdb.stdout:
        lines.append(line)
        if "Sending packet: $vCont;c" in line:
            os.kill(gdb.pid, signal.SIGINT)
    assert gdb.wait(timeout=60) == 0
    out = "".join(lines)
    assert "Program received signal SIGINT" in out and "$1 = 1" in out, out[-3000:]
    assert proc.wait(timeout=20) == 0


def test_a_step_that_powers_the_guest_off_reports_its_exit(vmsim_gdb, build) -> None:
    elf = build(COUNTER)
    proc, port = vmsim_gdb(COUNTER)
    gdb = Client(port)
    gdb.ask(b"qSupported")
    gdb.ask(b"?")
    gdb.ask(b"Z0,%x,2" % symbol(elf, "done"))
    assert gdb.ask(b"c").startswith(b"T05")
    replies = []
    while not replies or replies[-1].startswith(b"T05"):
        assert len(replies) < 10, replies
        replies.append(gdb.ask(b"s"))
    assert replies[-1] == b"W00"
    assert proc.wait(timeout=20) == 0
    gdb.close()


@pytest.mark.parametrize("args, message", [
    (["-S"], "-S/--wait needs a debugger port"),
    (["--gdb", "70000"], "port 70000 is out of range"),
])
def test_bad_gdb_options_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(VMSIM + ["run", "--kernel", str(tmp_path / "none")] + args,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("vmsim: error:") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_port_in_use_is_one_line(vmsim_gdb, build) -> None:
    _proc, port = vmsim_gdb(COUNTER)
    result = subprocess.run(VMSIM + ["run", "--kernel", str(build(COUNTER)), "--mem", "16M",
                                     "--no-crypto", "--gdb", str(port)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"vmsim: error: cannot serve GDB on localhost:{port}: Address already in use\n"


def test_monitor_fault_adds_lists_and_clears_rules_on_a_running_machine() -> None:
    """`monitor fault RULE` arms a rule on the bare-metal crypto driver's device: its
    second AES request gets BADMSG, so it fails that step (exit 8) where it would pass
    every one; `monitor fault` lists the rules (the --fault one too) with how often
    each fired, and `monitor fault clear` drops them."""
    require_tools(GDB, *baremetal.REQUIREMENTS)
    elf = baremetal.ensure_example({})
    proc, port = start_vmsim_with_stub(["run", "--kernel", str(elf), "--mem", "16M",
                                        "--crypto-workers", "0", "--fault", "queue=9,status=ERR",
                                        "--gdb", "0", "--wait"])
    try:
        out = run_gdb(elf, port, [
            "monitor fault", "monitor fault color=red",
            "monitor fault op=CIPHER_ENCRYPT, every=2, status=BADMSG",
            "break board_exit", "continue", "monitor fault", "monitor fault clear",
            "monitor fault", "continue"])
        assert "0: queue=9,status=ERR  (matched 0, fired 0)" in out
        assert "fault: unknown key 'color'" in out
        assert "fault rule added: op=CIPHER_ENCRYPT,every=2,status=BADMSG" in out
        assert "1: op=CIPHER_ENCRYPT,every=2,status=BADMSG  (matched 2, fired 1)" in out
        assert "cleared 2 fault rules" in out and "no fault rules" in out
        stdout = proc.stdout.read()
        assert "test=aes-cbc round=0 result=pass" in stdout
        assert "test=aes-cbc round=1 result=fail" in stdout
        assert proc.wait(timeout=30) == 8                # EXIT_AES_REQUEST
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
