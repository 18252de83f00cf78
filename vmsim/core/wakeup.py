"""An Event that native code can set: the run loop's idle wait.

`threading.Event` can only be set from Python. The run loop sleeps on this one while the
guest waits for an interrupt, and the native fd watcher (vmsim.core.nativelib) ends that sleep
by writing one byte to `fd`, without the GIL.
"""
from __future__ import annotations

import os
import select


class WakePipe:
    """set / clear / wait over a non-blocking pipe; set() from any thread or from C."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        # clear() runs every time the engine returns: a poll says whether there is
        # anything to read, where a read of the empty pipe would raise (3x the cost).
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)

    @property
    def fd(self) -> int:
        """The end to write a byte to."""
        return self._write

    def set(self) -> None:
        try:
            os.write(self._write, b"\0")
        except OSError:
            pass                    # full: it is set already; closed: nobody waits

    def clear(self) -> bool:
        """Empty the pipe; True if it was set."""
        if not self._poll.poll(0):
            return False
        try:
            while os.read(self._read, 4096):
                pass
        except OSError:             # empty (BlockingIOError), or closed
            pass
        return True

    def wait(self, timeout: float | None) -> bool:
        """Sleep until set or `timeout` seconds (None: no limit); True if set."""
        try:
            limit = None if timeout is None else max(0.0, timeout)
            ready, _, _ = select.select([self._read], [], [], limit)
        except (OSError, ValueError):
            return True
        return bool(ready)

    def close(self) -> None:
        """Close both ends; idempotent (a second close must not hit a reused fd)."""
        fds, (self._read, self._write) = (self._read, self._write), (-1, -1)
        if fds[0] >= 0:
            self._poll.unregister(fds[0])
        for fd in fds:
            if fd >= 0:
                os.close(fd)
