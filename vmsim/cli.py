"""The `vmsim` command line.

    vmsim run [--kernel IMAGE] [--initrd CPIO] [--append CMDLINE] [--mem 256M] [--dtb-out FILE]
              [--crypto-queues N] [--crypto-workers N] [--crypto-not-ready] [--no-crypto]
    vmsim demo [--crypto-queues N] [--console]
    vmsim guest build | path
    vmsim --version

Every user error ends as one line `vmsim: error: ...` on stderr and a non-zero status:
argparse's usage dumps are replaced, and VmsimError is printed without a traceback.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from vmsim import __version__
from vmsim.errors import VmsimError

USAGE_ERROR = 2
DEFAULT_MEMORY = "256M"
MIN_MEMORY = 4 << 20
MAX_MEMORY = 16 << 30
PAGE = 4096
_SIZE = re.compile(r"(\d+)([KMG]?)(I?B)?", re.IGNORECASE)
_SHIFTS = {"": 0, "K": 10, "M": 20, "G": 30}


class UsageError(VmsimError):
    exit_code = USAGE_ERROR


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports errors as one line instead of a usage dump."""

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


def _add_crypto_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("virtio-crypto device")
    group.add_argument("--crypto-queues", type=int, default=1, metavar="N",
                       help="data queues the device offers (max_dataqueues; default 1)")
    group.add_argument("--crypto-workers", type=int, default=None, metavar="N",
                       help="worker processes for crypto work (default: one per CPU; "
                            "0 runs everything on the CPU thread)")
    group.add_argument("--crypto-not-ready", action="store_true",
                       help="withhold HW_READY, so the driver registers no algorithm")
    group.add_argument("--no-crypto", action="store_true", help="omit the device")


def crypto_factories(args: argparse.Namespace) -> list:
    """The virtio slot factories that the crypto options ask for."""
    from vmsim.slots import CryptoOptions, crypto_slot

    if args.no_crypto:
        return []
    options = CryptoOptions(queues=args.crypto_queues, workers=args.crypto_workers,
                            hw_ready=not args.crypto_not_ready)
    return [crypto_slot(options)]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmsim", description="A small riscv64 full-system emulator.")
    parser.add_argument("--version", action="store_true", help="print version and engine")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="boot a kernel (the default guest if none given)")
    run.add_argument("--kernel", type=Path, help="Linux Image or RISC-V ELF to boot")
    run.add_argument("--initrd", type=Path, help="initramfs (cpio, optionally compressed)")
    run.add_argument("--append", default=None, help="kernel command line "
                     "(default: console=ttyS0)")
    run.add_argument("--mem", type=parse_memory_size, default=DEFAULT_MEMORY,
                     help="RAM size, e.g. 256M (default) or 1G")
    run.add_argument("--dtb-out", type=Path, help="also write the generated device tree here")
    _add_crypto_options(run)

    demo = commands.add_parser("demo", help="boot the default guest with the crypto device "
                               "and show what the guest and the device did")
    demo.add_argument("--crypto-queues", type=int, default=1, metavar="N",
                      help="data queues the device offers (default 1)")
    demo.add_argument("--console", action="store_true", help="also show the guest console")

    guest = commands.add_parser("guest", help="the default Linux guest")
    guest_commands = guest.add_subparsers(dest="guest_command", metavar="ACTION")
    guest_commands.add_parser("build", help="build the default guest (cached)")
    guest_commands.add_parser("path", help="print the default guest's kernel and initramfs")
    return parser


def _print_version() -> int:
    from vmsim.engine import engine_description

    print(f"vmsim {__version__}")
    print(engine_description())
    return 0


def _guest(args: argparse.Namespace) -> int:
    from vmsim import guest

    if args.guest_command == "build":
        paths = guest.ensure_default_guest()
    elif args.guest_command == "path":
        paths = guest.guest_paths()
    else:
        raise UsageError("guest needs an action: build or path")
    print(f"kernel {paths.kernel}")
    print(f"initrd {paths.initrd}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from vmsim.console import TerminalConsole
    from vmsim.machine import DEFAULT_APPEND, Machine, MachineConfig

    kernel, initrd = args.kernel, args.initrd
    if kernel is None:
        from vmsim.guest import ensure_default_guest

        paths = ensure_default_guest()
        kernel, initrd = paths.kernel, initrd or paths.initrd
    config = MachineConfig(kernel=kernel, initrd=initrd, memory=args.mem,
                           append=DEFAULT_APPEND if args.append is None else args.append,
                           dtb_out=args.dtb_out, virtio=crypto_factories(args))
    machine = Machine(config)
    try:
        machine.load()
        with TerminalConsole(machine.push_input, lambda: machine.request_quit(0)):
            return machine.run()
    finally:
        machine.close()


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vmsim.demo import run_demo
    from vmsim.slots import CryptoOptions

    CryptoOptions(queues=args.crypto_queues)       # validates the number
    return run_demo(Console(), queues=args.crypto_queues, show_console=args.console)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vmsim` console script; returns the exit status."""
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
        raise UsageError("missing command (run, demo, guest, or --version)")
    except VmsimError as error:
        print(f"vmsim: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
