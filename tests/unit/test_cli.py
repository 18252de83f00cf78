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


# -- -M, as in QEMU -----------------------------------------------------------------------

def _image(tmp_path, magic: bytes):
    """A file with just the 64-byte header of a Linux Image whose magic is `magic`."""
    header = bytearray(64)
    header[0x38:0x3C] = magic
    path = tmp_path / f"Image-{magic[:3].decode()}"
    path.write_bytes(bytes(header))
    return path


def test_machine_help_lists_the_boards_and_exits_0(capsys) -> None:
    assert main(["run", "-M", "help"]) == 0
    captured = capsys.readouterr()
    names = [line.split()[0] for line in captured.out.splitlines()[1:]]
    assert names == ["virt", "riscv64-virt", "arm64-virt"] and captured.err == ""


@pytest.mark.parametrize("argv, words", [
    (["run", "-M", "vexpress-a9"], "-M vexpress-a9: no such machine (there are virt, "
                                   "riscv64-virt, arm64-virt; -M help lists them)"),
    (["run", "-M", "virt,gic-version=3"], "-M virt,gic-version=3: no such machine"),
    (["run", "-M", "arm64-virt", "--arch", "riscv64"],
     "-M arm64-virt runs arm64 kernels, but --arch riscv64 was given"),
    (["run", "-M"], "-M/--machine: expected one argument"),
])
def test_a_bad_machine_is_one_error_line(capsys, argv, words) -> None:
    assert main(argv) == 2
    assert words in one_error_line(capsys)


@pytest.mark.parametrize("board, magic, arch", [
    ("riscv64-virt", b"ARM\x64", "arm64"), ("arm64-virt", b"RSC\x05", "riscv64"),
])
def test_a_kernel_of_the_other_arch_than_the_forced_board_is_one_error_line(
        capsys, tmp_path, board, magic, arch) -> None:
    kernel = _image(tmp_path, magic)
    assert main(["run", "-M", board, "--kernel", str(kernel)]) == 2
    line = one_error_line(capsys)
    assert line == (f"vmsim: error: --kernel {kernel} is for {arch}, but -M {board} runs "
                    f"{board.split('-')[0]} kernels (-M virt picks the board from the kernel)")


@pytest.mark.parametrize("machine, kernel_magic, asked, expected", [
    (None, None, None, "riscv64"), ("virt", None, None, "riscv64"),
    ("virt", None, "arm64", "arm64"), ("arm64-virt", None, None, "arm64"),
    ("riscv64-virt", None, "riscv64", "riscv64"),
    ("virt", b"ARM\x64", None, "arm64"), ("virt", b"RSC\x05", None, "riscv64"),
    ("arm64-virt", b"ARM\x64", "arm64", "arm64"), ("riscv64-virt", b"RSC\x05", None, "riscv64"),
])
def test_the_machine_option_picks_the_arch_to_boot(tmp_path, machine, kernel_magic, asked,
                                                   expected) -> None:
    """`-M virt` leaves the choice to the kernel (or --arch, for the default guest); a
    board name forces its own arch, also for the default guest."""
    from vmsim.cli.main import _kernel_arch, _machine_option

    kernel = None if kernel_magic is None else _image(tmp_path, kernel_magic)
    assert _kernel_arch(kernel, asked, _machine_option(machine)) == expected
