"""Factories that put virtio devices into the machine's virtio-mmio slots.

The machine knows only `DeviceFactory` (a slot's memory, interrupt line and waker in,
an MMIO device out); this module pairs each device backend with the virtio-mmio
transport, so the machine never needs to know which devices exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from devices.events import TraceSink, discard
from devices.virtio.crypto import CryptoDevice
from devices.virtio.mmio import MmioTransport
from vmsim.errors import VmsimError
from vmsim.machine import DeviceFactory, SlotContext

MAX_CRYPTO_QUEUES = 64


@dataclass(frozen=True)
class CryptoOptions:
    """What the command line can choose about the virtio-crypto device."""

    queues: int = 1
    hw_ready: bool = True
    workers: int | None = None          # None: one worker process per host CPU

    def __post_init__(self) -> None:
        if not 1 <= self.queues <= MAX_CRYPTO_QUEUES:
            raise VmsimError(f"--crypto-queues must be between 1 and {MAX_CRYPTO_QUEUES}, "
                             f"not {self.queues}")
        if self.workers is not None and self.workers < 0:
            raise VmsimError(f"--crypto-workers must be 0 or more, not {self.workers}")


def crypto_slot(options: CryptoOptions = CryptoOptions(),
                trace: TraceSink = discard) -> DeviceFactory:
    """A factory for a virtio-crypto device (ID 20) behind a virtio-mmio transport."""

    def build(slot: SlotContext) -> MmioTransport:
        device = CryptoDevice(max_dataqueues=options.queues, workers=options.workers,
                              hw_ready=options.hw_ready, waker=slot.waker, trace=trace)
        return MmioTransport(device, slot.memory, slot.irq, trace, name="virtio-crypto")

    return build


def find_crypto_device(devices: Sequence[object]) -> CryptoDevice | None:
    """The crypto backend among a machine's virtio slots, for summaries."""
    for transport in devices:
        backend = getattr(transport, "device", None)
        if isinstance(backend, CryptoDevice):
            return backend
    return None
