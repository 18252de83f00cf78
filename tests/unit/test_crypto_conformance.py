"""Conformance of the virtio-crypto device where the spec leaves no choice, or where
vmsim made one (recorded in the package docstring of vmsim.devices.virtio.crypto and
in docs/virtio-crypto.md): feature consistency, stopped queues, used.len, the flag and queue
count rules. Each test drives the device through the transport and real virtqueues."""
from __future__ import annotations

import hashlib
import time

import pytest

from vmsim.cli.device_option import parse_device
from vmsim.devices.bus import LevelRecorder, NullWaker
from vmsim.devices.memory import Ram
from vmsim.devices.model import SlotContext
from vmsim.devices.virtio.crypto.constants import CryptoFeatures, HashAlgo, Op, Status
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import Desc, Feature, Reg, Status as DevStatus
from vmsim.testing.crypto_rig import ServiceRig, data_header, u32
from vmsim.testing.virtio_driver import RAM_BASE, Descriptor, VirtioDriver


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


# ---- a stopped or reset queue is never written -----------------------------------------

def pooled_rig(events: list) -> ServiceRig:
    """One worker, every job pooled: a result reaches the rings only when poll() runs,
    so a test can stop a queue between the notify and the completion."""
    rig = ServiceRig(CryptoDevice(workers=1, inline_max_bytes=0, trace=events.append))
    assert rig.device.wait_for_workers()
    return rig


def wait_until(condition, rig: ServiceRig, what: str, timeout: float = 20.0) -> None:
    """poll() the device until `condition()` holds; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        rig.device.poll()
        time.sleep(0.002)


def collect_every_result(rig: ServiceRig) -> None:
    """poll() until the pool has answered every job the device sent it."""
    deadline = time.monotonic() + 20
    while rig.device._pending:
        assert time.monotonic() < deadline, rig.device._pending
        rig.device.poll()
        time.sleep(0.001)


def test_a_result_for_a_queue_stopped_with_queue_ready_0_is_dropped():
    events: list = []
    rig = pooled_rig(events)
    try:
        sid = rig.create_hash(HashAlgo.SHA_256, 32)
        q = rig.driver.queues[0]
        sent = q.submit([rig.hdr(Op.HASH, sid, u32(3, 32)), b"abc"], [32, 1])
        assert rig.device.stats[0].pooled == 1
        rig.driver.write_reg(Reg.QUEUE_SEL, 0)
        rig.driver.write_reg(Reg.QUEUE_READY, 0)        # the driver stops the data queue
        used_ring = rig.rig.ram.read(q.used, 4 + 8 * q.size)
        collect_every_result(rig)
        assert rig.rig.ram.read(q.used, 4 + 8 * q.size) == used_ring
        assert sent.written() == bytes(33)               # neither output nor status byte
        assert rig.device.dropped == 1 and rig.device.stats[0].dropped == 1
        (drop,) = [e for e in events if e.kind == "dropped"]
        assert drop.queue == 0 and "stopped" in drop.fields["reason"]
        hsid = rig.create_hash(HashAlgo.SHA1, 20)      # the control queue still works
        assert hsid
    finally:
        rig.close()


def test_a_result_after_needs_reset_is_dropped():
    events: list = []
    rig = pooled_rig(events)
    try:
        sid = rig.create_hash(HashAlgo.SHA_256, 32)
        q = rig.driver.queues[0]
        sent = q.submit([rig.hdr(Op.HASH, sid, u32(3, 32)), b"abc"], [32, 1])
        ctrl = rig.ctrlq                                  # a broken chain: next out of range
        ctrl.write_desc(0, Descriptor(rig.rig.ram.base, 72, Desc.NEXT, 999))
        ctrl.make_available(0)
        ctrl.kick()
        assert rig.driver.status & DevStatus.DEVICE_NEEDS_RESET
        collect_every_result(rig)
        assert q.used_idx() == 0 and sent.written() == bytes(33)
        assert rig.device.dropped == 1
        assert [e.fields["reason"] for e in events if e.kind == "dropped"] == ["the queue is stopped"]
    finally:
        rig.close()


def test_a_job_in_flight_at_a_reset_is_cancelled_and_never_written():
    """A reset cancels the pooled job (its worker is killed and replaced): nothing of
    it is written to the rings the driver sets up next, and whatever result still
    comes back is dropped."""
    events: list = []
    rig = pooled_rig(events)
    try:
        sid = rig.create_hash(HashAlgo.SHA_256, 32)
        q = rig.driver.queues[0]
        q.submit([rig.hdr(Op.HASH, sid, u32(8 << 20, 32)), bytes(8 << 20)], [32, 1], indirect=True)
        (busy,) = rig.device._pool.pids()
        rig.driver.reset()
        assert rig.device.inflight_bytes == 0 and not rig.device._pending
        assert rig.device._pool.queued() == 0
        wait_until(lambda: busy not in rig.device._pool.pids(), rig, "the busy worker's replacement")
        assert rig.device.wait_for_workers()
        rig.device.poll()
        assert q.used_idx() == 0
        assert all(e.fields["reason"] == "the device was reset" for e in events if e.kind == "dropped")
    finally:
        rig.close()


# ---- used.len claims only written bytes; the AKCIPHER status lies within it ---------------

class Writes:
    """Every guest-memory write the device makes, byte by byte (through Ram's listener)."""

    def __init__(self, rig: ServiceRig) -> None:
        self.bytes: set[int] = set()
        self.order: list[tuple[int, int]] = []
        rig.rig.ram.add_write_listener(self._note)

    def _note(self, addr: int, size: int) -> None:
        self.order.append((addr, size))
        self.bytes.update(range(addr, addr + size))

    def clear(self) -> None:
        self.bytes.clear()
        self.order.clear()


def claimed_addresses(request, used_len: int) -> list[int]:
    """Guest addresses of the first `used_len` bytes of the request's writable buffers."""
    out: list[int] = []
    for addr, size in request.writable:
        take = min(size, used_len - len(out))
        out += range(addr, addr + take)
    assert len(out) == used_len, "used.len is larger than the writable buffers"
    return out


def answer(rig: ServiceRig, writes: Writes, readable: list[bytes], writable: list[int]):
    """Submit, complete, and check that every byte used.len claims was written then."""
    q = rig.driver.queues[0]
    request = q.submit([r for r in readable if r], writable, kick=False)   # the driver's own writes
    writes.clear()
    q.kick()
    (used,) = rig.wait(0)
    assert used.head == request.head
    unwritten = [a for a in claimed_addresses(request, used.len) if a not in writes.bytes]
    assert not unwritten, f"used.len {used.len} claims {len(unwritten)} bytes never written"
    return request, used.len


def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(65537, 1024)


def test_used_len_claims_only_written_bytes_for_symmetric_services():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from vmsim.devices.virtio.crypto.constants import CipherAlgo, SymOp
    from vmsim.testing.crypto_rig import sym_flf
    rig = ServiceRig()
    writes = Writes(rig)
    try:
        key, iv, src = bytes(range(16)), bytes(16), bytes(range(64))
        sid = rig.create_cipher(CipherAlgo.AES_CBC, key)
        header = rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, 64, 64), SymOp.CIPHER))
        # Linux's skcipher shape: dst entries longer than the output, status on its own.
        request, used = answer(rig, writes, [header, iv, src], [64 + 100, 1])
        assert used == 64 and request.written()[-1] == Status.OK
        assert request.written()[64:164] == bytes(100)        # the caller's bytes untouched
        # The spec's shape, no slack: output and status, all of it claimed.
        request, used = answer(rig, writes, [header, iv, src], [64, 1])
        assert used == 65
        # An error with room to spare claims nothing it did not write.
        bad = rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, 64, 32), SymOp.CIPHER))
        request, used = answer(rig, writes, [bad, iv, src], [64, 1])
        assert request.written()[-1] == Status.ERR and used == 0
        hsid = rig.create_hash(HashAlgo.SHA_256, 32)
        request, used = answer(rig, writes, [rig.hdr(Op.HASH, hsid, u32(3, 32)), b"abc"], [40, 8])
        assert used == 32 and request.written()[:32] == hashlib.sha256(b"abc").digest()
    finally:
        rig.close()


def test_akcipher_used_len_is_result_plus_status_and_the_status_lies_within_it():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    rig = ServiceRig()
    writes = Writes(rig)
    try:
        private = rsa_key()
        der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        asid = rig.create_akcipher(1, 2, der, u32(1, 5))        # RSA private, PKCS#1 with SHA-1
        message = b"short"
        sealed = private.public_key().encrypt(message, padding.PKCS1v15())
        header = rig.hdr(Op.AKCIPHER_DECRYPT, asid, u32(128, 128), algo=1)
        request, used = answer(rig, writes, [header, sealed], [128, 1])     # Linux's layout
        out = request.written()
        # Linux 6.1: result length = used.len - 1, status in the last writable byte.
        assert used == len(message) + 1 and out[:len(message)] == message and out[-1] == Status.OK
        assert out[used - 1] == Status.OK                    # the status, within used.len
        sign = rig.hdr(Op.AKCIPHER_SIGN, asid, u32(3, 128), algo=1)   # not a SHA-1 digest
        request, used = answer(rig, writes, [sign, b"abc"], [128, 1])
        assert used == 1 and request.written()[0] == request.written()[-1] == Status.ERR
        verify = rig.hdr(Op.AKCIPHER_VERIFY, asid, u32(128, 20), algo=1)
        request, used = answer(rig, writes, [verify, bytes(128) + bytes(20)], [1])
        assert used == 1 and request.written() == bytes([Status.KEY_REJECTED])
    finally:
        rig.close()


# ---- the rules that had no test: queue count, flag without REVISION_1, used ring order ----

@pytest.mark.parametrize("count", [0, -1, 65536, 1 << 32])
def test_max_dataqueues_outside_1_to_65535_is_refused(count):
    with pytest.raises(ValueError):
        CryptoDevice(max_dataqueues=count, workers=0)


@pytest.mark.parametrize("count", [1, 2, 65535])
def test_max_dataqueues_inside_the_range_is_advertised(count):
    device = CryptoDevice(max_dataqueues=count, workers=0)
    assert device.read_config(4, 4) == count
    assert device.num_queues == count + 1 and device.control_queue == count


@pytest.mark.parametrize("flag", [0, 1, 2, 0xFFFF_FFFE])
def test_flag_is_ignored_without_revision_1(flag):
    """Without REVISION_1 every request is a session request whatever `flag` holds
    (Crypto Device / Data Virtqueue: "the flag is ignored")."""
    rig = ServiceRig()
    try:
        assert not rig.revision_1
        sid = rig.create_hash(HashAlgo.SHA_256, 32)
        header = data_header(Op.HASH, sid, u32(3, 32), revision_1=False, flag=flag)
        reply = rig.data([header, b"abc"], 32)
        assert reply.status == Status.OK and reply.output == hashlib.sha256(b"abc").digest()
        stray = data_header(Op.HASH, sid + 1, u32(3, 32), revision_1=False, flag=flag)
        assert rig.data([stray, b"abc"], 32).status == Status.INVSESS    # no stateless fallback
    finally:
        rig.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_used_element_is_written_before_used_idx(workers):
    """Split ring: the device sets the used element (id and len) before it publishes
    used.idx, for inline and pooled completions alike."""
    rig = ServiceRig(CryptoDevice(workers=workers, inline_max_bytes=0))
    writes = Writes(rig)
    try:
        if workers:
            assert rig.device.wait_for_workers()
        sid = rig.create_hash(HashAlgo.SHA_256, 32)
        q = rig.driver.queues[0]
        for n in range(3):
            q.submit([rig.hdr(Op.HASH, sid, u32(1, 32)), bytes([n])], [32, 1], kick=False)
        writes.clear()
        q.kick()
        used = rig.wait(0, 3)
        assert sorted(u.len for u in used) == [33, 33, 33]
        ring = [(addr, size) for addr, size in writes.order if q.used <= addr < q.used + 4 + 8 * q.size]
        for n in range(3):
            element = (q.used + 4 + 8 * n, 8)
            index = (q.used + 2, 2)
            assert ring[2 * n:2 * n + 2] == [element, index], ring
    finally:
        rig.close()


# ---- opcodes mean what they say --------------------------------------------------------

def cipher_request(rig: ServiceRig, opcode: int, sid: int, op_type: int = 1, length: int = 32) -> int:
    from vmsim.testing.crypto_rig import sym_flf
    header = rig.hdr(opcode, sid, sym_flf(u32(16, length, length), op_type))
    reply = rig.data([header, bytes(16), bytes(range(length))], length)
    if reply.status != Status.OK:
        assert reply.output == bytes(length), "a refused request releases no output"
    return reply.status


@pytest.fixture
def rig():
    r = ServiceRig()
    yield r
    r.close()


def test_a_cipher_opcode_against_the_session_direction_is_invsess(rig):
    from vmsim.devices.virtio.crypto.constants import CipherAlgo, CipherDirection
    key = bytes(range(16))
    enc = rig.create_cipher(CipherAlgo.AES_CBC, key, CipherDirection.ENCRYPT)
    dec = rig.create_cipher(CipherAlgo.AES_CBC, key, CipherDirection.DECRYPT)
    assert cipher_request(rig, Op.CIPHER_ENCRYPT, enc) == Status.OK
    assert cipher_request(rig, Op.CIPHER_DECRYPT, dec) == Status.OK
    assert cipher_request(rig, Op.CIPHER_DECRYPT, enc) == Status.INVSESS
    assert cipher_request(rig, Op.CIPHER_ENCRYPT, dec) == Status.INVSESS


def test_a_chain_opcode_against_its_cipher_direction_is_invsess(rig):
    from vmsim.devices.virtio.crypto.constants import ChainOrder, CipherAlgo, CipherDirection, HashMode
    sid = rig.create_chain(ChainOrder.CIPHER_THEN_HASH, HashMode.PLAIN, CipherAlgo.AES_CTR, bytes(16),
                           CipherDirection.ENCRYPT, HashAlgo.SHA1, 20)
    assert rig.chain(sid, bytes(16), bytes(32), b"", (0, 32), (0, 32), 20).status == Status.OK
    from vmsim.testing.crypto_rig import sym_flf
    flf = sym_flf(u32(16, 32, 32, 0, 32, 0, 32, 0, 20, 0), 2)
    reply = rig.data([rig.hdr(Op.CIPHER_DECRYPT, sid, flf), bytes(16), bytes(32)], 52)
    assert reply.status == Status.INVSESS


@pytest.mark.parametrize("op_type,status", [(2, Status.INVSESS), (0, Status.NOTSUPP), (7, Status.NOTSUPP)])
def test_an_op_type_that_contradicts_a_cipher_session(rig, op_type, status):
    from vmsim.devices.virtio.crypto.constants import CipherAlgo
    sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
    assert cipher_request(rig, Op.CIPHER_ENCRYPT, sid, op_type) == status


def test_a_plain_cipher_op_type_on_a_chain_session_is_invsess(rig):
    from vmsim.devices.virtio.crypto.constants import ChainOrder, CipherAlgo, CipherDirection, HashMode
    sid = rig.create_chain(ChainOrder.CIPHER_THEN_HASH, HashMode.PLAIN, CipherAlgo.AES_CBC, bytes(16),
                           CipherDirection.ENCRYPT, HashAlgo.SHA1, 20)
    assert cipher_request(rig, Op.CIPHER_ENCRYPT, sid, op_type=1) == Status.INVSESS


def test_an_aead_opcode_against_the_session_direction_is_invsess(rig):
    from vmsim.devices.virtio.crypto.constants import AeadAlgo
    enc = rig.create_aead(AeadAlgo.GCM, bytes(16), 16, True)
    assert rig.aead(enc, True, bytes(12), b"plain", b"", 21).status == Status.OK
    assert rig.aead(enc, False, bytes(12), bytes(21), b"", 5).status == Status.INVSESS


@pytest.fixture
def rev1():
    r = ServiceRig(CryptoDevice(workers=0, features=CryptoFeatures.ALL))
    yield r
    r.close()


@pytest.mark.parametrize("opcode,op,status", [
    (Op.CIPHER_ENCRYPT, 1, Status.OK), (Op.CIPHER_DECRYPT, 2, Status.OK),
    (Op.CIPHER_ENCRYPT, 2, Status.NOTSUPP), (Op.CIPHER_DECRYPT, 1, Status.NOTSUPP)])
def test_a_stateless_sess_para_op_that_contradicts_the_opcode_is_notsupp(rev1, opcode, op, status):
    from vmsim.devices.virtio.crypto.constants import CipherAlgo
    from vmsim.testing.crypto_rig import pad
    flf = pad(u32(CipherAlgo.AES_CBC, 16, op, 16, 32, 32), 72) + u32(1)
    reply = rev1.data([data_header(opcode, 0, flf, True, flag=0), bytes(16), bytes(16), bytes(32)], 32)
    assert reply.status == status


@pytest.mark.parametrize("opcode,op,status", [
    (Op.AEAD_ENCRYPT, 1, Status.OK), (Op.AEAD_ENCRYPT, 2, Status.NOTSUPP), (Op.AEAD_DECRYPT, 1, Status.NOTSUPP)])
def test_a_stateless_aead_op_that_contradicts_the_opcode_is_notsupp(rev1, opcode, op, status):
    from vmsim.devices.virtio.crypto.constants import AeadAlgo
    flf = u32(AeadAlgo.GCM, 16, op, 12, 16, 0, 32, 48)
    reply = rev1.data([data_header(opcode, 0, flf, True), bytes(16), bytes(12), bytes(32)], 48)
    assert reply.status == status


def test_a_stateless_chain_op_that_contradicts_the_opcode_is_notsupp(rev1):
    from vmsim.devices.virtio.crypto.constants import ChainOrder, CipherAlgo, HashMode, MacAlgo
    from vmsim.testing.crypto_rig import pad
    for opcode, status in ((Op.CIPHER_ENCRYPT, Status.OK), (Op.CIPHER_DECRYPT, Status.NOTSUPP)):
        sess = u32(ChainOrder.CIPHER_THEN_HASH, 0, CipherAlgo.AES_CBC, 16, 1, MacAlgo.HMAC_SHA_256, 16,
                   HashMode.AUTH)
        para = u32(16, 32, 32, 0, 32, 0, 32, 0, 32, 0)
        flf = pad(sess + para, 72) + u32(2)
        reply = rev1.data([data_header(opcode, 0, flf, True), bytes(16), bytes(16), bytes(16), bytes(32)], 64)
        assert reply.status == status


# ---- AEAD parameters: GCM's J0, CCM's iv[1], the per-request tag_len -----------------------

def reference_gcm_from_j0(key: bytes, j0: bytes, plaintext: bytes, aad: bytes, tag_len: int) -> bytes:
    """SP 800-38D from J0, block by block in Python (AES-ECB per counter block, inc32,
    and the bitwise GHASH of the vector tests): slow, and independent of the device."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from tests.unit.test_crypto_vectors import ghash
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    counter, out = j0, b""
    for i in range(0, len(plaintext), 16):
        counter = counter[:12] + ((int.from_bytes(counter[12:], "big") + 1) % (1 << 32)).to_bytes(4, "big")
        block = plaintext[i:i + 16]
        out += bytes(a ^ b for a, b in zip(block, ecb.update(counter)))
    pad = lambda data: data + bytes(-len(data) % 16)  # noqa: E731
    lengths = (8 * len(aad)).to_bytes(8, "big") + (8 * len(out)).to_bytes(8, "big")
    s = ghash(ecb.update(bytes(16)), pad(aad) + pad(out) + lengths)
    tag = bytes(a ^ b for a, b in zip(ecb.update(j0), s))
    return out + tag[:tag_len]


@pytest.mark.parametrize("low_word", [0xFFFF_FFFE, 0xFFFF_FFFF, 0, 7])
def test_gcm_with_a_16_byte_iv_takes_it_as_j0_and_wraps_the_counter_at_32_bits(rig, low_word):
    from vmsim.devices.virtio.crypto.constants import AeadAlgo
    key, aad, plaintext = bytes(range(16)), b"header", bytes(range(70))
    j0 = bytes(range(100, 112)) + low_word.to_bytes(4, "big")
    expected = reference_gcm_from_j0(key, j0, plaintext, aad, 16)
    enc = rig.create_aead(AeadAlgo.GCM, key, 16, True)
    sealed = rig.aead(enc, True, j0, plaintext, aad, len(expected))
    assert sealed.status == Status.OK and sealed.output == expected
    dec = rig.create_aead(AeadAlgo.GCM, key, 16, False)
    opened = rig.aead(dec, False, j0, expected, aad, len(plaintext))
    assert opened.status == Status.OK and opened.output == plaintext
    forged = expected[:-1] + bytes([expected[-1] ^ 1])
    assert rig.aead(dec, False, j0, forged, aad, len(plaintext)).status == Status.BADMSG


@pytest.mark.parametrize("iv_len", [8, 13, 15, 17, 64])
def test_gcm_iv_lengths_other_than_12_and_16_are_refused(rig, iv_len):
    from vmsim.devices.virtio.crypto.constants import AeadAlgo
    enc = rig.create_aead(AeadAlgo.GCM, bytes(16), 16, True)
    reply = rig.aead(enc, True, bytes(iv_len), b"data", b"", 20)
    assert reply.status == Status.ERR and reply.output == bytes(20)


def test_ccm_reads_its_nonce_from_iv_1_of_a_16_byte_field(rig):
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM
    from vmsim.devices.virtio.crypto.constants import AeadAlgo
    key, nonce, aad, plaintext = bytes(range(16)), bytes(range(1, 12)), b"aad", b"the payload"
    expected = AESCCM(key, 8).encrypt(nonce, plaintext, aad)
    enc = rig.create_aead(AeadAlgo.CCM, key, 8, True)
    for reserved in (0x03, 0xEE):             # iv[0] is reserved: whatever it holds
        field = bytes([reserved]) + nonce + bytes(16 - 1 - len(nonce))
        reply = rig.aead(enc, True, field, plaintext, aad, len(expected), iv_len=len(nonce))
        assert reply.status == Status.OK and reply.output == expected
    # A driver that sends only iv_len bytes of IV has its source read 5 bytes late.
    reply = rig.aead(enc, True, nonce, plaintext + bytes(5), aad, len(expected), iv_len=len(nonce),
                     tag_len=8)
    assert reply.output != expected


def test_stateless_ccm_takes_the_same_16_byte_iv_field(rev1):
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM
    from vmsim.devices.virtio.crypto.constants import AeadAlgo
    key, nonce, plaintext = bytes(range(32)), bytes(range(7)), b"stateless ccm"
    expected = AESCCM(key, 16).encrypt(nonce, plaintext, b"")
    flf = u32(AeadAlgo.CCM, 32, 1, len(nonce), 16, 0, len(plaintext), len(expected))
    field = b"\x07" + nonce + bytes(8)
    reply = rev1.data([data_header(Op.AEAD_ENCRYPT, 0, flf, True), key, field, plaintext], len(expected))
    assert reply.status == Status.OK and reply.output == expected


def test_the_per_request_tag_len_must_be_the_sessions(rig):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from vmsim.devices.virtio.crypto.constants import AeadAlgo
    key, iv = bytes(16), bytes(12)
    enc = rig.create_aead(AeadAlgo.GCM, key, 12, True)
    full = AESGCM(key).encrypt(iv, b"msg", b"")
    reply = rig.aead(enc, True, iv, b"msg", b"", 15, tag_len=12)
    assert reply.status == Status.OK and reply.output == full[:15]
    for other in (0, 16, 4):
        reply = rig.aead(enc, True, iv, b"msg", b"", 19, tag_len=other)
        assert reply.status == Status.INVSESS and reply.output == bytes(19)
    dec = rig.create_aead(AeadAlgo.GCM, key, 12, False)
    assert rig.aead(dec, False, iv, full[:15], b"", 3, tag_len=12).output == b"msg"
    assert rig.aead(dec, False, iv, full[:15], b"", 3, tag_len=16).status == Status.INVSESS


# ---- a refused chain still gets an answer where one is possible ---------------------------

def works_after(rig: ServiceRig) -> None:
    """The device still serves requests and needs no reset."""
    sid = rig.create_hash(HashAlgo.SHA_256, 32)
    assert rig.digest(Op.HASH, sid, b"after", 32).output == hashlib.sha256(b"after").digest()
    assert not rig.driver.status & DevStatus.DEVICE_NEEDS_RESET
    assert all(q.in_flight() == 0 for q in rig.device.ctx.queues)


def submit_chain(rig: ServiceRig, queue: int, head_desc: Descriptor, extra: dict[int, Descriptor] = {}) -> int:
    """Write descriptor 0 (and others) verbatim, make 0 available and kick."""
    q = rig.driver.queues[queue]
    q.write_desc(0, head_desc)
    for index, desc in extra.items():
        q.write_desc(index, desc)
    q.make_available(0)
    q.kick()
    return 0


def linux_indirect_table(entries: list[tuple[int, int, int]]) -> bytes:
    """The indirect table Linux 6.1's virtqueue_add_split writes for these sgs: a
    kmalloc'd table (left as garbage here) whose entry i gets next = (u16)(i + 1), then
    each sg in turn at the index the previous entry's next names, with NEXT, and NEXT
    cleared on the last. Past 65536 sgs the index wraps to 0, so the last sgs overwrite
    the first entries, and the chain from entry 0 is just those last sgs."""
    count = len(entries)
    slots = [[0xDEAD_BEEF, 0xFFFF_FFFF, 0xFFFF, (i + 1) & 0xFFFF] for i in range(count)]
    index = prev = 0
    for addr, size, flags in entries:
        slots[index][:3] = [addr, size, flags | Desc.NEXT]
        prev, index = index, slots[index][3]
    slots[prev][2] &= ~Desc.NEXT
    return b"".join(Descriptor(*slot).pack() for slot in slots)


def huge_linux_request(rig: ServiceRig, sid: int, pieces: int) -> tuple[int, int, int]:
    """An AES-CBC request as Linux 6.1 hands the device a 1 MiB AF_ALG request spliced
    in 16-byte pieces: header, IV, `pieces` source entries, 256 destination pages, the
    status byte. Returns the table's address and length and the status byte's address."""
    from vmsim.devices.virtio.crypto.constants import SymOp
    from vmsim.testing.crypto_rig import sym_flf
    heap, ram = rig.driver.heap, rig.rig.ram
    header = heap.put(rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, 16 * pieces, 16 * pieces), SymOp.CIPHER)))
    iv, src, dst, status = heap.put(bytes(16)), heap.put(bytes(16)), heap.alloc(4096), heap.alloc(1)
    ram.write(status, b"\x77")
    entries = ([(header, 72, 0), (iv, 16, 0)] + [(src, 16, 0)] * pieces
               + [(dst, 4096, Desc.WRITE)] * 256 + [(status, 1, Desc.WRITE)])
    table = linux_indirect_table(entries)
    return heap.put(table), len(table), status


def test_a_request_with_a_65k_entry_indirect_table_is_answered_err(tmp_path):
    """Linux 6.1 builds an indirect table of more than 65536 entries for a 1 MiB AF_ALG
    request (which wraps onto itself). The device refuses such a chain, but it can still
    find its status byte: it answers ERR there (Linux would otherwise wait forever),
    logs the refusal once, and carries on."""
    from vmsim import log
    log.configure({log.GUEST_ERRORS}, (), tmp_path / "log")
    rig = ServiceRig(ram_size=8 << 20)
    try:
        from vmsim.devices.virtio.crypto.constants import CipherAlgo
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        q = rig.driver.queues[0]
        for round in range(2):
            table, length, status = huge_linux_request(rig, sid, 65_536)
            assert length // 16 == 65_795
            submit_chain(rig, 0, Descriptor(table, length, Desc.INDIRECT))
            (used,) = q.collect()
            assert used == (0, 0)
            assert rig.rig.ram.read(status, 1) == bytes([Status.ERR])
            assert not rig.driver.status & DevStatus.DEVICE_NEEDS_RESET
        works_after(rig)
        lines = [line for line in (tmp_path / "log").read_text().splitlines() if "answered ERR" in line]
        assert len(lines) == 1 and "65536 entries" in lines[0], lines
    finally:
        rig.close()
        log.configure()


def test_a_chain_with_a_buffer_outside_ram_or_out_of_order_is_answered_err(rig):
    ram, heap = rig.rig.ram, rig.driver.heap
    status = heap.alloc(1)
    header = heap.put(bytes(72))
    cases = [
        {0: Descriptor(header, 72, Desc.NEXT, 1), 1: Descriptor(0x10, 64, Desc.NEXT, 2),   # not RAM
         2: Descriptor(status, 1, Desc.WRITE)},
        {0: Descriptor(status, 1, Desc.WRITE | Desc.NEXT, 1), 1: Descriptor(header, 72, Desc.NEXT, 2),
         2: Descriptor(status, 1, Desc.WRITE)},                                           # read after write
    ]
    for descs in cases:
        ram.write(status, b"\x55")
        submit_chain(rig, 0, descs.pop(0), descs)
        assert rig.driver.queues[0].collect() == [(0, 0)]
        assert ram.read(status, 1) == bytes([Status.ERR])
    works_after(rig)


def test_a_refused_control_chain_is_completed(rig):
    """The Linux driver waits for control completions without a timeout."""
    ram, heap = rig.rig.ram, rig.driver.heap
    reply = heap.alloc(16)
    ctrl = rig.ctrlq
    ctrl.write_desc(1, Descriptor(0x20, 72, Desc.NEXT, 2))            # the header is not in RAM
    ctrl.write_desc(2, Descriptor(reply, 16, Desc.WRITE))
    ctrl.write_desc(0, Descriptor(heap.put(bytes(8)), 8, Desc.NEXT, 1))
    ctrl.make_available(0)
    ctrl.kick()
    assert ctrl.collect() == [(0, 0)]
    assert ram.read(reply + 15, 1) == bytes([Status.ERR])
    works_after(rig)


@pytest.mark.parametrize("shape", ["loop", "next out of range", "last not writable", "table not linear"])
def test_a_chain_whose_end_cannot_be_found_still_needs_a_reset(rig, shape):
    ram, heap = rig.rig.ram, rig.driver.heap
    status = heap.alloc(1)
    header = heap.put(bytes(72))
    ram.write(status, b"\x55")
    if shape == "loop":
        chain = {0: Descriptor(header, 72, Desc.NEXT, 1), 1: Descriptor(status, 1, Desc.WRITE | Desc.NEXT, 0)}
    elif shape == "next out of range":
        chain = {0: Descriptor(header, 72, Desc.NEXT, 999)}
    elif shape == "last not writable":
        chain = {0: Descriptor(0x10, 72, Desc.NEXT, 1), 1: Descriptor(header, 72)}
    else:
        entries = [Descriptor(header, 72, Desc.NEXT, 2), Descriptor(status, 1, Desc.WRITE),
                   Descriptor(header, 72, Desc.NEXT, 1)] * 21846      # > 65536 entries, not in order
        table = rig.driver.queues[0].raw_table(entries)
        chain = {0: Descriptor(table, 16 * len(entries), Desc.INDIRECT)}
    submit_chain(rig, 0, chain.pop(0), chain)
    assert rig.driver.status & DevStatus.DEVICE_NEEDS_RESET
    assert rig.driver.queues[0].collect() == [] and ram.read(status, 1) == b"\x55"
