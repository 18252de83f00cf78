"""The run loop's host side of the console: the host signals that stop a run, where the
guest's console output goes, and the output that shows the guest has died.

- `quit_on_signals`: SIGINT (Ctrl-C when the terminal is not raw), SIGTERM and SIGHUP.
  The CPU thread may be inside the engine for a long time, where no Python signal
  handler runs, so a signal is noticed through a wakeup fd on a helper thread, and the
  run ends the ordinary way (terminal restored, worker pool closed).
- `write_stdout`: the guest console's default output, written through to fd 1.
- `PanicDetector`: watches console output for a kernel panic, which ends in a wfi loop
  rather than a stop.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

PANIC_MARKER = "Kernel panic - not syncing"
MAX_LINE = 4096
# The signals that end a run: each gives the exit status 128 + its number, as a shell
# reports a process killed by it, but only after the run has been wound down.
QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


def write_stdout(data: bytes) -> None:
    """Write all of `data` to the host's stdout, now.

    Straight to fd 1 (after anything `print` left buffered), so nothing is held in a
    buffer that a later flush, at exit, could fail on. A non-blocking stdout (a
    descriptor shared with another program) is waited on, never dropped from. Errors
    are the caller's: the machine stops on them (Machine._console_output).
    """
    stream = sys.stdout
    if stream is None:                           # fd 1 was closed when Python started
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # replaced, e.g. by a test's capture
        stream.buffer.write(data)
        stream.buffer.flush()
        return
    stream.flush()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


@contextmanager
def quit_on_signals(on_signal: Callable[[int], None],
                    signals: Sequence[int] = QUIT_SIGNALS) -> Iterator[None]:
    """While active, each of `signals` calls `on_signal(signum)` promptly (from a helper
    thread). A signal the process was told to ignore (`nohup`, a background job's
    SIGINT) stays ignored.

    Outside the main thread signals cannot be routed, so this does nothing there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_handlers = {}
    for signum in signals:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous_handlers[signum] = signal.signal(signum, lambda _sig, _frame: None)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            data = os.read(read_fd, 64)
            if not data:
                return
            for signum in data:
                if signum in previous_handlers:
                    on_signal(signum)

    watcher = threading.Thread(target=watch, name="vmsim-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        os.close(write_fd)                # ends the watcher's read with EOF
        watcher.join()
        os.close(read_fd)
