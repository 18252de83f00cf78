"""`-device virtio-crypto`: the virtio-crypto device (ID 20) as a pluggable model."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from vmsim.devices.model import Option, SlotContext
from vmsim.devices.virtio.crypto.constants import CryptoFeatures
from vmsim.devices.virtio.crypto.device import INLINE_MAX_BYTES, MAX_INFLIGHT_BYTES, CryptoDevice
from vmsim.devices.virtio.crypto import strict
from vmsim.devices.virtio.model import VirtioMmioModel
from vmsim.devices.virtio.strict.rules import Rule

MAX_QUEUES = 64
# REVISION_1 with every service's stateless bit: what `stateless=on` offers. The
# stateless bits mean nothing without REVISION_1, so they are never offered alone.
STATELESS_FEATURES = CryptoFeatures.ALL


class CryptoModel(VirtioMmioModel):
    def strict_rules(self) -> tuple[Rule, ...]:
        return strict.RULES

    def backend(self, slot: SlotContext, values: Mapping[str, Any]) -> CryptoDevice:
        features = STATELESS_FEATURES if values["stateless"] else CryptoFeatures.DEFAULT
        return CryptoDevice(max_dataqueues=values["queues"], workers=values["workers"],
                            hw_ready=values["ready"], features=features, waker=slot.waker,
                            trace=slot.trace, max_inflight_bytes=values["max-inflight"] << 20,
                            inline_max_bytes=values["inline-max"] << 10, faults=slot.faults)


MODEL = CryptoModel(
    name="virtio-crypto",
    help="virtio-crypto (ID 20): cipher, hash, MAC, AEAD and RSA/ECDSA, with a worker pool",
    options=(
        Option("queues", int, 1, "data queues offered (max_dataqueues)", 1, MAX_QUEUES),
        Option("workers", int, None, "worker processes for pooled work; 0 runs everything "
               "on the CPU thread but costly public-key work, which gets one worker (auto: one "
               "per host CPU)", 0, 256),
        Option("ready", bool, True, "set HW_READY (off: the driver registers nothing)"),
        Option("stateless", bool, False, "offer REVISION_1 and every stateless-mode bit"),
        Option("max-inflight", int, MAX_INFLIGHT_BYTES >> 20, "MiB of request data held in "
               "flight (copied, not yet answered); further requests wait in the ring", 1, 4096),
        Option("inline-max", int, INLINE_MAX_BYTES >> 10, "KiB: symmetric requests up to this "
               "size run on the CPU thread, larger ones in a worker (0: every one in a worker)",
               0, 1 << 20),
    ),
)


def find_crypto_device(devices: Sequence[object]) -> CryptoDevice | None:
    """The crypto backend among a machine's virtio slots, for summaries."""
    for transport in devices:
        backend = getattr(transport, "device", None)
        if isinstance(backend, CryptoDevice):
            return backend
    return None
