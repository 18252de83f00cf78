"""Worker process entry point: `python -m vmsim.devices.virtio.crypto.worker RUNNER TASK_FD RESULT_FD`.

Once its imports (and the runner module's optional `warm_up()`) are done it sends READY,
then reads (token, job) messages from the task pipe and answers (token, RUNNER(job)) on
the result pipe, in order, until the task pipe closes or sends None. Started as a plain
subprocess (not multiprocessing's spawn), so the parent's __main__ is never re-imported,
and exits by itself when its parent goes away and the task pipe closes.
"""
from __future__ import annotations

import importlib
import sys
from multiprocessing.connection import Connection
from typing import Any, Callable

from vmsim.devices.virtio.crypto.pool import READY


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


def main(argv: list[str]) -> None:
    runner = resolve(argv[0])
    warm_up(argv[0])
    serve(runner, Connection(int(argv[1]), writable=False), Connection(int(argv[2]), readable=False))


if __name__ == "__main__":
    main(sys.argv[1:])
