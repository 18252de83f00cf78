"""What the run loop watches besides the guest: the host signal that stops a run, and
the console output that shows the guest has died.

- `interrupt_on_sigint`: Ctrl-C when the terminal is not raw. The CPU thread may be
  inside the engine for a long time, where no Python signal handler runs, so the
  signal is noticed through a wakeup fd on a helper thread.
- `PanicDetector`: watches console output for a kernel panic, which ends in a wfi loop
  rather than a stop.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

PANIC_MARKER = "Kernel panic - not syncing"
MAX_LINE = 4096


class PanicDetector:
    """Calls `on_panic(line)` once, when a complete panic line has been printed."""

    def __init__(self, on_panic: Callable[[str], None]) -> None:
        self._on_panic = on_panic
        self._line = bytearray()
        self._fired = False

    def feed(self, data: bytes) -> None:
        if self._fired:
            return
        for byte in data:
            if byte == 0x0A:
                self._end_line()
            elif len(self._line) < MAX_LINE:
                self._line.append(byte)

    def _end_line(self) -> None:
        line = self._line.decode("utf-8", "replace").strip()
        self._line.clear()
        index = line.find(PANIC_MARKER)
        if index >= 0:
            self._fired = True
            self._on_panic(line[index:])


@contextmanager
def interrupt_on_sigint(on_interrupt: Callable[[], None]) -> Iterator[None]:
    """While active, SIGINT calls `on_interrupt()` promptly (from a helper thread).

    Outside the main thread signals cannot be routed, so this does nothing there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_handler = signal.signal(signal.SIGINT, lambda _sig, _frame: None)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            data = os.read(read_fd, 64)
            if not data:
                return
            if signal.SIGINT in data:
                on_interrupt()

    watcher = threading.Thread(target=watch, name="vmsim-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        os.close(write_fd)                # ends the watcher's read with EOF
        watcher.join()
        os.close(read_fd)
