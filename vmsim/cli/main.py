"""The `vmsim` command line.

    vmsim run [--kernel IMAGE] [-M virt|riscv64-virt|arm64-virt|help] [--arch riscv64|arm64]
              [--initrd CPIO] [--append CMDLINE] [--mem 256M] [--dtb-out FILE]
              [-device MODEL[,opt=value...]]... [-d CATEGORY,...] [-D LOGFILE]
              [--crypto-queues N] [--crypto-workers N] [--crypto-not-ready] [--no-crypto]
    vmsim demo [--arch riscv64|arm64] [--crypto-queues N] [--console]
    vmsim guest build | path [--arch riscv64|arm64] [--distro]
    vmsim --version

Every user error ends as one line `vmsim: error: ...` on stderr and a non-zero status:
argparse's usage dumps are replaced, and VmsimError is printed without a traceback.
SIGINT, SIGTERM and SIGHUP end a command with 128 + the signal's number, after it has
wound down (terminal restored, worker processes gone); a stdout whose reader went away
ends it quietly with 141, as SIGPIPE would end another Unix tool.

Devices: with no -device, the machine gets one virtio-crypto device, which the
`--crypto-*` shorthands configure (`--no-crypto` leaves it out). With -device, the
machine gets exactly the devices listed, in slot order, and the shorthands are refused.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NoReturn, Sequence

from vmsim import __version__
from vmsim.cli.text_option import text_option
from vmsim.errors import ConsoleOutputError, VmsimError

if TYPE_CHECKING:
    from vmsim.boards import Board
    from vmsim.core.machine import Machine
    from vmsim.gdb.stub import GdbStub

USAGE_ERROR = 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
DEFAULT_MEMORY = "256M"
MIN_MEMORY = 4 << 20
MAX_MEMORY = 16 << 30
PAGE = 4096
_SIZE = re.compile(r"(\d+)([KMG]?)(I?B)?", re.IGNORECASE)
_SHIFTS = {"": 0, "K": 10, "M": 20, "G": 30}


class UsageError(VmsimError):
    exit_code = USAGE_ERROR


class HelpShown(Exception):
    """A help request (-device help, -d help): print the text and exit 0."""


class SignalExit(BaseException):
    """SIGTERM or SIGHUP outside the run loop: unwind like KeyboardInterrupt does, so
    every `finally` (the terminal, the worker pool) still runs; exit 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signal_exit(signum: int, _frame: object) -> None:
    raise SignalExit(signum)


@contextmanager
def _signals_unwind() -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP raise SignalExit instead of killing the
    process where it stands. The run loop routes them itself while the CPU runs
    (vmsim.core.console.quit_on_signals). An ignored signal (nohup) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_signal_exit)
                for signum in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports errors as one line instead of a usage dump."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)     # -dev must not mean -device
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_memory_size(text: str) -> int:
    """'256M', '1G', '65536K' or plain bytes -> bytes; page aligned, 4 MiB..16 GiB."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"bad memory size {text!r} (use a number with K, M or G, like 256M)")
    size = int(match.group(1)) << _SHIFTS[match.group(2).upper()]
    if not MIN_MEMORY <= size <= MAX_MEMORY:
        raise argparse.ArgumentTypeError(
            f"memory size {text!r} is out of range (4M to 16G)")
    if size % PAGE:
        raise argparse.ArgumentTypeError(f"memory size {text!r} is not a multiple of 4K")
    return size


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-device", "--device", action="append", default=[], metavar="MODEL[,opt=v]",
                        type=text_option("-device"),
                        help="add a device in the next virtio-mmio slot (-device help lists "
                             "the models, -device MODEL,help their options)")
    parser.add_argument("-d", dest="log_items", metavar="ITEM,...", type=text_option("-d"),
                        help="log these: guest_errors, unimp, trace:PATTERN (-d help)")
    parser.add_argument("-D", dest="log_file", type=Path, metavar="LOGFILE",
                        help="write the log to LOGFILE instead of stderr")
    group = parser.add_argument_group("virtio-crypto shorthands (without -device)")
    group.add_argument("--crypto-queues", type=int, default=None, metavar="N",
                       help="data queues the device offers (max_dataqueues; default 1)")
    group.add_argument("--crypto-workers", type=int, default=None, metavar="N",
                       help="worker processes for crypto work (default: one per CPU; "
                            "0 runs everything on the CPU thread but costly public-key "
                            "work, which gets one worker)")
    group.add_argument("--crypto-not-ready", action="store_true",
                       help="withhold HW_READY, so the driver registers no algorithm")
    group.add_argument("--no-crypto", action="store_true", help="omit the device")


_SHORTHANDS = ("crypto_queues", "crypto_workers", "crypto_not_ready", "no_crypto")


def device_factories(args: argparse.Namespace) -> list:
    """The virtio slot factories the command line asks for (see the module docstring)."""
    from vmsim.devices.model import OptionError

    try:
        if args.device:
            return _device_option_factories(args)
        if args.no_crypto:
            return []
        from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO

        given = {"queues": args.crypto_queues, "workers": args.crypto_workers,
                 "ready": not args.crypto_not_ready}
        return [CRYPTO.factory(CRYPTO.resolve({k: v for k, v in given.items() if v is not None}))]
    except OptionError as error:
        raise UsageError(str(error)) from None


def _device_option_factories(args: argparse.Namespace) -> list:
    """-device options. The model registry (entry points, importlib.metadata) is loaded
    only here: a plain `vmsim run` starts without it."""
    from vmsim.cli.device_option import DeviceHelp, parse_device

    shorthands = [f"--{name.replace('_', '-')}" for name in _SHORTHANDS
                  if getattr(args, name) not in (None, False)]
    if shorthands:
        raise UsageError(f"{shorthands[0]} is a shorthand for when no -device is given; "
                         "use -device virtio-crypto,... instead")
    try:
        requests = [parse_device(text) for text in args.device]
    except DeviceHelp as shown:
        raise HelpShown(str(shown)) from None
    return [r.model.factory(r.model.resolve(r.given)) for r in requests]


def configure_logging(args: argparse.Namespace) -> None:
    """-d and -D, checked before anything runs."""
    from vmsim import log

    if args.log_items is not None and args.log_items.strip() in ("help", "?"):
        raise HelpShown("Log items (-d ITEM,...; -D FILE writes them to FILE):\n" + "\n".join(
            f"  {name:<14} {text}" for name, text in log.CATEGORIES.items()))
    try:
        categories, patterns = log.parse_categories(args.log_items or "")
        log.configure(categories, patterns, args.log_file)
    except log.LogSetupError as error:
        raise UsageError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmsim", description="A small full-system emulator: riscv64 and arm64 virt boards with virtio-crypto.")
    parser.add_argument("--version", action="store_true", help="print version and engine")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="boot a kernel (the default guest if none given)")
    run.add_argument("--kernel", type=Path, help="Linux Image (riscv64 or arm64, plain or "
                     "gzipped) or ELF file to boot; its architecture picks the board")
    run.add_argument("--arch", default=None, metavar="ARCH", choices=("riscv64", "arm64"),
                     help="with no --kernel: boot the default guest of ARCH, riscv64 "
                     "(default) or arm64")
    run.add_argument("-M", "--machine", default=None, metavar="BOARD", type=text_option("-M"),
                     help="the board, as in QEMU: virt (the default: the kernel's architecture, "
                     "or --arch, picks it), riscv64-virt or arm64-virt; -M help lists them")
    run.add_argument("--initrd", type=Path, help="initramfs (cpio, optionally compressed)")
    run.add_argument("--append", default=None, type=text_option("--append"), help="kernel command line "
                     "(default: console=ttyS0, or console=ttyAMA0 on arm64)")
    run.add_argument("--mem", type=parse_memory_size, default=DEFAULT_MEMORY,
                     help="RAM size, e.g. 256M (default) or 1G")
    run.add_argument("--dtb-out", type=Path, help="also write the generated device tree here")
    debug = run.add_argument_group("debugging with GDB")
    debug.add_argument("--gdb", type=int, default=None, metavar="PORT",
                       help="serve the GDB remote protocol on localhost:PORT (0: any free port)")
    debug.add_argument("--wait", action="store_true",
                       help="with --gdb: wait for GDB before the first instruction")
    debug.add_argument("-s", dest="gdb_default", action="store_true",
                       help="shorthand for --gdb 1234, as in QEMU")
    debug.add_argument("-S", dest="wait", action="store_true",
                       help="wait for GDB before the first instruction, as in QEMU")
    run.add_argument("--strict", action="store_true", help="check the guest's virtio drivers "
                     "against the spec's driver rules; report each broken rule once "
                     "(docs/strict.md)")
    _add_device_options(run)
    from vmsim.cli.fault_option import add_fault_options
    from vmsim.cli.observe import add_observer_options
    from vmsim.cli.trace_cmd import add_trace_commands

    add_observer_options(run)
    add_fault_options(run)
    add_trace_commands(commands)

    demo = commands.add_parser("demo", help="boot the default guest with the crypto device "
                               "and show what the guest and the device did")
    demo.add_argument("--crypto-queues", type=int, default=1, metavar="N",
                      help="data queues the device offers (default 1)")
    demo.add_argument("--arch", default="riscv64", choices=("riscv64", "arm64"),
                      help="the board and its default guest: riscv64 (default) or arm64")
    demo.add_argument("--console", action="store_true", help="also show the guest console")
    demo.add_argument("--tui", action="store_true", help="watch it in the TUI (the summary "
                      "follows when you quit it)")

    guest = commands.add_parser("guest", help="the default Linux guest")
    guest_commands = guest.add_subparsers(dest="guest_command", metavar="ACTION")
    for action, text in (("build", "build the default guest (cached)"),
                         ("path", "print the default guest's kernel and initramfs")):
        command = guest_commands.add_parser(action, help=text)
        command.add_argument("--arch", default="riscv64", metavar="ARCH",
                             help="riscv64 (default) or arm64")
        command.add_argument("--distro", action="store_true",
                             help="the distribution's own kernel (Debian's, arm64) with an "
                             "initramfs that loads its modules, instead of vmsim's build")
    return parser


def _print(text: str) -> None:
    """print() for a command's answer: a full disk or a vanished terminal is one error
    line (a reader that went away is EPIPE, which main() turns into status 141)."""
    try:
        print(text)
    except BrokenPipeError:
        raise
    except OSError as error:
        raise ConsoleOutputError(f"cannot write to standard output: {error.strerror or error}") from None


def _print_version() -> int:
    from vmsim.core.engine import engine_description

    _print(f"vmsim {__version__}")
    _print(engine_description())
    return 0


def _guest(args: argparse.Namespace) -> int:
    from vmsim.build import guest

    if args.guest_command not in ("build", "path"):
        raise UsageError("guest needs an action: build or path")
    build = args.guest_command == "build"
    if args.distro:
        from vmsim.build import distro

        paths = (distro.ensure_distro_guest(arch=args.arch) if build
                 else distro.distro_guest_paths(args.arch))
    else:
        paths = (guest.ensure_default_guest(arch=args.arch) if build
                 else guest.guest_paths(args.arch))
    _print(f"kernel {paths.kernel}")
    _print(f"initrd {paths.initrd}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from vmsim import log
    from vmsim.build.unicorn import ensure_native_library
    from vmsim.cli.fault_option import fault_plan, with_faults
    from vmsim.cli.terminal import TerminalConsole
    from vmsim.cli.observe import Observers
    from vmsim.core.console import write_stdout
    from vmsim.boards import default_append, for_arch
    from vmsim.core.machine import MachineConfig, create_machine

    _check_standard_fds()
    forced_board = _machine_option(args.machine)
    gdb_port = _gdb_port(args)
    factories = with_faults(device_factories(args), fault_plan(args))
    configure_logging(args)
    ensure_native_library()
    kernel, initrd = args.kernel, args.initrd
    arch = _kernel_arch(kernel, args.arch, forced_board)
    if kernel is None:
        from vmsim.build.guest import ensure_default_guest

        paths = ensure_default_guest(arch=arch)
        kernel, initrd = paths.kernel, initrd or paths.initrd
    board = for_arch(arch)
    config = MachineConfig(kernel=kernel, initrd=initrd, memory=args.mem, board=board,
                           append=default_append(board) if args.append is None else args.append,
                           dtb_out=args.dtb_out, virtio=factories, strict=args.strict)
    observers = Observers.from_args(args)
    config.trace = observers.sink(log.trace_sink if log.trace_enabled() else None)
    config.virtio = observers.devices(config.virtio)
    try:
        with create_machine(config, output=observers.output(write_stdout)) as machine:
            machine.load()
            observers.attach(machine)
            stub = None if gdb_port is None else _start_gdb_stub(machine, gdb_port, args.wait)
            try:
                if observers.tui:
                    return observers.run_tui_process(machine)
                with TerminalConsole(machine.push_input, lambda: machine.request_quit(0)):
                    return machine.run()
            finally:
                if stub is not None:
                    stub.close()
    finally:
        observers.close()
        log.close()


# `-M virt` is QEMU's name; vmsim's two virt boards are told apart by the kernel.
GENERIC_MACHINE = "virt"


def _machine_option(machine: str | None) -> Board | None:
    """-M: the board it forces, or None when the kernel's architecture (or --arch)
    picks it (no -M, or `-M virt`). `-M help` lists the boards."""
    if machine is None:
        return None
    from vmsim.boards import BOARDS

    name = machine.strip()
    boards = {board.name: board for board in BOARDS.values()}
    if name in ("help", "?"):
        rows = [(GENERIC_MACHINE, "the virt board of the kernel's architecture (default)")]
        rows += [(board.name, board.summary)
                 for board in boards.values()]
        raise HelpShown("Supported machines (-M):\n" + "\n".join(
            f"  {board:<14} {text}" for board, text in rows))
    if name == GENERIC_MACHINE:
        return None
    if name not in boards:
        raise UsageError(f"-M {machine}: no such machine (there are "
                         f"{', '.join([GENERIC_MACHINE, *boards])}; -M help lists them)")
    return boards[name]


def _kernel_arch(kernel: Path | None, asked: str | None, board: Board | None = None) -> str:
    """The architecture to boot: the kernel file's own, or --arch (or the board -M
    names) for the default guest. A board -M names runs only kernels of its arch."""
    if board is not None and asked is not None and asked != board.arch:
        raise UsageError(f"-M {board.name} runs {board.arch} kernels, but --arch {asked} was given")
    asked = asked or (board.arch if board is not None else None)
    if kernel is None:
        return asked or "riscv64"
    from vmsim.core.kernel_format import detect_arch

    try:
        arch = detect_arch(kernel)
    except VmsimError:
        # Not a kernel either board knows: the loader of the board asked for (riscv64
        # by default) says what is wrong with the file (its kind, its size, its format).
        return asked or "riscv64"
    if board is not None and arch != board.arch:
        raise UsageError(f"--kernel {kernel} is for {arch}, but -M {board.name} runs "
                         f"{board.arch} kernels (-M virt picks the board from the kernel)")
    if asked is not None and asked != arch:
        raise UsageError(f"--kernel {kernel} is a {arch} kernel, but --arch {asked} was given")
    return arch


def _gdb_port(args: argparse.Namespace) -> int | None:
    """--gdb PORT, or -s (1234, as in QEMU); checked before anything is built."""
    port = 1234 if args.gdb_default and args.gdb is None else args.gdb
    if port is None:
        if args.wait:
            raise UsageError("-S/--wait needs a debugger port: add -s or --gdb PORT")
        return None
    if not 0 <= port <= 65535:
        raise UsageError(f"--gdb: port {port} is out of range (0 to 65535)")
    return port


def _start_gdb_stub(machine: Machine, port: int, wait: bool) -> GdbStub:
    """The stub (vmsim.gdb) on localhost; one stderr line names its port."""
    from vmsim.gdb.stub import GdbStub

    try:
        stub = GdbStub(machine, port, wait=wait)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise VmsimError(f"cannot serve GDB on localhost:{port}: {reason}") from None
    _say(f"vmsim: gdb stub on localhost:{stub.port}" + (" (waiting for gdb)" if wait else ""))
    return stub


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vmsim.build.unicorn import ensure_native_library
    from vmsim.cli.demo import run_demo
    from vmsim.devices.model import OptionError
    from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO

    try:
        CRYPTO.resolve({"queues": args.crypto_queues})       # checks the number first
    except OptionError as error:
        raise UsageError(f"--crypto-queues: {error}") from None
    ensure_native_library()
    return run_demo(Console(), queues=args.crypto_queues, show_console=args.console,
                    tui=args.tui, arch=args.arch)


def _check_standard_fds() -> None:
    """A closed fd 0, 1 or 2 would be handed out by the next os.pipe(), and the guest's
    console would then go down a worker's task pipe. Closed stdin and stderr become
    /dev/null; stdout carries the console, so a closed one is an error."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            if fd == 1:
                raise VmsimError("standard output is closed, and the guest's console is "
                                 "written there (redirect it to /dev/null to discard it)")
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _command(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.version:
            return _print_version()
        if args.command == "run":
            return _run(args)
        if args.command == "guest":
            return _guest(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "trace":
            from vmsim.cli.trace_cmd import run_trace_command

            return run_trace_command(args)
        raise UsageError("missing command (run, demo, guest, or --version)")
    except HelpShown as shown:
        _print(str(shown))
        return 0


def _say(line: str) -> None:
    """One line to stderr, if there is still a stderr to take it (a terminal that went
    away takes nothing, and that must not turn into a traceback)."""
    if sys.stderr is None:
        return
    try:                                     # a path from argv may hold bytes that are not
        line = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:               # UTF-8: show them as \xff, not \udcff
        pass
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _discard_stdout() -> None:
    """After a failed write: point fd 1 at /dev/null, so that the interpreter's last
    flush of stdout at exit cannot fail again (Python's own advice for SIGPIPE)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (AttributeError, OSError, ValueError):
        pass


def _flush_stdout(status: int) -> int:
    """Flush what print() buffered now, where a failure can still become a status,
    rather than in the interpreter's flush at exit, which prints a traceback."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as error:
        _discard_stdout()
        _say(f"vmsim: error: cannot write to standard output: {error.strerror or error}")
        return 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vmsim` console script; returns the exit status."""
    try:
        with _signals_unwind():
            return _flush_stdout(_command(argv))
    except BrokenPipeError:                  # print() met a reader that went away
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except VmsimError as error:
        _say(f"vmsim: error: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except SignalExit as exit_:
        return 128 + exit_.signum


if __name__ == "__main__":
    sys.exit(main())
