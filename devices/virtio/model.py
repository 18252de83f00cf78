"""The model shape every virtio device shares: a backend behind a virtio-mmio transport."""
from __future__ import annotations

import abc
from typing import Any, Mapping

from vmsim.devices.model import DeviceModel, SlotContext
from vmsim.devices.virtio.device import VirtioDevice
from vmsim.devices.virtio.mmio import MmioTransport


class VirtioMmioModel(DeviceModel):
    """A DeviceModel whose device is a VirtioDevice backend; the slot gets the transport."""

    @abc.abstractmethod
    def backend(self, slot: SlotContext, values: Mapping[str, Any]) -> VirtioDevice:
        """Build the device backend from the option values."""

    def create(self, slot: SlotContext, values: Mapping[str, Any]) -> MmioTransport:
        return MmioTransport(self.backend(slot, values), slot.memory, slot.irq, slot.trace,
                             name=self.name)
