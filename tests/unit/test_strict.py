"""`--strict`: each driver rule is flagged when the Python test driver breaks it, once,
with its values, and stays silent when the driver keeps it.

The driver is vmsim/testing/virtio_driver.py, which does what Linux 6.1 does; each
broken case changes one step of that sequence, and each case also checks that no
other rule fired, so a rule that fires on a well-behaved driver fails its neighbours.
"""
from __future__ import annotations

import struct

import pytest

from vmsim.devices.virtio.crypto import strict as crypto_strict
from vmsim.devices.virtio.crypto.constants import CryptoFeatures, Op
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.mmio import MmioTransport
from vmsim.devices.virtio.spec import Desc, Feature, Reg, Status
from vmsim.devices.virtio.strict import rules
from vmsim.devices.virtio.strict.rules import Finding
from vmsim.devices.virtio.strict.transport import CheckedTransport
from vmsim.testing.crypto_rig import ServiceRig, ctrl_header, data_header, sym_flf, u32
from vmsim.testing.virtio_driver import Descriptor, EchoDevice, Rig, make_rig

ECHO_FEATURES = Feature.VERSION_1 | Feature.INDIRECT_DESC | Feature.EVENT_IDX


class Echo:
    """An EchoDevice rig whose driver goes through the checker; findings collected."""

    def __init__(self) -> None:
        self.found: list[Finding] = []
        self.rig: Rig = make_rig(EchoDevice(), strict=self.found.append)
        self.d = self.rig.driver

    def ids(self) -> list[str]:
        return [finding.rule.id for finding in self.found]

    def start(self, wanted: int | None = None, queues: int = 2) -> None:
        self.d.init(num_queues=queues, queue_size=16, wanted=wanted)

    def up_to_driver(self) -> None:
        """Identify, reset, ACKNOWLEDGE, DRIVER: where feature negotiation starts."""
        self.d.identify()
        self.d.reset()
        self.d.add_status(Status.ACKNOWLEDGE)
        self.d.add_status(Status.DRIVER)


def only(found: Echo | list[Finding], rule_id: str) -> Finding:
    findings = found.found if isinstance(found, Echo) else found
    assert [f.rule.id for f in findings] == [rule_id], [f.describe() for f in findings]
    return findings[0]


# ---- a driver that keeps every rule ----------------------------------------------------

def test_a_driver_keeping_every_rule_is_never_flagged() -> None:
    echo = Echo()
    echo.start(ECHO_FEATURES)
    q = echo.d.queues[0]
    for indirect in (False, True, False):
        q.submit([b"header", b"payload"], [8, 1], indirect=indirect)
        q.collect()
    q.set_avail_flags(0)
    echo.d.ack_interrupt()
    echo.d.read_reg(Reg.CONFIG + 4, 4)
    echo.d.read_reg(Reg.CONFIG + 2, 2)
    echo.d.write_reg(Reg.QUEUE_SEL, 1)                 # stop a queue, then read it back
    echo.d.write_reg(Reg.QUEUE_READY, 0)
    assert echo.d.read_reg(Reg.QUEUE_READY) == 0
    echo.start(Feature.VERSION_1)                      # reset and start again, no extras
    q = echo.d.queues[0]
    for _ in range(40):                                # past the ring size: idx wraps on
        q.submit([b"x" * 20], [20])
        q.collect()
    assert echo.found == []


def test_a_linux_like_crypto_driver_is_never_flagged() -> None:
    found: list[Finding] = []
    for features, indirect in ((CryptoFeatures.DEFAULT, True), (CryptoFeatures.ALL, False)):
        rig = ServiceRig(CryptoDevice(workers=0, features=features), strict=found.append,
                         indirect=indirect)
        try:
            sid = rig.create_cipher(3, bytes(16))             # AES-CBC
            assert rig.cipher(sid, bytes(16), bytes(32)).status == 0
            hsid = rig.create_hash(4, 32)                     # SHA-256
            assert rig.digest(Op.HASH, hsid, b"abc", 32).status == 0
            msid = rig.create_mac(4, b"k" * 32, 32)           # HMAC-SHA-256
            assert rig.digest(Op.MAC, msid, b"abc", 32).status == 0
            assert rig.destroy(Op.CIPHER_DESTROY_SESSION, sid) == 0
            assert rig.destroy(Op.HASH_DESTROY_SESSION, hsid) == 0
        finally:
            rig.close()
    assert found == [], [f.describe() for f in found]


def test_without_strict_the_slot_is_the_plain_transport() -> None:
    from vmsim.devices.bus import LevelRecorder, NullWaker
    from vmsim.devices.memory import Ram
    from vmsim.devices.model import SlotContext
    from vmsim.devices.virtio.crypto.model import MODEL

    ram = Ram(0x8000_0000, 1 << 20)
    try:
        plain = MODEL.configure(workers=0)(SlotContext(ram, LevelRecorder(), NullWaker()))
        checked = MODEL.configure(workers=0)(SlotContext(ram, LevelRecorder(), NullWaker(),
                                                         strict=lambda finding: None))
        assert type(plain) is MmioTransport
        assert isinstance(checked, CheckedTransport) and checked.device.device_id == 20
        assert {r.id for r in crypto_strict.RULES} <= {
            r.id for rules_ in checked.checker._rules.values() for r in rules_}
    finally:
        ram.close()


def test_each_rule_is_reported_once_then_counted() -> None:
    echo = Echo()
    echo.start()
    for value in (0x10, 0x20, 0x40):
        echo.d.write_reg(Reg.INTERRUPT_ACK, value)
    finding = only(echo, "mmio-interrupt-ack-bits")
    assert finding.values == {"value": 0x10, "undefined": 0x10}
    assert echo.rig.transport is not None
    checker = echo.d.mmio.checker
    assert checker.counts["mmio-interrupt-ack-bits"] == 3
    text = finding.describe()
    assert "virtio 4.2.2.2" in text and "drivernormative:Virtio Transport Options" in text


def test_every_rule_has_words_a_section_and_a_drivernormative_label() -> None:
    for rule in (*rules.RULES, *crypto_strict.RULES):
        assert rule.text and rule.section[0].isdigit() and rule.on
        assert rule.label.startswith("drivernormative:"), rule.id


# ---- initialization, status and features ------------------------------------------------

def test_identify_first() -> None:
    echo = Echo()
    echo.d.write_reg(Reg.STATUS, 0)
    assert only(echo, "mmio-identify-first").values["register"] == Reg.STATUS


def test_status_order() -> None:
    echo = Echo()
    echo.d.identify()
    echo.d.reset()
    echo.d.add_status(Status.ACKNOWLEDGE)
    echo.d.write_driver_features(Feature.VERSION_1)
    echo.d.add_status(Status.FEATURES_OK)             # DRIVER skipped
    finding = only(echo, "status-order")
    assert finding.values == {"status": Status.ACKNOWLEDGE,
                              "written": Status.ACKNOWLEDGE | Status.FEATURES_OK}


def test_status_clear() -> None:
    echo = Echo()
    echo.up_to_driver()
    echo.d.write_reg(Reg.STATUS, Status.ACKNOWLEDGE)   # drops DRIVER
    only(echo, "status-clear")


def test_reset_readback() -> None:
    echo = Echo()
    echo.d.identify()
    echo.d.write_reg(Reg.STATUS, 0)
    echo.d.write_reg(Reg.STATUS, Status.ACKNOWLEDGE)   # no read of Status in between
    only(echo, "reset-readback")


def test_features_not_offered() -> None:
    echo = Echo()
    echo.up_to_driver()
    echo.d.write_driver_features(Feature.VERSION_1 | 1 << 5)
    echo.d.add_status(Status.FEATURES_OK)
    assert only(echo, "features-not-offered").values["not_offered"] == 1 << 5


def test_features_version_1() -> None:
    echo = Echo()
    echo.up_to_driver()
    echo.d.write_driver_features(0)
    echo.d.add_status(Status.FEATURES_OK)
    only(echo, "features-version-1")


def test_features_after_features_ok() -> None:
    echo = Echo()
    echo.d.negotiate(Feature.VERSION_1)
    echo.d.write_driver_features(Feature.VERSION_1 | Feature.EVENT_IDX)
    only(echo, "features-after-features-ok")


def test_features_ok_reread() -> None:
    echo = Echo()
    echo.up_to_driver()
    echo.d.write_driver_features(Feature.VERSION_1)
    echo.d.write_reg(Reg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK)
    echo.d.setup_queue(0, 16)                          # Status never read back
    only(echo, "features-ok-reread")


def test_notify_before_driver_ok() -> None:
    echo = Echo()
    echo.d.negotiate(Feature.VERSION_1)
    echo.d.setup_queue(0, 16).kick()
    assert only(echo, "notify-before-driver-ok").values["queue"] == 0


# ---- the MMIO register layout -------------------------------------------------------------

@pytest.mark.parametrize("access", ["read", "write"])
def test_register_width(access: str) -> None:
    echo = Echo()
    echo.start()
    if access == "read":
        echo.d.read_reg(Reg.STATUS, 2)
    else:
        echo.d.write_reg(Reg.INTERRUPT_ACK, 0, 2)
    only(echo, "mmio-register-width")


def test_config_width() -> None:
    echo = Echo()
    echo.start()
    echo.d.read_reg(Reg.CONFIG, 8)
    echo.d.read_reg(Reg.CONFIG + 1, 2)
    assert only(echo, "mmio-config-width").values == {"config_offset": 0, "size": 8}
    assert echo.d.mmio.checker.counts["mmio-config-width"] == 2


def test_readonly_write() -> None:
    echo = Echo()
    echo.start()
    echo.d.write_reg(Reg.QUEUE_NUM_MAX, 4)
    assert only(echo, "mmio-readonly-write").values["register"] == Reg.QUEUE_NUM_MAX


def test_writeonly_read() -> None:
    echo = Echo()
    echo.start()
    echo.d.read_reg(Reg.QUEUE_SEL)
    only(echo, "mmio-writeonly-read")


def test_features_sel_first() -> None:
    echo = Echo()
    echo.up_to_driver()
    echo.d.write_reg(Reg.DRIVER_FEATURES, 0)
    only(echo, "mmio-features-sel-first")


def test_queue_num_max() -> None:
    echo = Echo()
    echo.d.negotiate(Feature.VERSION_1)
    echo.d.write_reg(Reg.QUEUE_SEL, 0)
    maximum = echo.d.read_reg(Reg.QUEUE_NUM_MAX)
    echo.d.write_reg(Reg.QUEUE_NUM, maximum * 2)
    assert only(echo, "mmio-queue-num-max").values == {
        "queue": 0, "queue_num": maximum * 2, "queue_num_max": maximum}


def test_queue_num_max_unread() -> None:
    echo = Echo()
    echo.d.negotiate(Feature.VERSION_1)
    echo.d.write_reg(Reg.QUEUE_SEL, 1)
    echo.d.write_reg(Reg.QUEUE_NUM, 8)
    only(echo, "mmio-queue-num-max-unread")


def test_queue_ready_setup() -> None:
    echo = Echo()
    echo.d.negotiate(Feature.VERSION_1)
    echo.d.setup_queue(0, 16)
    echo.d.write_reg(Reg.QUEUE_NUM, 8)                 # queue 0 is still selected, ready
    only(echo, "mmio-queue-ready-setup")


def test_queue_ready_readback() -> None:
    echo = Echo()
    echo.start()
    echo.d.write_reg(Reg.QUEUE_SEL, 0)
    echo.d.write_reg(Reg.QUEUE_READY, 0)
    echo.d.write_reg(Reg.QUEUE_SEL, 1)
    assert only(echo, "mmio-queue-ready-readback").values == {
        "queue": 0, "next_register": Reg.QUEUE_SEL}


def test_interrupt_ack_bits() -> None:
    echo = Echo()
    echo.start()
    echo.d.write_reg(Reg.INTERRUPT_ACK, 0x3)
    assert echo.found == []
    echo.d.write_reg(Reg.INTERRUPT_ACK, 0x4)
    only(echo, "mmio-interrupt-ack-bits")


# ---- split virtqueues ---------------------------------------------------------------------

def test_ring_alignment() -> None:
    echo = Echo()
    echo.d.negotiate(Feature.VERSION_1)
    d = echo.d
    d.write_reg(Reg.QUEUE_SEL, 0)
    d.read_reg(Reg.QUEUE_READY)
    d.read_reg(Reg.QUEUE_NUM_MAX)
    d.write_reg(Reg.QUEUE_NUM, 16)
    base = d.heap.alloc(4096, 16)
    for low, addr in ((Reg.QUEUE_DESC_LOW, base + 8), (Reg.QUEUE_DRIVER_LOW, base + 1024),
                      (Reg.QUEUE_DEVICE_LOW, base + 2048 + 2)):
        d.write_reg(low, addr & 0xFFFF_FFFF)
        d.write_reg(low + 4, addr >> 32)
    d.write_reg(Reg.QUEUE_READY, 1)
    assert only(echo, "ring-alignment").values == {
        "queue": 0, "desc_addr": base + 8, "device_addr": base + 2048 + 2}


def test_avail_idx_never_runs_more_than_the_queue_size_ahead() -> None:
    echo = Echo()
    echo.start()
    q = echo.d.queues[0]
    q.set_avail_idx(q.size + 1)
    q.kick()
    assert only(echo, "avail-idx").values == {"avail_idx": 17, "used_idx": 0, "size": 16}


def test_avail_idx_never_goes_backwards() -> None:
    echo = Echo()
    echo.start()
    q = echo.d.queues[0]
    q.submit([b"a"], [1])
    q.collect()
    q.set_avail_idx(0)
    q.kick()
    only(echo, "avail-idx")


@pytest.mark.parametrize("event_idx,flags,flagged", [
    (False, 1, False), (False, 2, True), (True, 0, False), (True, 1, True)])
def test_avail_flags(event_idx: bool, flags: int, flagged: bool) -> None:
    echo = Echo()
    echo.start(Feature.VERSION_1 | (Feature.EVENT_IDX if event_idx else 0))
    q = echo.d.queues[0]
    q.set_avail_flags(flags)
    q.submit([b"a"], [1])
    if flagged:
        assert only(echo, "avail-flags").values == {"flags": flags, "event_idx": event_idx}
    else:
        assert echo.found == []


def _raw_chain(echo: Echo, descriptors: list[Descriptor], head: int = 0) -> None:
    q = echo.d.queues[0]
    for index, desc in enumerate(descriptors):
        q.write_desc(index, desc)
    q.make_available(head)
    q.kick()


def _buf(echo: Echo, size: int = 16) -> int:
    return echo.d.heap.alloc(size)


def test_chain_head_range() -> None:
    echo = Echo()
    echo.start()
    _raw_chain(echo, [], head=16 + 3)
    assert only(echo, "chain-head-range").values == {"head": 19, "size": 16}


def test_chain_next_range() -> None:
    echo = Echo()
    echo.start()
    _raw_chain(echo, [Descriptor(_buf(echo), 8, Desc.NEXT, 16 + 5)])
    assert only(echo, "chain-next-range").values["next"] == 21


def test_chain_loop() -> None:
    echo = Echo()
    echo.start()
    buf = _buf(echo)
    _raw_chain(echo, [Descriptor(buf, 8, Desc.NEXT, 1), Descriptor(buf, 8, Desc.NEXT, 0)])
    assert only(echo, "chain-loop").values == {"head": 0, "index": 0, "indirect": False}


def test_chain_too_long() -> None:
    echo = Echo()
    echo.start()
    buf = _buf(echo)
    _raw_chain(echo, [Descriptor(buf, 0x8000_0000, Desc.NEXT, 1),
                      Descriptor(buf, 0x8000_0001, Desc.WRITE)])
    assert only(echo, "chain-too-long").values == {"head": 0, "bytes": (1 << 32) + 1}


def test_chain_write_order() -> None:
    echo = Echo()
    echo.start()
    buf = _buf(echo)
    _raw_chain(echo, [Descriptor(buf, 8, Desc.WRITE | Desc.NEXT, 1), Descriptor(buf, 8, 0)])
    only(echo, "chain-write-order")


def test_indirect_not_negotiated() -> None:
    echo = Echo()
    echo.start(Feature.VERSION_1)
    echo.d.queues[0].submit([b"abc"], [4], indirect=True)
    only(echo, "indirect-not-negotiated")


def test_indirect_nested() -> None:
    echo = Echo()
    echo.start(ECHO_FEATURES)
    q = echo.d.queues[0]
    inner = q.raw_table([Descriptor(_buf(echo), 8, 0)])
    outer = q.raw_table([Descriptor(inner, 16, Desc.INDIRECT)])
    _raw_chain(echo, [Descriptor(outer, 16, Desc.INDIRECT)])
    only(echo, "indirect-nested")


def test_indirect_with_next() -> None:
    echo = Echo()
    echo.start(ECHO_FEATURES)
    q = echo.d.queues[0]
    table = q.raw_table([Descriptor(_buf(echo), 8, 0)])
    _raw_chain(echo, [Descriptor(table, 16, Desc.INDIRECT | Desc.NEXT, 1),
                      Descriptor(_buf(echo), 8, Desc.WRITE)])
    assert only(echo, "indirect-with-next").values["flags"] == Desc.INDIRECT | Desc.NEXT


@pytest.mark.parametrize("entries,flagged", [(16, False), (17, True)])
def test_indirect_table_size(entries: int, flagged: bool) -> None:
    echo = Echo()
    echo.start(ECHO_FEATURES)                          # queues of 16
    q = echo.d.queues[0]
    buf = _buf(echo)
    table = q.raw_table([Descriptor(buf, 8, Desc.NEXT if i < entries - 1 else 0, i + 1)
                         for i in range(entries)])
    _raw_chain(echo, [Descriptor(table, 16 * entries, Desc.INDIRECT)])
    if flagged:
        assert only(echo, "indirect-table-size").values["entries"] == entries
    else:
        assert echo.found == []


# ---- virtio-crypto -------------------------------------------------------------------------

def crypto_rig(device: CryptoDevice | None = None, **kw: object) -> tuple[ServiceRig, list[Finding]]:
    found: list[Finding] = []
    rig = ServiceRig(device or CryptoDevice(workers=0), strict=found.append, **kw)
    return rig, found


def test_crypto_stateless_needs_revision_1() -> None:
    found: list[Finding] = []
    rig = ServiceRig(CryptoDevice(workers=0, features=CryptoFeatures.ALL), strict=found.append,
                     wanted=Feature.VERSION_1 | int(CryptoFeatures.CIPHER_STATELESS_MODE))
    rig.close()
    only(found, "crypto-stateless-needs-revision-1")


def test_crypto_all_queues() -> None:
    found: list[Finding] = []
    device = CryptoDevice(workers=0)
    rig = make_rig(device, strict=found.append, strict_rules=crypto_strict.RULES)
    try:
        rig.driver.init(num_queues=1, queue_size=16)       # the control queue left out
    finally:
        device.close()
    assert only(found, "crypto-all-queues").values == {"not_ready": "1", "queues": 2}


def test_crypto_hw_ready() -> None:
    rig, found = crypto_rig(CryptoDevice(workers=0, hw_ready=False))
    try:
        rig.create(Op.HASH_CREATE_SESSION, u32(4, 32))
    finally:
        rig.close()
    only(found, "crypto-hw-ready")


def test_crypto_header_size() -> None:
    rig, found = crypto_rig()
    try:
        rig.control([u32(Op.HASH_CREATE_SESSION, 0, 0, 0) + u32(4, 32)], [16])
    finally:
        rig.close()
    assert only(found, "crypto-header-size").values["needed"] == 16 + 56


def test_crypto_data_header_size() -> None:
    rig, found = crypto_rig()
    try:
        sid = rig.create_cipher(3, bytes(16))
        rig.data([data_header(Op.CIPHER_ENCRYPT, sid, b"")[:30]], 0)
    finally:
        rig.close()
    assert only(found, "crypto-data-header-size").values["needed"] == 24 + 48


def test_crypto_control_opcode() -> None:
    rig, found = crypto_rig()
    try:
        rig.control([ctrl_header(Op.CIPHER_ENCRYPT, b"")], [16])
    finally:
        rig.close()
    assert only(found, "crypto-control-opcode").values == {"opcode": Op.CIPHER_ENCRYPT}


def test_crypto_advertised() -> None:
    rig, found = crypto_rig()
    try:
        kasumi_f8 = 10                                      # defined, never advertised
        rig.create(Op.CIPHER_CREATE_SESSION, sym_flf(u32(kasumi_f8, 16, 1, 0), 1, 48), bytes(16))
    finally:
        rig.close()
    assert only(found, "crypto-advertised").values["algo"] == 10


def test_crypto_key_len() -> None:
    rig, found = crypto_rig()
    try:
        rig.create(Op.CIPHER_CREATE_SESSION, sym_flf(u32(3, 65, 1, 0), 1, 48), bytes(65))
    finally:
        rig.close()
    assert only(found, "crypto-key-len").values["key_len"] == 65


def test_crypto_destroy_session() -> None:
    rig, found = crypto_rig()
    try:
        sid = rig.create_cipher(3, bytes(16))
        rig.destroy(Op.CIPHER_DESTROY_SESSION, sid)
        assert found == []
        rig.destroy(Op.CIPHER_DESTROY_SESSION, sid)        # already gone
    finally:
        rig.close()
    assert only(found, "crypto-destroy-session").values == {"service": "CIPHER", "session_id": sid}


def test_crypto_session_id() -> None:
    rig, found = crypto_rig()
    try:
        hsid = rig.create_hash(4, 32)
        rig.cipher(hsid, bytes(16), bytes(16))              # a HASH session for CIPHER
    finally:
        rig.close()
    assert only(found, "crypto-session-id").values == {"opcode": Op.CIPHER_ENCRYPT,
                                                       "session_id": hsid}


@pytest.mark.parametrize("flag,flagged", [(1, False), (0, True), (2, True)])
def test_crypto_stateless_flag(flag: int, flagged: bool) -> None:
    rig, found = crypto_rig(CryptoDevice(workers=0, features=CryptoFeatures.REVISION_1))
    try:
        sid = rig.create_cipher(3, bytes(16))
        flf = sym_flf(u32(16, 16, 16), 1)
        rig.data([data_header(Op.CIPHER_ENCRYPT, sid, flf, True, flag=flag), bytes(16),
                  bytes(16)], 16)
    finally:
        rig.close()
    if flagged:
        assert only(found, "crypto-stateless-flag").values["flag"] == flag
    else:
        assert found == []


def test_docs_list_every_rule_with_its_section_and_label() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "strict.md").read_text()
    for rule in (*rules.RULES, *crypto_strict.RULES):
        row = (f"| `{rule.id}` | {rule.text} | {rule.section} | "
               f"{rule.label.removeprefix('drivernormative:')} |")
        assert row in text, rule.id


def test_random_register_traffic_and_ring_contents_never_break_the_checker() -> None:
    """Whatever a guest writes, the checker only reports: it never raises into the MMIO
    access (and the rules never fail internally, which would be logged instead)."""
    import random

    from vmsim import log

    chooser = random.Random(20261207)
    registers = sorted(rules.READ_ONLY | rules.WRITE_ONLY | rules.READ_WRITE) + [
        Reg.CONFIG, Reg.CONFIG + 8, 0x0FC + 2, 0x200]
    errors: list[str] = []
    seen: set[str] = set()
    original = log.internal_error
    log.internal_error = lambda source, what, details="": errors.append(what)
    try:
        for round_ in range(20):
            found: list[Finding] = []
            rig = ServiceRig(CryptoDevice(workers=0, features=CryptoFeatures.ALL),
                             strict=found.append, indirect=bool(round_ & 1))
            try:
                q = rig.driver.queues[chooser.randrange(2)]
                for _ in range(200):
                    if chooser.random() < 0.3:
                        q.write_desc(chooser.randrange(q.size), Descriptor(
                            chooser.choice([q.desc, rig.rig.ram.base, 0, 1 << 63]),
                            chooser.randrange(1 << 32), chooser.randrange(8),
                            chooser.randrange(q.size + 4)))
                        rig.rig.ram.write(q.desc, bytes(chooser.randrange(256)
                                                        for _ in range(16)))
                        q.make_available(chooser.randrange(q.size + 2))
                    register = chooser.choice(registers)
                    size = chooser.choice([1, 2, 4, 4, 4, 8])
                    if chooser.random() < 0.5:
                        rig.driver.read_reg(register, size)
                    else:
                        value = chooser.choice([0, 1, 0xF, q.index, chooser.randrange(1 << 32)])
                        rig.driver.write_reg(register, value, size)
                    rig.device.poll()
                    rig.driver.mmio.poll()
            finally:
                rig.close()
            assert len(found) == len({(f.device, f.rule.id) for f in found})
            seen.update(f.rule.id for f in found)
    finally:
        log.internal_error = original
    assert errors == []
    assert len(seen) >= 10, seen                 # the traffic does reach the rules
