"""Work a device must do later on the CPU thread (a delayed completion, a late interrupt).

The work itself runs in the device's `poll()`, on the CPU thread like everything that
touches guest memory; a single timer thread only calls the machine's Waker when the
earliest item falls due, so the machine polls then even if the guest sits in WFI. The
thread starts with the first item, so a device that never defers starts none.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable


class Deferred:
    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._items: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def later(self, seconds: float, work: Callable[[], None]) -> None:
        """Run `work` from `run_due()` once `seconds` have passed."""
        with self._cond:
            heapq.heappush(self._items, (time.monotonic() + seconds, next(self._order), work))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._alarm, name="vmsim-deferred",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def run_due(self) -> None:
        """Run every item that is due (CPU thread)."""
        if not self._items:
            return
        now = time.monotonic()
        due = []
        with self._cond:
            while self._items and self._items[0][0] <= now:
                due.append(heapq.heappop(self._items)[2])
        for work in due:
            work()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(1.0)

    def _alarm(self) -> None:
        """Wake the machine each time the earliest item falls due."""
        with self._cond:
            while not self._closed:
                if not self._items:
                    self._cond.wait()
                    continue
                wait = self._items[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._cond.release()
                try:
                    self._wake()
                finally:
                    self._cond.acquire()
                self._cond.wait(0.001)           # poll() takes the due items meanwhile
