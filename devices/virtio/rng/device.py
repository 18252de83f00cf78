"""virtio-rng (virtio spec 5.4): one request queue of device-writable buffers, filled
with random bytes from the host.

The whole device: no feature bits, no config space. Each chain the driver makes
available is filled and returned at once, with used.len the number of bytes written.
The spec lets the device write fewer bytes than the buffer holds ("MAY use less than
the entire buffer length"), so each chain gets at most `max_bytes_per_chain`: a guest
cannot make the host produce unbounded randomness with one huge buffer. A chain that
offers nothing writable is returned with length 0. A broken chain, or an entropy source
that fails, puts the device in DEVICE_NEEDS_RESET; nothing raises into the machine.
"""
from __future__ import annotations

import os
import time
from typing import Callable

from vmsim import log
from vmsim.devices.events import TraceEvent, TraceSink, discard
from vmsim.devices.virtio.device import DeviceContext, VirtioDevice
from vmsim.devices.virtio.queue import ChainError

DEVICE_ID = 4
REQUEST_QUEUE = 0
MAX_BYTES_PER_CHAIN = 64 << 10
NAME = "virtio-rng"


class RngDevice(VirtioDevice):
    device_id = DEVICE_ID
    num_queues = 1
    queue_max_size = 256

    def __init__(self, entropy: Callable[[int], bytes] = os.urandom,
                 max_bytes_per_chain: int = MAX_BYTES_PER_CHAIN,
                 trace: TraceSink = discard) -> None:
        self._entropy = entropy
        self._max = max_bytes_per_chain
        self._trace = trace
        self.ctx: DeviceContext | None = None
        self.bytes_served = 0

    def device_features(self) -> int:
        return 0

    def read_config(self, offset: int, size: int) -> int:
        return 0

    def activate(self, ctx: DeviceContext) -> None:
        self.ctx = ctx

    def reset(self) -> None:
        self.ctx = None

    def queue_notify(self, index: int) -> None:
        ctx = self.ctx
        if ctx is None or index != REQUEST_QUEUE:
            return
        queue = ctx.queues[REQUEST_QUEUE]
        served = False
        try:
            while (chain := queue.pop()) is not None:
                length = min(chain.writable_len, self._max)
                if length:
                    chain.write(0, self._entropy(length))
                queue.add_used(chain.head, length)
                self.bytes_served += length
                served = True
                if self._trace is not discard:
                    self._trace(TraceEvent("request", NAME, REQUEST_QUEUE,
                                           {"head": chain.head, "used": length}, time.monotonic()))
        except ChainError as err:
            ctx.needs_reset(f"virtio-rng: {err}")
        except Exception as err:  # noqa: BLE001 - a device never raises into the machine
            log.internal_error(NAME, f"request queue: {err!r}; the device now needs a reset")
            ctx.needs_reset(f"virtio-rng internal error: {err!r}")
        if served:
            ctx.signal_used(REQUEST_QUEUE)
