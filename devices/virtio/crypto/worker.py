"""Worker process entry point:
`python -m vmsim.devices.virtio.crypto.worker RUNNER TASK_FD RESULT_FD [PARENT_PID]`.

Once its imports (and the runner module's optional `warm_up()`) are done it sends READY,
then reads (token, job) messages from the task pipe and answers (token, RUNNER(job)) on
the result pipe, in order, until the task pipe closes or sends None. Started as a plain
subprocess (not multiprocessing's spawn), so the parent's __main__ is never re-imported.

A worker lives only as long as its parent wants it (see vmsim.devices.virtio.crypto.pool):
- the kernel kills it when the parent goes, however it goes (PR_SET_PDEATHSIG, set
  first thing, then a check that the parent did not go before that);
- it exits when its task pipe closes, and quietly when its result pipe breaks: an
  answer nobody will read is not an error worth a traceback;
- the terminal's signals (SIGINT, SIGHUP) and SIGTERM sent to the whole process group
  are for vmsim, which winds the pool down itself, so the worker ignores them;
- on a failure of its own it sends (CRASHED, traceback) for the parent's log, never to
  the user's terminal.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable

from vmsim.devices.virtio.crypto.pool import CRASHED, READY

PR_SET_PDEATHSIG = 1        # <linux/prctl.h>
EXIT_CRASHED = 70           # EX_SOFTWARE: the worker's own failure, reported as CRASHED


def resolve(name: str) -> Callable[[Any], Any]:
    """'package.module:function' -> the function."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def serve(runner: Callable[[Any], Any], tasks: Connection, results: Connection) -> None:
    results.send(READY)
    while True:
        try:
            message = tasks.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        token, job = message
        results.send((token, runner(job)))


def warm_up(name: str) -> None:
    """Call the runner module's optional `warm_up()` before READY, so one-time costs are
    not paid by the first real job; a failure there only loses the head start."""
    warm = getattr(importlib.import_module(name.partition(":")[0]), "warm_up", None)
    if warm is not None:
        try:
            warm()
        except Exception:  # noqa: BLE001
            pass


def die_with_parent(parent: int | None) -> None:
    """Ask the kernel for SIGKILL when the parent goes: a worker deep in a long job never
    looks at its task pipe, and would otherwise keep computing as an orphan. The parent
    may have gone before this call; then its pid is no longer our parent's."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (AttributeError, OSError):
        pass                             # not Linux: the task pipe's EOF still ends us
    if parent is not None and os.getppid() != parent:
        os._exit(0)


def _report_crash(results: Connection) -> None:
    try:
        results.send((CRASHED, traceback.format_exc()))
    except (OSError, ValueError):
        pass


def main(argv: list[str]) -> None:
    die_with_parent(int(argv[3]) if len(argv) > 3 else None)
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    tasks = Connection(int(argv[1]), writable=False)
    results = Connection(int(argv[2]), readable=False)
    try:
        runner = resolve(argv[0])
        warm_up(argv[0])
        serve(runner, tasks, results)
    except (BrokenPipeError, ConnectionResetError):
        return                           # the parent stopped listening: nobody to answer
    except Exception:  # noqa: BLE001 - every failure goes to the parent, not the terminal
        _report_crash(results)
        sys.exit(EXIT_CRASHED)


if __name__ == "__main__":
    main(sys.argv[1:])
