"""The `vmsim` command line.

    vmsim run [--kernel IMAGE] [--initrd CPIO] [--append CMDLINE] [--mem 256M] [--dtb-out FILE]
              [-device MODEL[,opt=value...]]... [-d CATEGORY,...] [-D LOGFILE]
              [--crypto-queues N] [--crypto-workers N] [--crypto-not-ready] [--no-crypto]
    vmsim demo [--crypto-queues N] [--console]
    vmsim guest build | path
    vmsim --version

Every user error ends as one line `vmsim: error: ...` on stderr and a non-zero status:
argparse's usage dumps are replaced, and VmsimError is printed without a traceback.

Devices: with no -device, the machine gets one virtio-crypto device, which the
`--crypto-*` shorthands configure (`--no-crypto` leaves it out). With -device, the
machine gets exactly the devices listed, in slot order, and the shorthands are refused.
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


class HelpShown(Exception):
    """A help request (-device help, -d help): print the text and exit 0."""


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
                        help="add a device in the next virtio-mmio slot (-device help lists "
                             "the models, -device MODEL,help their options)")
    parser.add_argument("-d", dest="log_items", metavar="ITEM,...",
                        help="log these: guest_errors, unimp, trace:PATTERN (-d help)")
    parser.add_argument("-D", dest="log_file", type=Path, metavar="LOGFILE",
                        help="write the log to LOGFILE instead of stderr")
    group = parser.add_argument_group("virtio-crypto shorthands (without -device)")
    group.add_argument("--crypto-queues", type=int, default=None, metavar="N",
                       help="data queues the device offers (max_dataqueues; default 1)")
    group.add_argument("--crypto-workers", type=int, default=None, metavar="N",
                       help="worker processes for crypto work (default: one per CPU; "
                            "0 runs everything on the CPU thread)")
    group.add_argument("--crypto-not-ready", action="store_true",
                       help="withhold HW_READY, so the driver registers no algorithm")
    group.add_argument("--no-crypto", action="store_true", help="omit the device")


_SHORTHANDS = ("crypto_queues", "crypto_workers", "crypto_not_ready", "no_crypto")


def device_factories(args: argparse.Namespace) -> list:
    """The virtio slot factories the command line asks for (see the module docstring)."""
    from vmsim.cli.device_option import DeviceHelp, parse_device
    from vmsim.devices.model import OptionError

    try:
        if args.device:
            shorthands = [f"--{name.replace('_', '-')}" for name in _SHORTHANDS
                          if getattr(args, name) not in (None, False)]
            if shorthands:
                raise UsageError(f"{shorthands[0]} is a shorthand for when no -device is given; "
                                 "use -device virtio-crypto,... instead")
            requests = [parse_device(text) for text in args.device]
            return [r.model.factory(r.model.resolve(r.given)) for r in requests]
        if args.no_crypto:
            return []
        from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO

        given = {"queues": args.crypto_queues, "workers": args.crypto_workers,
                 "ready": not args.crypto_not_ready}
        return [CRYPTO.factory(CRYPTO.resolve({k: v for k, v in given.items() if v is not None}))]
    except DeviceHelp as shown:
        raise HelpShown(str(shown)) from None
    except OptionError as error:
        raise UsageError(str(error)) from None


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
    _add_device_options(run)
    from vmsim.cli.observe import add_observer_options
    from vmsim.cli.trace_cmd import add_trace_commands

    add_observer_options(run)
    add_trace_commands(commands)

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
    from vmsim.core.engine import engine_description

    print(f"vmsim {__version__}")
    print(engine_description())
    return 0


def _guest(args: argparse.Namespace) -> int:
    from vmsim.build import guest

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
    from vmsim import log
    from vmsim.build.unicorn import ensure_native_library
    from vmsim.cli.terminal import TerminalConsole
    from vmsim.cli.observe import Observers
    from vmsim.core.machine import DEFAULT_APPEND, Machine, MachineConfig

    factories = device_factories(args)
    configure_logging(args)
    ensure_native_library()
    kernel, initrd = args.kernel, args.initrd
    if kernel is None:
        from vmsim.build.guest import ensure_default_guest

        paths = ensure_default_guest()
        kernel, initrd = paths.kernel, initrd or paths.initrd
    config = MachineConfig(kernel=kernel, initrd=initrd, memory=args.mem,
                           append=DEFAULT_APPEND if args.append is None else args.append,
                           dtb_out=args.dtb_out, virtio=factories)
    observers = Observers.from_args(args)
    config.trace = observers.sink(log.trace_sink if log.trace_enabled() else None)
    try:
        with Machine(config) as machine:
            machine.load()
            observers.attach(machine)
            with TerminalConsole(machine.push_input, lambda: machine.request_quit(0)):
                return machine.run()
    finally:
        observers.close()
        log.close()


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
        if args.command == "trace":
            from vmsim.cli.trace_cmd import run_trace_command

            return run_trace_command(args)
        raise UsageError("missing command (run, demo, guest, or --version)")
    except HelpShown as shown:
        print(shown)
        return 0
    except VmsimError as error:
        print(f"vmsim: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
