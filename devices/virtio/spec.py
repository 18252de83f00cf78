"""Numbers from the virtio 1.x specification that both sides of a virtqueue agree on.

Kept in one module so the transport, the queues, the test driver and the trace viewers
name the same registers and bits the same way.
"""
from __future__ import annotations

MAGIC_VALUE = 0x74726976  # "virt", little-endian
MMIO_VERSION = 2  # the modern (non-legacy) virtio-mmio layout
VENDOR_ID = 0x4D495356  # "VSIM"


class Reg:
    """virtio-mmio register offsets (virtio 1.2, section 4.2.2)."""

    MAGIC_VALUE = 0x000
    VERSION = 0x004
    DEVICE_ID = 0x008
    VENDOR_ID = 0x00C
    DEVICE_FEATURES = 0x010
    DEVICE_FEATURES_SEL = 0x014
    DRIVER_FEATURES = 0x020
    DRIVER_FEATURES_SEL = 0x024
    QUEUE_SEL = 0x030
    QUEUE_NUM_MAX = 0x034
    QUEUE_NUM = 0x038
    QUEUE_READY = 0x044
    QUEUE_NOTIFY = 0x050
    INTERRUPT_STATUS = 0x060
    INTERRUPT_ACK = 0x064
    STATUS = 0x070
    QUEUE_DESC_LOW = 0x080
    QUEUE_DESC_HIGH = 0x084
    QUEUE_DRIVER_LOW = 0x090
    QUEUE_DRIVER_HIGH = 0x094
    QUEUE_DEVICE_LOW = 0x0A0
    QUEUE_DEVICE_HIGH = 0x0A4
    SHM_SEL = 0x0AC
    SHM_LEN_LOW = 0x0B0
    SHM_LEN_HIGH = 0x0B4
    SHM_BASE_LOW = 0x0B8
    SHM_BASE_HIGH = 0x0BC
    CONFIG_GENERATION = 0x0FC
    CONFIG = 0x100


class Status:
    """Device status bits (section 2.1)."""

    ACKNOWLEDGE = 0x01
    DRIVER = 0x02
    DRIVER_OK = 0x04
    FEATURES_OK = 0x08
    DEVICE_NEEDS_RESET = 0x40
    FAILED = 0x80


class Feature:
    """Transport feature bits (section 6), as masks over the 64-bit feature word."""

    INDIRECT_DESC = 1 << 28
    EVENT_IDX = 1 << 29
    VERSION_1 = 1 << 32
    DEVICE_SPECIFIC_MASK = (1 << 24) - 1  # bits 0..23 belong to the device type


class Interrupt:
    """InterruptStatus bits."""

    USED_BUFFER = 0x1
    CONFIG_CHANGE = 0x2


class Desc:
    """Split-ring descriptor flags (section 2.7.5)."""

    NEXT = 0x1
    WRITE = 0x2
    INDIRECT = 0x4
    SIZE = 16  # bytes: addr u64, len u32, flags u16, next u16


AVAIL_F_NO_INTERRUPT = 0x1  # driver -> device: do not interrupt me
USED_F_NO_NOTIFY = 0x1  # device -> driver: do not kick me

STATUS_NAMES = {
    Status.ACKNOWLEDGE: "ACKNOWLEDGE",
    Status.DRIVER: "DRIVER",
    Status.DRIVER_OK: "DRIVER_OK",
    Status.FEATURES_OK: "FEATURES_OK",
    Status.DEVICE_NEEDS_RESET: "DEVICE_NEEDS_RESET",
    Status.FAILED: "FAILED",
}


def status_names(status: int) -> str:
    """Readable form of a status byte for traces, e.g. "ACKNOWLEDGE|DRIVER"."""
    names = [name for bit, name in STATUS_NAMES.items() if status & bit]
    return "|".join(names) if names else "RESET"


TRANSPORT_FEATURE_NAMES = {
    28: "RING_INDIRECT_DESC", 29: "RING_EVENT_IDX", 32: "VERSION_1",
    33: "ACCESS_PLATFORM", 34: "RING_PACKED", 35: "IN_ORDER", 36: "ORDER_PLATFORM",
    37: "SR_IOV", 38: "NOTIFICATION_DATA", 39: "NOTIF_CONFIG_DATA", 40: "RING_RESET",
}


def feature_names(bits: int, device_names: dict[int, str] | None = None) -> list[str]:
    """A feature word as names, lowest bit first (e.g. ["VERSION_1"]); a bit nobody
    named shows as "bit N", so nothing offered or accepted is hidden."""
    names = device_names or {}
    out = []
    for bit in range(64):
        if bits >> bit & 1:
            out.append(names.get(bit) or TRANSPORT_FEATURE_NAMES.get(bit) or f"bit {bit}")
    return out


def avail_ring_bytes(size: int) -> int:
    """Bytes of the driver area: flags, idx, ring[size], used_event."""
    return 6 + 2 * size


def used_ring_bytes(size: int) -> int:
    """Bytes of the device area: flags, idx, ring[size] of (id, len), avail_event."""
    return 6 + 8 * size


def need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """The EVENT_IDX rule (section 2.7.10): has `event_idx` been crossed by moving
    from old_idx to new_idx, in 16-bit wrap-around arithmetic?"""
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)
