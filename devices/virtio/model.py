"""The model shape every virtio device shares: a backend behind a virtio-mmio transport."""
from __future__ import annotations

import abc
from typing import Any, Mapping

from vmsim.devices.model import DeviceModel, SlotContext
from vmsim.devices.virtio.device import VirtioDevice
from vmsim.devices.bus import MmioDevice
from vmsim.devices.virtio.mmio import MmioTransport
from vmsim.devices.virtio.strict.rules import Rule
from vmsim.devices.virtio.strict.transport import CheckedTransport


class VirtioMmioModel(DeviceModel):
    """A DeviceModel whose device is a VirtioDevice backend; the slot gets the transport."""

    @abc.abstractmethod
    def backend(self, slot: SlotContext, values: Mapping[str, Any]) -> VirtioDevice:
        """Build the device backend from the option values."""

    def strict_rules(self) -> tuple[Rule, ...]:
        """The device type's own driver rules for `--strict`, beside the core's."""
        return ()

    def create(self, slot: SlotContext, values: Mapping[str, Any]) -> MmioDevice:
        transport = MmioTransport(self.backend(slot, values), slot.memory, slot.irq,
                                  slot.trace, name=self.name)
        if slot.strict is None:
            return transport
        return CheckedTransport(transport, slot.strict, self.strict_rules())
