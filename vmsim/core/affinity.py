"""Keeps one host core for the CPU thread and the others for everything else.

While a guest spins (a poll-mode driver waiting on a used ring), the CPU thread keeps
its core 100% busy. On a small host Linux then tends to queue the threads that carry a
device completion (the worker pool's collector, the watchdog) and the worker processes
behind it, and every hand-off waits for a scheduler tick: milliseconds instead of
microseconds. Measured on 2 cores with a bare-metal poll-mode driver: pooled RSA
completions went from a 10 ms p99 to under 1 ms once the CPU thread had a core of
its own.

Linux (`os.sched_setaffinity` on a thread id) only; with fewer than two usable cores,
or where affinity cannot be set, this does nothing.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

_TASKS = Path("/proc/self/task")


class CoreSplit:
    """Pins the calling thread to one core and the rest of the process to the others.

    Threads and processes inherit their creator's mask, so those started later by the
    CPU thread (a device's worker pool, say) would share its core. A small thread of
    its own, on the other cores, calls `refresh()` while the split is applied: it moves
    any new thread, and the children of every thread, away. It does not depend on the
    guest ever returning to the run loop. It looks every REFRESH_SECONDS after a change,
    and half as often after each look that found none, down to every MAX_REFRESH_SECONDS
    (a worker a device starts from the CPU thread shares its core until then):
    at a steady 50 looks a second it alone kept an idle guest's vmsim near 1% of a core.
    """

    REFRESH_SECONDS = 0.02
    MAX_REFRESH_SECONDS = 0.16

    def __init__(self) -> None:
        allowed = _allowed_cpus()
        self._active = allowed is not None and len(allowed) >= 2
        self._original = allowed or set()
        self._cpu_core = {max(self._original)} if self._active else set()
        self._others = self._original - self._cpu_core
        self._cpu_thread = threading.get_native_id()
        self._placed: set[int] = set()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def apply(self) -> None:
        """From the CPU thread, before it runs the guest."""
        if not (self._active and _set(self._cpu_thread, self._cpu_core)):
            self._active = False
            return
        self.refresh()
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="vmsim-cores", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        _set(0, self._others)
        interval = self.REFRESH_SECONDS
        while not self._stop.wait(interval):
            changed = self.refresh()
            interval = (self.REFRESH_SECONDS if changed
                        else min(2 * interval, self.MAX_REFRESH_SECONDS))

    def refresh(self) -> bool:
        """Move threads and child processes that appeared since the last call; say
        whether there were any."""
        if not self._active:
            return False
        tasks = _listing(_TASKS)
        if tasks == self._placed:
            return False
        for tid in tasks - self._placed - {self._cpu_thread}:
            _set(tid, self._others)
        for tid in tasks:
            for child in _children(tid):
                _set(child, self._others)
        self._placed = tasks
        return True

    def release(self) -> None:
        """Stop watching and give every thread of the process the cores it had before:
        where the CPU thread is not the main thread (a machine run by a test or an
        embedding program), the main thread was moved too and must not stay there."""
        if self._watcher is not None:
            self._stop.set()
            self._watcher.join()
            self._watcher = None
        if self._active:
            for tid in _listing(_TASKS) | {self._cpu_thread}:
                _set(tid, self._original)
            self._placed = set()


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _set(task: int, cpus: set[int]) -> bool:
    try:
        os.sched_setaffinity(task, cpus)
        return True
    except OSError:            # the thread or process has exited, or no permission
        return False


def _listing(directory: Path) -> set[int]:
    try:
        return {int(name) for name in os.listdir(directory)}
    except OSError:
        return set()


def _children(tid: int) -> list[int]:
    try:
        return [int(pid) for pid in (_TASKS / str(tid) / "children").read_text().split()]
    except (OSError, ValueError):
        return []
