"""`vmsim trace stats|view|export FILE`: look at a trace recorded with `vmsim run --trace`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from vmsim.errors import VmsimError


def add_trace_commands(commands: argparse._SubParsersAction) -> None:
    from vmsim.cli.learn import add_learn_command

    add_learn_command(commands)
    tui = commands.add_parser("tui", help="the TUI for a machine started with "
                              "run --observe SOCKET")
    tui.add_argument("--attach", required=True, metavar="SOCKET",
                     help="the Unix socket the machine serves (vmsim run --observe SOCKET)")
    tui.add_argument("--serve", type=int, metavar="PORT", default=None,
                     help="serve the TUI to browsers on 127.0.0.1:PORT (textual-serve; one "
                          "attached TUI per visit) instead of this terminal")
    tui.add_argument("--host", default="127.0.0.1", help="address for --serve")
    tui.add_argument("--explain", action="store_true",
                     help="show the explanation of the event the machine is held at "
                          "(the machine runs with --explain)")
    tui.add_argument("--headless", action="store_true", help=argparse.SUPPRESS)
    # Dispatched with the trace commands (run_trace_command).
    tui.set_defaults(command="trace", trace_command="tui")
    trace = commands.add_parser("trace", help="look at a trace recorded with run --trace")
    actions = trace.add_subparsers(dest="trace_command", metavar="ACTION")
    stats = actions.add_parser("stats", help="a table per opcode: counts, bytes, latency "
                               "percentiles, statuses")
    stats.add_argument("file", type=Path, metavar="FILE")
    view = actions.add_parser("view", help="the TUI on a recorded trace: scrub with [ ] "
                              "(or ← →), { } by 100, < > to the ends")
    view.add_argument("file", type=Path, metavar="FILE")
    view.add_argument("--at", type=int, default=None, metavar="N",
                      help="start after the first N events (default: at the end)")
    export = actions.add_parser("export", help="write the trace for Perfetto, Chrome or "
                                "Wireshark")
    export.add_argument("file", type=Path, metavar="FILE")
    export.add_argument("--perfetto", type=Path, metavar="OUT",
                        help="a Perfetto trace (protobuf TrackEvents; open in ui.perfetto.dev)")
    export.add_argument("--chrome", type=Path, metavar="OUT.json",
                        help="Chrome JSON trace events (chrome://tracing, Perfetto)")
    export.add_argument("--pcapng", type=Path, metavar="OUT",
                        help="a pcapng capture of requests and completions (Wireshark, with "
                             "the vmsim dissector)")


def run_trace_command(args: argparse.Namespace, say: Callable[[str], None] = print) -> int:
    from vmsim.trace.record import read_trace

    if args.trace_command == "learn":
        from vmsim.cli.learn import run_learn

        return run_learn(args, say)
    if args.trace_command == "tui":
        return _tui(args)
    if args.trace_command is None:
        raise VmsimError("trace needs an action: stats, view or export")
    trace = read_trace(args.file)
    if args.trace_command == "stats":
        from rich.console import Console

        from vmsim.trace.stats import model_of, queue_table, stats_table

        model = model_of(trace)
        console = Console() if sys.stdout.isatty() else Console(width=160)
        console.print(stats_table(model))
        console.print(queue_table(model))
        if not trace.complete:
            say("note: the trace has no end line (the run was cut short)")
        return 0
    if args.trace_command == "view":
        from vmsim.tui.app import VmsimApp
        from vmsim.tui.feeds import TraceFeed

        VmsimApp(TraceFeed(trace, args.file.name), position=args.at).run()
        return 0
    if args.trace_command == "export":
        if not (args.perfetto or args.chrome or args.pcapng):
            raise VmsimError("trace export needs --perfetto, --chrome or --pcapng")
        if args.perfetto:
            from vmsim.trace.perfetto import write_perfetto

            write_perfetto(trace, args.perfetto)
            say(f"wrote {args.perfetto}")
        if args.chrome:
            from vmsim.trace.chrome import write_chrome

            write_chrome(trace, args.chrome)
            say(f"wrote {args.chrome}")
        if args.pcapng:
            from vmsim.trace.pcapng import write_pcapng

            write_pcapng(trace, args.pcapng)
            say(f"wrote {args.pcapng}")
        return 0
    raise VmsimError(f"unknown trace action {args.trace_command!r}")


def _tui(args: argparse.Namespace) -> int:
    if args.serve is not None:
        import shlex

        from textual_serve.server import Server

        vmsim = Path(sys.executable).with_name("vmsim")
        command = (shlex.quote(str(vmsim)) if vmsim.exists() else
                   f"{shlex.quote(sys.executable)} -m vmsim.cli.main")
        Server(f"{command} tui --attach {shlex.quote(args.attach)}", host=args.host,
               port=args.serve, title="vmsim").serve()
        return 0
    from vmsim.tui.app import VmsimApp
    from vmsim.tui.feeds import SocketFeed

    try:
        feed = SocketFeed(args.attach)
    except ConnectionError as error:
        raise VmsimError(str(error)) from None
    app = VmsimApp(feed, explain=args.explain)
    if args.headless:                 # the benchmark's viewer: drawing, with no terminal
        app.run(headless=True, size=(160, 50))
    else:
        app.run()
    return 0
