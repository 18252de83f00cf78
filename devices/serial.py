"""The host side every UART model shares, so the machine can swap one model for another.

A model is built as `Model(irq, output, waker)`: bytes the guest transmits go to
`output` (the console sink), bytes typed on the host arrive through `push_input` from
any thread (a stdin reader), which only queues them and wakes the machine; the model's
`poll` runs on the CPU thread and takes them into its RX FIFO as room allows, so input
faster than the guest reads waits here instead of overrunning the FIFO.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from vmsim.devices.bus import NullWaker, Waker


class HostSerialPort:
    """The base of the UART models: the host's output sink and its input queue."""

    def __init__(self, output: Callable[[bytes], None], waker: Waker = NullWaker()) -> None:
        self._output = output
        self._waker = waker
        self._host_input: deque[bytes] = deque()
        self._host_lock = threading.Lock()

    def push_input(self, data: bytes) -> None:
        """Queue bytes typed on the host. Safe from any thread."""
        if not data:
            return
        with self._host_lock:
            self._host_input.append(bytes(data))
        self._waker.wake()

    def _take_input(self, room: int) -> bytes:
        """Up to `room` queued bytes, oldest first (CPU thread); the rest stays queued."""
        taken = bytearray()
        with self._host_lock:
            while len(taken) < room and self._host_input:
                chunk = self._host_input.popleft()
                want = room - len(taken)
                taken += chunk[:want]
                if len(chunk) > want:
                    self._host_input.appendleft(chunk[want:])
        return bytes(taken)
