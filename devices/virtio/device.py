"""The seam between a virtio device backend and its transport.

One interface for devices and one for the transport (the Firecracker shape): a backend
such as virtio-crypto knows its queues, features and config space, and nothing about
MMIO registers, status bytes or interrupt lines. The transport hands it a
`DeviceContext` at DRIVER_OK, through which it reaches guest memory, the live queues
and the interrupt path.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

from vmsim.devices.bus import GuestMemory
from vmsim.devices.events import TraceSink, discard
from vmsim.devices.virtio.queue import SplitQueue


class DeviceContext:
    """What an activated device may use; built by the transport at DRIVER_OK.

    The three callbacks are the transport's: a device reports completions, fatal
    errors and config changes through them and never touches interrupt state itself.
    """

    def __init__(
        self,
        mem: GuestMemory,
        queues: list[SplitQueue],
        driver_features: int,
        *,
        signal_used: Callable[[int], None],
        needs_reset: Callable[[str], None],
        config_changed: Callable[[], None],
        trace: TraceSink = discard,
        interrupt: Callable[[int], None] | None = None,
    ) -> None:
        self.mem = mem
        self.queues = queues
        self.driver_features = driver_features
        self.trace = trace
        self._signal_used = signal_used
        self._needs_reset = needs_reset
        self._config_changed = config_changed
        self._interrupt = interrupt or signal_used

    def has_feature(self, mask: int) -> bool:
        """True when every bit of `mask` was negotiated."""
        return self.driver_features & mask == mask

    def signal_used(self, queue_index: int) -> None:
        """Call after add_used: the transport interrupts the driver unless EVENT_IDX
        or NO_INTERRUPT says the driver does not want it now."""
        self._signal_used(queue_index)

    def interrupt(self, queue_index: int) -> None:
        """Raise a used-buffer interrupt whatever EVENT_IDX or NO_INTERRUPT say: only
        for fault injection (a duplicated interrupt), never for normal completions."""
        self._interrupt(queue_index)

    def needs_reset(self, reason: str) -> None:
        """The device is in an error state (e.g. a ChainError): set DEVICE_NEEDS_RESET
        and send a config-change interrupt. The device should stop using its queues."""
        self._needs_reset(reason)

    def config_changed(self) -> None:
        """The config space changed: bump ConfigGeneration and interrupt."""
        self._config_changed()


class VirtioDevice(ABC):
    """A device backend behind a transport."""

    device_id: int
    num_queues: int
    queue_max_size: int = 1024  # power of two
    # Device-type feature bits by number, for traces and viewers ({0: "REVISION_1"}).
    feature_bit_names: dict[int, str] = {}

    @abstractmethod
    def device_features(self) -> int:
        """Device-type feature bits only (0..23); the transport adds VERSION_1,
        INDIRECT_DESC and EVENT_IDX itself."""

    @abstractmethod
    def read_config(self, offset: int, size: int) -> int:
        """Read `size` (1, 2 or 4) bytes of config space; out of range reads as 0."""

    def write_config(self, offset: int, size: int, value: int) -> None:
        """Write config space; most devices have none that is writable."""

    @abstractmethod
    def activate(self, ctx: DeviceContext) -> None:
        """The driver set DRIVER_OK: queues are live from now on."""

    @abstractmethod
    def queue_notify(self, index: int) -> None:
        """The driver kicked queue `index` (only ever a ready queue after DRIVER_OK)."""

    def poll(self) -> None:
        """On the CPU thread: finish asynchronous work (write used entries, signal).
        Called whether or not the driver has activated the device."""

    @abstractmethod
    def reset(self) -> None:
        """The driver wrote status 0: drop every piece of state, including the context."""

    def start(self) -> None:
        """The machine is built: acquire host resources (processes, threads). Nothing
        of the kind may happen in the constructor, so a device can be made and
        inspected for free."""

    def close(self) -> None:
        """The machine is shutting down: release host resources (processes, threads)."""
