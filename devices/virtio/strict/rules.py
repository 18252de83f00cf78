"""The rules: one data entry per driver MUST of the virtio spec the checker can see.

A rule names the events it looks at (`on`), and its `check` gets the checker's view
of the driver (`DriverView`, before the event changes it) and the event; it returns
the offending values (a dict) or None. Keeping rules as data lets docs/strict.md, the
monitor and the tests list exactly the same rules the checker enforces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from vmsim.devices.virtio.spec import Feature, Reg, Status

Values = dict[str, Any]
Check = Callable[[Any, Any], "Values | None"]

# Conformance label prefixes (virtio 1.x `drivernormative:` labels).
BASIC = "drivernormative:Basic Facilities of a Virtio Device"
INIT = "drivernormative:General Initialization And Device Operation / Device Initialization"
MMIO_LAYOUT = "drivernormative:Virtio Transport Options / Virtio Over MMIO / MMIO Device Register Layout"
MMIO_INIT = ("drivernormative:Virtio Transport Options / Virtio Over MMIO / "
             "MMIO-specific Initialization And Device Operation / Device Initialization")
RINGS = f"{BASIC} / Virtqueues"

# Events a rule can look at.
READ, WRITE, CHAIN, RING, REQUEST, DRIVER_OK = (
    "read", "write", "chain", "ring", "request", "driver_ok")


@dataclass(frozen=True)
class Rule:
    """One driver MUST: `text` says it in plain words, `section` and `label` cite it."""

    id: str
    text: str
    section: str
    label: str
    on: tuple[str, ...]
    check: Check = field(repr=False, compare=False)


@dataclass(frozen=True)
class Finding:
    """A broken rule, the first time: where (device, queue) and the offending values.
    `pc` is filled in by the machine, which alone knows it."""

    rule: Rule
    device: str
    values: Values
    queue: int | None = None
    pc: int | None = None

    def describe(self) -> str:
        """One line: rule id, plain words, citation, pc and values."""
        where = f"{self.device}" + (f" queue {self.queue}" if self.queue is not None else "")
        pc = f" at pc {self.pc:#x}" if self.pc is not None else ""
        values = " ".join(f"{key}={_show(value)}" for key, value in self.values.items())
        return (f"{where}: {self.rule.id}: {self.rule.text} "
                f"(virtio {self.rule.section}, {self.rule.label}){pc}: {values}")


def _show(value: Any) -> str:
    return f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Access:
    """A register access by the driver (`value` is None for a read)."""

    offset: int
    size: int
    value: int | None = None


# ---- registers ---------------------------------------------------------------------------

READ_ONLY = frozenset({
    Reg.MAGIC_VALUE, Reg.VERSION, Reg.DEVICE_ID, Reg.VENDOR_ID, Reg.DEVICE_FEATURES,
    Reg.QUEUE_NUM_MAX, Reg.INTERRUPT_STATUS, Reg.SHM_LEN_LOW, Reg.SHM_LEN_HIGH,
    Reg.SHM_BASE_LOW, Reg.SHM_BASE_HIGH, Reg.CONFIG_GENERATION})
WRITE_ONLY = frozenset({
    Reg.DEVICE_FEATURES_SEL, Reg.DRIVER_FEATURES, Reg.DRIVER_FEATURES_SEL, Reg.QUEUE_SEL,
    Reg.QUEUE_NUM, Reg.QUEUE_NOTIFY, Reg.INTERRUPT_ACK, Reg.QUEUE_DESC_LOW,
    Reg.QUEUE_DESC_HIGH, Reg.QUEUE_DRIVER_LOW, Reg.QUEUE_DRIVER_HIGH, Reg.QUEUE_DEVICE_LOW,
    Reg.QUEUE_DEVICE_HIGH, Reg.SHM_SEL})
READ_WRITE = frozenset({Reg.QUEUE_READY, Reg.STATUS})
QUEUE_SETUP = frozenset({
    Reg.QUEUE_NUM, Reg.QUEUE_DESC_LOW, Reg.QUEUE_DESC_HIGH, Reg.QUEUE_DRIVER_LOW,
    Reg.QUEUE_DRIVER_HIGH, Reg.QUEUE_DEVICE_LOW, Reg.QUEUE_DEVICE_HIGH})
IDENTITY = frozenset({Reg.MAGIC_VALUE, Reg.VERSION, Reg.DEVICE_ID})
_INTERRUPT_BITS = 0x3  # used buffer, configuration change
_ORDER = ((Status.DRIVER, Status.ACKNOWLEDGE), (Status.FEATURES_OK, Status.DRIVER),
          (Status.DRIVER_OK, Status.FEATURES_OK))


def _control(access: Access) -> bool:
    return access.offset < Reg.CONFIG


def _status_write(access: Access) -> bool:
    return access.offset == Reg.STATUS and access.value is not None


def _identify_first(view: Any, access: Access) -> Values | None:
    if access.offset in IDENTITY and access.value is None:
        return None
    missing = IDENTITY - view.identified
    if missing:
        return {"register": access.offset, "unread": ",".join(hex(r) for r in sorted(missing))}
    return None


def _register_width(_view: Any, access: Access) -> Values | None:
    if _control(access) and (access.size != 4 or access.offset % 4):
        return {"register": access.offset, "size": access.size}
    return None


def _config_width(_view: Any, access: Access) -> Values | None:
    if not _control(access) and (access.size not in (1, 2, 4) or access.offset % access.size):
        return {"config_offset": access.offset - Reg.CONFIG, "size": access.size}
    return None


def _readonly_write(_view: Any, access: Access) -> Values | None:
    if _control(access) and access.offset not in WRITE_ONLY | READ_WRITE:
        return {"register": access.offset, "value": access.value}
    return None


def _writeonly_read(_view: Any, access: Access) -> Values | None:
    if _control(access) and access.offset not in READ_ONLY | READ_WRITE:
        return {"register": access.offset}
    return None


def _features_sel_first(view: Any, access: Access) -> Values | None:
    if access.offset == Reg.DRIVER_FEATURES and not view.driver_features_sel_written:
        return {"value": access.value}
    return None


def _queue_num_max(view: Any, access: Access) -> Values | None:
    if access.offset == Reg.QUEUE_NUM:
        maximum = view.queue_num_max()
        if access.value > maximum:
            return {"queue": view.queue_sel, "queue_num": access.value, "queue_num_max": maximum}
    return None


def _queue_num_max_read(view: Any, access: Access) -> Values | None:
    if access.offset == Reg.QUEUE_NUM and view.queue_sel not in view.num_max_read:
        return {"queue": view.queue_sel, "queue_num": access.value}
    return None


def _queue_ready_setup(view: Any, access: Access) -> Values | None:
    if access.offset in QUEUE_SETUP and view.queue_ready():
        return {"queue": view.queue_sel, "register": access.offset, "value": access.value}
    return None


def _queue_ready_readback(view: Any, access: Access) -> Values | None:
    if view.ready_readback is not None and not (
            access.offset == Reg.QUEUE_READY and access.value is None):
        return {"queue": view.ready_readback, "next_register": access.offset}
    return None


def _interrupt_ack_bits(_view: Any, access: Access) -> Values | None:
    if access.offset == Reg.INTERRUPT_ACK and access.value & ~_INTERRUPT_BITS:
        return {"value": access.value, "undefined": access.value & ~_INTERRUPT_BITS}
    return None


def _status_order(view: Any, access: Access) -> Values | None:
    if not _status_write(access) or access.value == 0:
        return None
    for bit, needed in _ORDER:
        if access.value & bit and not view.status & bit and not access.value & needed:
            return {"status": view.status, "written": access.value}
    return None


def _status_clear(view: Any, access: Access) -> Values | None:
    if _status_write(access) and access.value and view.status & ~access.value & 0xBF:
        return {"status": view.status, "written": access.value}
    return None


def _reset_readback(view: Any, access: Access) -> Values | None:
    if view.reset_unconfirmed and access.value is not None:
        return {"register": access.offset, "value": access.value}
    return None


def _features_after_ok(view: Any, access: Access) -> Values | None:
    if access.offset == Reg.DRIVER_FEATURES and view.status & Status.FEATURES_OK:
        return {"select": view.driver_features_sel, "value": access.value}
    return None


def _features_ok_reread(view: Any, access: Access) -> Values | None:
    if view.features_ok_unconfirmed and access.value is not None and (
            access.offset in QUEUE_SETUP | {Reg.QUEUE_READY, Reg.QUEUE_NOTIFY}
            or _status_write(access) and access.value & Status.DRIVER_OK):
        return {"register": access.offset, "value": access.value}
    return None


def _features_offered(view: Any, access: Access) -> Values | None:
    if _sets_features_ok(view, access):
        extra = view.driver_features & ~view.offered
        if extra:
            return {"accepted": view.driver_features, "offered": view.offered, "not_offered": extra}
    return None


def _features_version_1(view: Any, access: Access) -> Values | None:
    if (_sets_features_ok(view, access) and view.offered & Feature.VERSION_1
            and not view.driver_features & Feature.VERSION_1):
        return {"accepted": view.driver_features}
    return None


def _sets_features_ok(view: Any, access: Access) -> bool:
    return (_status_write(access) and bool(access.value & Status.FEATURES_OK)
            and not view.status & Status.FEATURES_OK)


def _notify_before_driver_ok(view: Any, access: Access) -> Values | None:
    if access.offset == Reg.QUEUE_NOTIFY and access.value is not None \
            and not view.status & Status.DRIVER_OK:
        return {"queue": access.value, "status": view.status}
    return None


# ---- rings and chains (see chains.ChainWalk and checker.RingState) -------------------------

_ALIGN = (("desc", 16), ("driver", 2), ("device", 4))


def _ring_alignment(view: Any, access: Access) -> Values | None:
    if access.offset == Reg.QUEUE_READY and access.value is not None and access.value & 1:
        addrs = view.queue_addrs.get(view.queue_sel, {})
        wrong = {f"{area}_addr": addrs.get(area, 0) for area, align in _ALIGN
                 if addrs.get(area, 0) % align}
        if wrong:
            return {"queue": view.queue_sel, **wrong}
    return None


def _avail_idx(_view: Any, ring: Any) -> Values | None:
    if ring.pending > ring.size:
        return {"avail_idx": ring.avail_idx, "used_idx": ring.used_idx, "size": ring.size}
    return None


def _avail_flags(_view: Any, ring: Any) -> Values | None:
    allowed = 0 if ring.event_idx else 1
    if ring.flags & ~allowed:
        return {"flags": ring.flags, "event_idx": ring.event_idx}
    return None


def _chain_fact(name: str) -> Check:
    def check(_view: Any, walk: Any) -> Values | None:
        return walk.problems.get(name)
    return check


# Rule ids of the chain facts (chains.ChainWalk.problems keys).
HEAD_RANGE, NEXT_RANGE, LOOP, TOO_LONG, WRITE_ORDER = (
    "chain-head-range", "chain-next-range", "chain-loop", "chain-too-long", "chain-write-order")
INDIRECT_FEATURE, INDIRECT_NESTED, INDIRECT_NEXT, INDIRECT_SIZE = (
    "indirect-not-negotiated", "indirect-nested", "indirect-with-next", "indirect-table-size")

_DESC_TABLE = f"{RINGS} / The Virtqueue Descriptor Table"
_INDIRECT = f"{_DESC_TABLE} / Indirect Descriptors"

RULES: tuple[Rule, ...] = (
    # General initialization (3.1), status (2.1), reset (2.4), features (2.2, 6).
    Rule("mmio-identify-first", "read MagicValue, Version and DeviceID before any other "
         "register", "4.2.3.1.1", MMIO_INIT, (READ, WRITE), _identify_first),
    Rule("status-order", "set ACKNOWLEDGE, DRIVER, FEATURES_OK and DRIVER_OK in that order",
         "3.1.1", INIT, (WRITE,), _status_order),
    Rule("status-clear", "never clear a device status bit except by a reset (writing 0)",
         "2.1.1", f"{BASIC} / Device Status Field", (WRITE,), _status_clear),
    Rule("reset-readback", "after writing 0 to Status, read Status back as 0 before "
         "writing anything else", "2.4.2", f"{BASIC} / Device Reset", (WRITE,), _reset_readback),
    Rule("features-not-offered", "accept no feature the device did not offer", "2.2.1",
         f"{BASIC} / Feature Bits", (WRITE,), _features_offered),
    Rule("features-version-1", "accept VIRTIO_F_VERSION_1 when the device offers it", "6.1",
         "drivernormative:Reserved Feature Bits", (WRITE,), _features_version_1),
    Rule("features-after-features-ok", "write no feature bits after setting FEATURES_OK",
         "3.1.1", INIT, (WRITE,), _features_after_ok),
    Rule("features-ok-reread", "re-read Status after setting FEATURES_OK, before setting up "
         "queues or DRIVER_OK", "3.1.1", INIT, (WRITE,), _features_ok_reread),
    Rule("notify-before-driver-ok", "notify no queue before setting DRIVER_OK", "3.1.1", INIT,
         (WRITE,), _notify_before_driver_ok),
    # The MMIO register layout (4.2.2.2).
    Rule("mmio-register-width", "access the control registers with aligned 32-bit reads "
         "and writes only", "4.2.2.2", MMIO_LAYOUT, (READ, WRITE), _register_width),
    Rule("mmio-config-width", "access config space with aligned 8-, 16- or 32-bit accesses "
         "(64-bit fields as two 32-bit halves)", "4.2.2.2", MMIO_LAYOUT, (READ, WRITE), _config_width),
    Rule("mmio-readonly-write", "write no read-only or undefined register", "4.2.2.2",
         MMIO_LAYOUT, (WRITE,), _readonly_write),
    Rule("mmio-writeonly-read", "read no write-only or undefined register", "4.2.2.2",
         MMIO_LAYOUT, (READ,), _writeonly_read),
    Rule("mmio-features-sel-first", "write DriverFeaturesSel before writing DriverFeatures",
         "4.2.2.2", MMIO_LAYOUT, (WRITE,), _features_sel_first),
    Rule("mmio-queue-num-max", "write QueueNum no larger than QueueNumMax", "4.2.2.2",
         MMIO_LAYOUT, (WRITE,), _queue_num_max),
    Rule("mmio-queue-num-max-unread", "read QueueNumMax of the selected queue before "
         "writing its QueueNum", "4.2.3.2", MMIO_INIT, (WRITE,), _queue_num_max_read),
    Rule("mmio-queue-ready-setup", "leave QueueNum and the queue addresses alone while "
         "QueueReady is not zero", "4.2.2.2", MMIO_LAYOUT, (WRITE,), _queue_ready_setup),
    Rule("mmio-queue-ready-readback", "after writing 0 to QueueReady, read it back before "
         "anything else", "4.2.2.2", MMIO_LAYOUT, (READ, WRITE), _queue_ready_readback),
    Rule("mmio-interrupt-ack-bits", "set no undefined bit in InterruptACK", "4.2.2.2",
         MMIO_LAYOUT, (WRITE,), _interrupt_ack_bits),
    # Split virtqueues (2.7).
    Rule("ring-alignment", "align the descriptor table to 16 bytes, the driver area to 2 "
         "and the device area to 4", "2.7", RINGS, (WRITE,), _ring_alignment),
    Rule("avail-idx", "move avail idx forward only, by no more than the free entries "
         "(never more than the queue size ahead of used idx)", "2.7.6",
         f"{RINGS} / The Virtqueue Available Ring", (RING,), _avail_idx),
    Rule("avail-flags", "set avail flags to 0 or 1 (to 0 when VIRTIO_F_EVENT_IDX was "
         "negotiated)", "2.7.7", f"{RINGS} / Used Buffer Notification Suppression", (RING,),
         _avail_flags),
    Rule(HEAD_RANGE, "make available only heads below the queue size", "2.7.6",
         f"{RINGS} / The Virtqueue Available Ring", (CHAIN,), _chain_fact(HEAD_RANGE)),
    Rule(NEXT_RANGE, "keep every next index inside its descriptor table", "2.7.5",
         _DESC_TABLE, (CHAIN,), _chain_fact(NEXT_RANGE)),
    Rule(LOOP, "build chains without loops", "2.7.5", _DESC_TABLE, (CHAIN,), _chain_fact(LOOP)),
    Rule(TOO_LONG, "make no chain carry more than 2^32 bytes", "2.7.5", _DESC_TABLE, (CHAIN,),
         _chain_fact(TOO_LONG)),
    Rule(WRITE_ORDER, "put device-writable descriptors after all device-readable ones",
         "2.7.4", f"{RINGS} / Message Framing", (CHAIN,), _chain_fact(WRITE_ORDER)),
    Rule(INDIRECT_FEATURE, "use INDIRECT only when VIRTIO_F_INDIRECT_DESC was negotiated",
         "2.7.5.3.1", _INDIRECT, (CHAIN,), _chain_fact(INDIRECT_FEATURE)),
    Rule(INDIRECT_NESTED, "put no INDIRECT descriptor inside an indirect table", "2.7.5.3.1",
         _INDIRECT, (CHAIN,), _chain_fact(INDIRECT_NESTED)),
    Rule(INDIRECT_NEXT, "never set NEXT together with INDIRECT", "2.7.5.3.1", _INDIRECT,
         (CHAIN,), _chain_fact(INDIRECT_NEXT)),
    Rule(INDIRECT_SIZE, "make no chain, through an indirect table too, longer than the "
         "queue size", "2.7.5.3.1", _INDIRECT, (CHAIN,), _chain_fact(INDIRECT_SIZE)),
)
