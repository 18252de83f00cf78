"""`vmsim run` end to end on bare-metal programs: exit status, device tree, errors."""
from __future__ import annotations

from vmsim.cli.main import main


def test_run_passes_the_guest_exit_code_through(build, capsys, tmp_path) -> None:
    kernel = build("putc 'o'\nputc 'k'\nexit 5\n")
    dtb = tmp_path / "board.dtb"
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", "--dtb-out", str(dtb),
                 "--append", "console=ttyS0 quiet"]) == 5
    assert capsys.readouterr().out == "ok"
    blob = dtb.read_bytes()
    assert blob[:4] == bytes.fromhex("d00dfeed")
    assert b"console=ttyS0 quiet" in blob


def test_initrd_too_large_is_one_line(build, capsys, tmp_path) -> None:
    kernel = build("exit 0\n")
    initrd = tmp_path / "big.cpio"
    initrd.write_bytes(b"\0" * (5 << 20))
    assert main(["run", "--kernel", str(kernel), "--initrd", str(initrd), "--mem", "4M"]) != 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("vmsim: error: ") and "initrd" in err[0]


def test_guest_death_is_one_line_with_status_3(build, capsys) -> None:
    kernel = build("csrw stvec, zero\nli t0, 0x4000\njr t0\n")
    assert main(["run", "--kernel", str(kernel), "--mem", "16M"]) == 3
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "pc 0x4000" in err[0]


def test_a_run_prints_nothing_but_the_guest(build) -> None:
    """The crypto device's worker processes share the terminal: whatever they print
    (warnings included) would land between the guest's lines."""
    import subprocess
    import sys
    from pathlib import Path

    kernel = build("putc 'o'\nputc 'k'\nexit 0\n")
    vmsim = Path(sys.executable).parent / "vmsim"
    done = subprocess.run([str(vmsim), "run", "--kernel", str(kernel), "--mem", "16M"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok", "")
