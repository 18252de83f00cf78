"""Conformance of the virtio-crypto device where the spec leaves no choice, or where
vmsim made one (recorded in the package docstring of vmsim.devices.virtio.crypto and
in docs/virtio-crypto.md): feature consistency, stopped queues, used.len, the flag and queue
count rules. Each test drives the device through the transport and real virtqueues."""
from __future__ import annotations

import hashlib
import struct

import pytest

from vmsim.cli.device_option import parse_device
from vmsim.devices.bus import LevelRecorder, NullWaker
from vmsim.devices.memory import Ram
from vmsim.devices.model import SlotContext
from vmsim.devices.virtio.crypto.constants import CryptoFeatures, HashAlgo, Op, Status
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import Feature
from vmsim.testing.crypto_rig import data_header, u32
from vmsim.testing.virtio_driver import RAM_BASE, VirtioDriver


# ---- features: no STATELESS bit without REVISION_1 ---------------------------------------

@pytest.mark.parametrize("bits", [
    CryptoFeatures.CIPHER_STATELESS_MODE,
    CryptoFeatures.AKCIPHER_STATELESS_MODE,
    CryptoFeatures.ALL & ~CryptoFeatures.REVISION_1,
    1 << 6,                                          # not a virtio-crypto bit at all
])
def test_a_stateless_bit_without_revision_1_cannot_be_offered(bits):
    with pytest.raises(ValueError):
        CryptoDevice(workers=0, features=bits)


@pytest.mark.parametrize("bits", [CryptoFeatures.NONE, CryptoFeatures.REVISION_1, CryptoFeatures.ALL,
                                  CryptoFeatures.REVISION_1 | CryptoFeatures.HASH_STATELESS_MODE])
def test_consistent_feature_sets_are_offered_as_given(bits):
    assert CryptoDevice(workers=0, features=bits).device_features() == bits


def test_stateless_on_from_the_command_line_serves_a_stateless_request():
    """`-device virtio-crypto,stateless=on`, parsed as the CLI parses it and built as
    the machine builds a slot, negotiates REVISION_1 and every stateless bit with the
    Python driver and answers a stateless HASH request (no session)."""
    request = parse_device("virtio-crypto,stateless=on,workers=0")
    ram = Ram(RAM_BASE, 1 << 20)
    slot = SlotContext(ram, LevelRecorder(), NullWaker())
    transport = request.model.create(slot, request.model.resolve(request.given))
    try:
        driver = VirtioDriver(transport, ram)
        features = driver.init(queue_size=16)
        assert features & 0x3F == CryptoFeatures.ALL and features & Feature.VERSION_1
        msg = b"stateless from the command line"
        header = data_header(Op.HASH, 0, u32(HashAlgo.SHA_256, len(msg), 32, 0), revision_1=True, flag=0)
        queue = driver.queues[0]
        sent = queue.submit([header, msg], [32, 1])
        (used,) = queue.collect()
        assert used.head == sent.head
        out = sent.written()
        assert out[-1] == Status.OK and out[:32] == hashlib.sha256(msg).digest()
    finally:
        transport.close()
        ram.close()


def test_stateless_off_from_the_command_line_offers_no_device_bits():
    request = parse_device("virtio-crypto,workers=0")
    ram = Ram(RAM_BASE, 1 << 20)
    transport = request.model.create(SlotContext(ram, LevelRecorder(), NullWaker()),
                                     request.model.resolve(request.given))
    try:
        assert VirtioDriver(transport, ram).init(queue_size=16) & 0xFFFFFF == 0
    finally:
        transport.close()
        ram.close()
