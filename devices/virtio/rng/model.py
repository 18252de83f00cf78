"""`-device virtio-rng`: the entropy device as a pluggable model (the example in
docs/devices.md)."""
from __future__ import annotations

from typing import Any, Mapping

from vmsim.devices.model import Option, SlotContext
from vmsim.devices.virtio.model import VirtioMmioModel
from vmsim.devices.virtio.rng.device import MAX_BYTES_PER_CHAIN, RngDevice


class RngModel(VirtioMmioModel):
    def backend(self, slot: SlotContext, values: Mapping[str, Any]) -> RngDevice:
        return RngDevice(max_bytes_per_chain=values["max-bytes"], trace=slot.trace)


MODEL = RngModel(
    name="virtio-rng",
    help="virtio-rng (ID 4): random bytes from the host's os.urandom",
    options=(
        Option("max-bytes", int, MAX_BYTES_PER_CHAIN,
               "most bytes written per request", 1, 1 << 20),
    ),
)
