"""The command line: one-line errors, sizes, version, and the console's escape keys."""
from __future__ import annotations

import pytest

from vmsim.cli.main import main, parse_memory_size
from vmsim.cli.terminal import TerminalConsole


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("vmsim: error: ")
    assert "Traceback" not in captured.err and "usage:" not in captured.err
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["run", "--mem", "12Q"], "12Q"),
    (["run", "--mem", "0"], "out of range"),
    (["run", "--mem", "10000001"], "multiple of 4K"),
    (["run", "--frobnicate"], "--frobnicate"),
    (["run", "--kernel", "/nonexistent/Image"], "/nonexistent/Image"),
    (["fly"], "fly"),
    ([], "missing command"),
    (["guest"], "build or path"),
    (["guest", "path", "--arch", "mips"], "choose from riscv64, arm64"),
    (["guest", "build", "--distro"], "no distribution kernel for riscv64"),
])
def test_bad_arguments_give_one_line_and_non_zero_status(capsys, argv, words) -> None:
    assert main(argv) != 0
    assert words in one_error_line(capsys)


def test_memory_sizes() -> None:
    assert parse_memory_size("256M") == 256 << 20
    assert parse_memory_size("1g") == 1 << 30
    assert parse_memory_size("8192K") == 8 << 20
    assert parse_memory_size("64MiB") == 64 << 20
    assert parse_memory_size(str(16 << 20)) == 16 << 20


def test_version_names_the_engine(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("vmsim 0.")
    assert "unicorn" in out[1]


def test_ctrl_a_x_quits_and_ctrl_a_twice_sends_one(tmp_path) -> None:
    quits: list[bool] = []
    console = TerminalConsole(lambda data: None, lambda: quits.append(True), stdin_fd=0)
    assert console.filter_keys(b"ab\x01\x01c") == b"ab\x01c"
    assert not quits
    assert console.filter_keys(b"ls\x01") == b"ls"       # escape pending across reads
    assert console.filter_keys(b"xyz") == b"yz"
    assert quits == [True]


@pytest.mark.parametrize("argv, kernel_dir", [
    (["guest", "path"], "kernel-"), (["guest", "path", "--arch", "riscv64"], "kernel-"),
    (["guest", "path", "--arch", "arm64"], "kernel-arm64-"),
])
def test_guest_path_names_the_kernel_and_initramfs_of_the_arch(capsys, argv, kernel_dir):
    from vmsim.build.guest import guest_paths

    assert main(argv) == 0
    kernel, initrd = capsys.readouterr().out.splitlines()
    paths = guest_paths(argv[3] if len(argv) > 2 else "riscv64")
    assert (kernel, initrd) == (f"kernel {paths.kernel}", f"initrd {paths.initrd}")
    assert paths.kernel.parent.name.startswith(kernel_dir)
