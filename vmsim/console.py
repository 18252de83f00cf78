"""The user's terminal as the guest's console, and the host signals that stop a run.

- `TerminalConsole`: puts a terminal stdin in raw mode (so Ctrl-C and friends reach the
  guest), reads it on a thread, and hands bytes to the machine. Ctrl-A x quits, Ctrl-A
  Ctrl-A sends a literal Ctrl-A, as in QEMU. The terminal is restored on every exit
  path (normal return, exception, signal-driven exit via atexit).
- `interrupt_on_sigint`: Ctrl-C when the terminal is not raw. The CPU thread may be
  inside the engine for a long time, where no Python signal handler runs, so the
  signal is noticed through a wakeup fd on a helper thread.
- `PanicDetector`: watches console output for a kernel panic, which ends in a wfi loop
  rather than a stop.
"""
from __future__ import annotations

import atexit
import os
import select
import signal
import sys
import termios
import threading
import tty
from contextlib import contextmanager
from typing import Callable, Iterator

CTRL_A = 0x01
QUIT_KEY = ord("x")
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


def _stdin_fd() -> int | None:
    """The stdin descriptor, or None when stdin is closed or replaced (test runners)."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class TerminalConsole:
    """Feeds stdin to `push_input` and turns Ctrl-A x into `on_quit()`.

    Use as a context manager around `Machine.run()`. Raw mode is used only when stdin
    is a terminal; piped input is forwarded as it is.
    """

    def __init__(self, push_input: Callable[[bytes], None], on_quit: Callable[[], None],
                 stdin_fd: int | None = None) -> None:
        self._push = push_input
        self._on_quit = on_quit
        self._fd = _stdin_fd() if stdin_fd is None else stdin_fd
        self._saved: list | None = None
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._read_loop, name="vmsim-stdin",
                                        daemon=True)
        self._escape = False

    def __enter__(self) -> TerminalConsole:
        if self._fd is None:
            return self                     # no usable stdin: output only
        if os.isatty(self._fd):
            self._saved = termios.tcgetattr(self._fd)
            atexit.register(self.restore)
            tty.setraw(self._fd)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        os.write(self._stop_write, b"x")
        if self._thread.is_alive():
            self._thread.join()
        os.close(self._stop_read)
        os.close(self._stop_write)
        self.restore()

    def restore(self) -> None:
        """Put the terminal back as it was; safe to call more than once."""
        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None
            atexit.unregister(self.restore)

    def _read_loop(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop_read], [], [])
            if self._stop_read in ready:
                return
            try:
                data = os.read(self._fd, 1024)
            except OSError:
                return
            if not data:
                return                      # EOF: the guest just gets no more input
            forward = self.filter_keys(data)
            if forward:
                self._push(forward)

    def filter_keys(self, data: bytes) -> bytes:
        """Handle the Ctrl-A escape; return the bytes meant for the guest."""
        out = bytearray()
        for byte in data:
            if self._escape:
                self._escape = False
                if byte == QUIT_KEY:
                    self._on_quit()
                elif byte == CTRL_A:
                    out.append(CTRL_A)
            elif byte == CTRL_A:
                self._escape = True
            else:
                out.append(byte)
        return bytes(out)
