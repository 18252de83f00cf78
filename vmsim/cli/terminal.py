"""The user's terminal as the guest's console.

`TerminalConsole` puts a terminal stdin in raw mode (so Ctrl-C and friends reach the
guest), reads it on a thread, and hands bytes to the machine. Ctrl-A x quits, Ctrl-A
Ctrl-A sends a literal Ctrl-A, as in QEMU. The terminal is restored on every exit path
(normal return, exception, signal-driven exit via atexit). A terminal that went away
(hung up, its pty closed) has nothing left to restore, and that is not an error.
"""
from __future__ import annotations

import atexit
import os
import select
import sys
import termios
import threading
import tty
from typing import Callable

CTRL_A = 0x01
QUIT_KEY = ord("x")


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
            try:
                self._saved = termios.tcgetattr(self._fd)
            except (termios.error, OSError):
                return self                 # the terminal is gone already: output only
            atexit.register(self.restore)   # before raw mode: a signal may end us anywhere
            try:
                tty.setraw(self._fd)
            except (termios.error, OSError):
                self.restore()
                return self
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
            saved, self._saved = self._saved, None
            atexit.unregister(self.restore)
            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
            except (termios.error, OSError):
                pass                        # hung up or closed: nothing to restore

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
