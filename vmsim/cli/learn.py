"""`vmsim learn`: the guided lesson on the default guest (vmsim.trace.lesson), of
either board (`--arch riscv64|arm64`, the console on the board's UART).

In a terminal it runs under the TUI: the guest stops at each step's event and the
lesson panel explains it; space goes on. With --headless (or without a terminal) each
step is printed as it happens and the lesson goes straight on, which is how the tests
run it end to end. Either way the guest is quit once the last step has happened.
"""
from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmsim.trace.lesson import Reached


def add_learn_command(commands: argparse._SubParsersAction) -> None:
    learn = commands.add_parser("learn", help="a guided lesson: negotiation, queue setup, a "
                                "session, the first request, the interrupt, destroying the "
                                "session, each explained from the real event")
    learn.add_argument("--headless", action="store_true",
                       help="print each step and go straight on (no TUI, no key presses)")
    learn.add_argument("--arch", default="riscv64", choices=("riscv64", "arm64"),
                       help="the board and its default guest: riscv64 (default) or arm64")
    # Dispatched with the trace commands: vmsim/cli/trace_cmd.py
    learn.set_defaults(command="trace", trace_command="learn")


def run_learn(args: argparse.Namespace, say=print) -> int:
    from vmsim.boards import default_append, for_arch
    from vmsim.build.guest import ensure_default_guest
    from vmsim.build.unicorn import ensure_native_library
    from vmsim.core.machine import MachineConfig, create_machine
    from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO
    from vmsim.trace.control import MachineGate, gated
    from vmsim.trace.hub import TraceHub
    from vmsim.trace.lesson import STEPS, Lesson
    from vmsim.trace.record import device_info
    from vmsim.tui.feeds import ConsoleBuffer

    headless = args.headless or not sys.stdout.isatty()
    ensure_native_library()
    arch = getattr(args, "arch", "riscv64")
    board = for_arch(arch)
    paths = ensure_default_guest(arch=arch)
    hub, gate = TraceHub(), MachineGate()
    console = ConsoleBuffer()
    config = MachineConfig(kernel=paths.kernel, initrd=paths.initrd, append=default_append(board),
                           board=board, virtio=[gated(CRYPTO.configure(), gate)], trace=hub)
    machine = create_machine(config, output=console.write)
    quit_after = threading.Event()

    def on_step(reached: Reached) -> None:
        if headless:
            say(reached.text() + "\n")
        if reached.number == len(STEPS):
            quit_after.set()

    lesson = Lesson(gate, on_step=on_step)
    hub.listen(lesson.listener)             # the lesson's model first, then the gate
    hub.listen(gate.listener)
    hub.guest_time = machine.clock.ticks
    lesson.model = lesson.model.__class__(device_info(machine.virtio))

    def attention() -> None:
        machine.request_stop()
        machine.watchdog.wake()
    gate.attention = attention

    def on_stop(record) -> None:
        if headless:                         # no key to wait for: straight on
            gate.resume()
        if quit_after.is_set():
            machine.request_quit(0)
            if not headless:
                return
    gate.on_stop = on_stop
    try:
        machine.load()
        if headless:
            say(f"vmsim learn: {len(STEPS)} steps on the default {arch} guest\n")
            machine.run()
        else:
            from vmsim.tui.app import VmsimApp
            from vmsim.tui.feeds import HubFeed

            outcome: dict = {}

            def run() -> None:
                try:
                    outcome["status"] = machine.run()
                except BaseException as error:   # noqa: BLE001 - shown in the status line
                    outcome["error"] = error

            feed = HubFeed(hub, gate, console, device_info(machine.virtio), machine.push_input,
                           lambda: "lesson complete" if lesson.done else "running",
                           title="vmsim learn")
            thread = threading.Thread(target=run, name="vmsim-cpu", daemon=True)
            thread.start()
            try:
                VmsimApp(feed, lesson=lesson).run()
            finally:
                gate.close()
                machine.request_quit(0)
                thread.join(timeout=10)
    finally:
        gate.close()
        machine.close()
    if not lesson.done:
        missing = STEPS[lesson.index].title
        say(f"the guest stopped before step {lesson.index + 1} ({missing}) happened")
        return 1
    if headless:
        say("Lesson complete: every step happened on this guest.")
    return 0
