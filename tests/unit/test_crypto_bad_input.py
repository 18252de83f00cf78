"""Hostile and broken requests: each gets a status code, a completed chain, or a
needs-reset; none raises, writes outside its buffers, or wedges the device.

Every length, index and address in a request comes from the guest. The numbered cases
below are the bad inputs a virtio-crypto device must survive, gathered from bugs found
in other implementations of the device and in the Linux 6.1 driver; tests here (and in
tests/unit/test_virtio_queue.py) are named after them. Cases with no test here are
covered elsewhere (noted) or need nothing from the device.

 1. lengths (iv, aad, src, dst, hash result) whose sum overflows 32 bits, or exceeds
    max_size;
 2. a symmetric request whose src_len differs from its dst_len;
 3. a session id that is unknown or out of range, to destroy or to use;
 4. a buffer address inside an MMIO window (a device writing its own registers):
    only guest RAM is ever resolved (test_virtio_queue.py);
 5. state left inconsistent by a failed request: after any failure the device still
    serves requests (`still_works`);
 6. missing or short buffers: no readable or no writable part, a header under 72 bytes,
    no room for the status byte, a reply smaller than the 16-byte session input;
 7. a key, IV or source shorter in the chain than its header says;
 8. a reply sized for the wrong opcode class: replies are sized from the writable
    bytes actually there;
 9. a guest-chosen queue_id in the control header, which the device must not trust;
10. offering services that are not implemented (the feature and config bits,
    test_crypto_device.py);
11. the guest rewriting its buffers after the device validated them: workers see only
    the copy;
12. header lengths larger than the bytes the descriptors really hold;
13. out-of-bounds reads and writes of IV and data in copy paths (covered by 7 and 12);
14. dst_len larger than the writable room left before the status byte;
15. a cipher key longer than max_cipher_key_len, an auth key longer than
    max_auth_key_len;
16. descriptor chains that loop or whose next index is out of range
    (test_virtio_queue.py);
17. a notify before DRIVER_OK, or for a queue that is not ready;
18. a notify for a queue that does not exist, an avail index running ahead by more
    than the queue size, more chains in flight than the queue holds;
19. a QueueNum that is zero, not a power of two or above QueueNumMax
    (test_virtio_mmio.py);
20. malformed indirect tables: a length not a multiple of 16, nesting, INDIRECT with
    NEXT, an empty table, a table outside RAM (test_virtio_queue.py);
21. akcipher used.len, which the 6.1 driver trusts: the result length + 1, never more
    than dst_len + 1 and never 0, even on error;
22. control requests whose header is readable always complete (the 6.1 driver waits
    for them without a timeout);
23. HW_READY never changes at run time (6.1 registers algorithms on a config change
    from interrupt context);
24. padding and reserved fields may hold garbage and must not be required to be zero;
25. bursts of out-of-order completions under load, which expose races in the guest
    driver (a guest issue: the multi-process stress run in the e2e tests);
26. drivers that hand over more dst bytes than dst_len and src entries that run past
    src_len: the device uses the header lengths, not descriptor totals.
"""
from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmsim.devices.virtio.crypto.constants import CipherAlgo, HashAlgo, MacAlgo, Op, Status, SymOp
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import Desc, Status as DevStatus
from vmsim.testing.virtio_driver import Descriptor
from vmsim.testing.crypto_rig import ServiceRig, ctrl_header, sym_flf, u32

IV = bytes(16)


@pytest.fixture
def rig():
    r = ServiceRig()
    yield r
    r.close()


def cipher_header(rig: ServiceRig, sid: int, iv_len: int, src_len: int, dst_len: int) -> bytes:
    return rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(iv_len, src_len, dst_len), SymOp.CIPHER))


def still_works(rig: ServiceRig) -> None:
    """Case 5: after any failure the device keeps its state consistent and serves requests."""
    key, src = os.urandom(16), os.urandom(32)
    sid = rig.create_cipher(CipherAlgo.AES_CBC, key)
    reply = rig.cipher(sid, IV, src)
    expected = Cipher(algorithms.AES(key), modes.CBC(IV)).encryptor().update(src)
    assert reply.status == Status.OK and reply.output == expected
    assert rig.device.ctx is not None and not rig.driver.status & DevStatus.DEVICE_NEEDS_RESET
    for q in rig.device.ctx.queues:
        assert q.in_flight() == 0


def submit_raw(rig: ServiceRig, readable: list[bytes], writable: list[int], queue: int = 0):
    request = rig.driver.queues[queue].submit(readable, writable)
    (used,) = rig.wait(queue)
    return request.written(), used.len


# ---- case 1: lengths that overflow ----------------------------------------------------

@pytest.mark.parametrize("iv_len,src_len", [(0xFFFF_FFF0, 0x20), (16, 0xFFFF_FFFF), (0x8000_0000, 0x8000_0000)])
def test_1_summed_lengths_that_would_overflow_32_bits(rig, iv_len, src_len):
    sid = rig.create_cipher(CipherAlgo.AES_CBC, os.urandom(16))
    out, used = submit_raw(rig, [cipher_header(rig, sid, iv_len, src_len, src_len), IV, bytes(32)], [32, 1])
    assert out[-1] == Status.ERR and out[:32] == bytes(32)
    still_works(rig)


def test_1_lengths_over_max_size(rig):
    r = ServiceRig(CryptoDevice(workers=0, limits=__import__("vmsim.devices.virtio.crypto.config", fromlist=["Limits"])
                                .Limits(max_size=64)))
    sid = r.create_hash(HashAlgo.SHA_256, 32)
    assert r.digest(Op.HASH, sid, bytes(65), 32).status == Status.ERR
    assert r.digest(Op.HASH, sid, bytes(64), 32).status == Status.OK
    r.close()


# ---- case 2 and 14: src != dst, dst bigger than the writable room ------------------------

def test_2_src_len_differs_from_dst_len(rig):
    sid = rig.create_cipher(CipherAlgo.AES_CBC, os.urandom(16))
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 16, 32, 64), IV, bytes(32)], [64, 1])
    assert out[-1] == Status.ERR and out[:64] == bytes(64)
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 16, 64, 32), IV, bytes(64)], [64, 1])
    assert out[-1] == Status.ERR


def test_14_dst_len_larger_than_the_writable_bytes(rig):
    sid = rig.create_cipher(CipherAlgo.AES_CBC, os.urandom(16))
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 16, 64, 64), IV, bytes(64)], [16, 1])
    assert out == bytes(16) + bytes([Status.ERR])
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 16, 16, 16), IV, bytes(16)], [1])
    assert out == bytes([Status.ERR])
    still_works(rig)


# ---- case 3: unknown and out-of-range session ids ----------------------------------------

@pytest.mark.parametrize("sid", [0, 12345, 2**64 - 1])
def test_3_unknown_session_ids(rig, sid):
    assert rig.destroy(Op.CIPHER_DESTROY_SESSION, sid) == Status.ERR
    assert rig.destroy(Op.AKCIPHER_DESTROY_SESSION, sid) == Status.ERR
    assert rig.cipher(sid, IV, bytes(16)).status == Status.INVSESS
    reply = rig.akcipher(sid, Op.AKCIPHER_DECRYPT, bytes(64), 64)
    assert reply.status == Status.INVSESS and reply.used_len == 1      # case 21: never 0
    still_works(rig)


# ---- case 6: missing or short buffers ----------------------------------------------------

def test_6_header_shorter_than_72_bytes(rig):
    sid = rig.create_cipher(CipherAlgo.AES_CBC, os.urandom(16))
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 16, 16, 16)[:60]], [16, 1])
    assert out[-1] == Status.ERR
    out, _ = submit_raw(rig, [b"\x00\x00"], [1])
    assert out[-1] == Status.ERR
    still_works(rig)


def test_6_no_readable_part_and_no_writable_part(rig):
    out, used = submit_raw(rig, [], [8])
    assert out == bytes(7) + bytes([Status.ERR]) and used == 0     # no output; the status is not adjacent
    request = rig.driver.queues[0].submit([bytes(72)], [])
    (used,) = rig.wait(0)
    assert used.head == request.head and used.len == 0      # returned, nothing written
    still_works(rig)


def test_6_and_8_create_reply_smaller_than_session_input(rig):
    flf = sym_flf(u32(CipherAlgo.AES_CBC, 16, 1), SymOp.CIPHER, 48)
    request, used = rig.control([ctrl_header(Op.CIPHER_CREATE_SESSION, flf), bytes(16)], [1])
    assert request.written() == bytes([Status.ERR]) and used == 1
    assert len(rig.device.sessions) == 0
    request, used = rig.control([ctrl_header(Op.CIPHER_CREATE_SESSION, flf), bytes(16)], [4, 4])
    assert request.written() == bytes(7) + bytes([Status.ERR])


def test_8_unknown_control_opcode_sizes_its_reply_from_the_buffer(rig):
    request, used = rig.control([ctrl_header(0x0707, b"")], [1])
    assert request.written() == bytes([Status.NOTSUPP]) and used == 1
    request, used = rig.control([ctrl_header(0x0707, b"")], [16])
    assert struct.unpack_from("<QI", request.written()) == (0, Status.NOTSUPP) and used == 16


# ---- case 7, 12, 15: short keys/IVs/src, long keys -------------------------------------

def test_7_key_shorter_in_the_chain_than_key_len(rig):
    flf = sym_flf(u32(CipherAlgo.AES_CBC, 32, 1), SymOp.CIPHER, 48)
    request, _ = rig.control([ctrl_header(Op.CIPHER_CREATE_SESSION, flf), bytes(16)], [16])
    assert struct.unpack_from("<QI", request.written())[1] == Status.ERR


def test_7_iv_and_src_shorter_than_the_header_says(rig):
    sid = rig.create_cipher(CipherAlgo.AES_CBC, os.urandom(16))
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 16, 64, 64), IV[:8]], [64, 1])
    assert out[-1] == Status.ERR
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 16, 64, 64), IV, bytes(32)], [64, 1])   # case 12
    assert out[-1] == Status.ERR
    out, _ = submit_raw(rig, [cipher_header(rig, sid, 8, 16, 16), IV, bytes(16)], [16, 1])    # wrong IV size
    assert out[-1] == Status.ERR
    still_works(rig)


@pytest.mark.parametrize("key_len", [65, 4096, 0xFFFF_FFFF])
def test_15_cipher_key_longer_than_max_cipher_key_len(rig, key_len):
    flf = sym_flf(u32(CipherAlgo.AES_CBC, key_len, 1), SymOp.CIPHER, 48)
    request, _ = rig.control([ctrl_header(Op.CIPHER_CREATE_SESSION, flf), bytes(min(key_len, 8192))], [16])
    assert struct.unpack_from("<QI", request.written())[1] == Status.ERR


def test_15_auth_key_longer_than_max_auth_key_len(rig):
    status, _ = rig.create(Op.MAC_CREATE_SESSION, u32(MacAlgo.HMAC_SHA1, 20, 513, 0), bytes(513))
    assert status == Status.ERR
    status, _ = rig.create(Op.MAC_CREATE_SESSION, u32(MacAlgo.HMAC_SHA1, 20, 512, 0), bytes(512))
    assert status == Status.OK


def test_wrong_key_size_for_the_algorithm_is_err(rig):
    status, _ = rig.create(Op.CIPHER_CREATE_SESSION, sym_flf(u32(CipherAlgo.AES_CBC, 17, 1), SymOp.CIPHER, 48),
                           bytes(17))
    assert status == Status.ERR


# ---- case 9, 24: fields the device must not trust or must not require --------------------

def test_9_queue_id_and_24_garbage_padding_do_not_matter(rig):
    flf = u32(CipherAlgo.AES_CBC, 16, 1, 0xFFFF_FFFF) + os.urandom(32) + u32(SymOp.CIPHER, 0x1234)
    request, _ = rig.control([ctrl_header(Op.CIPHER_CREATE_SESSION, flf, queue_id=0xFFFF_FFFF), bytes(16)], [16])
    assert struct.unpack_from("<QI", request.written())[1] == Status.OK


# ---- case 11: the guest rewrites its buffers after the device copied them -------------------

def test_11_worker_sees_the_copy_not_live_guest_memory():
    r = ServiceRig(CryptoDevice(workers=1, inline_max_bytes=0))
    try:
        key, src = os.urandom(16), os.urandom(4096)
        sid = r.create_cipher(CipherAlgo.AES_CBC, key)
        header = cipher_header(r, sid, 16, len(src), len(src))
        request = r.submit(0, [header, IV, src], [len(src), 1])
        q = r.driver.queues[0]
        src_addr = r.rig.ram.read_u64(q.desc + 16 * request.descriptors[2])   # [header, iv, src, dst, status]
        assert r.rig.ram.read(src_addr, len(src)) == src
        r.rig.ram.write(src_addr, bytes(len(src)))          # the guest changes its mind
        (used,) = r.wait(0)
        assert request.written()[:-1] == Cipher(algorithms.AES(key), modes.CBC(IV)).encryptor().update(src)
    finally:
        r.close()


# ---- case 17, 18: notifications the device must ignore -----------------------------------

def test_17_notify_before_driver_ok_and_18_bad_index_are_ignored():
    device = CryptoDevice(workers=0)
    device.queue_notify(0)                       # never activated: nothing to do, no exception
    r = ServiceRig(device)
    for index in (-1, 2, 99, 65536):
        device.queue_notify(index)
    still_works(r)
    r.close()


def test_18_in_flight_bounded_by_queue_size():
    r = ServiceRig(CryptoDevice(workers=1, inline_max_bytes=0), queue_size=8)
    try:
        sid = r.create_hash(HashAlgo.SHA_256, 32)
        q = r.driver.queues[0]
        for _ in range(8):
            q.submit([r.hdr(Op.HASH, sid, u32(4096, 32)), bytes(4096)], [32, 1], kick=False, indirect=True)
        q.kick()
        assert r.device.ctx.queues[0].in_flight() <= 8
        assert len(r.wait(0, 8)) == 8
    finally:
        r.close()


# ---- case 21: akcipher used.len ------------------------------------------------------------

def test_21_akcipher_used_len_never_exceeds_dst_len_plus_one_and_is_at_least_one(rig):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(65537, 1024)
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    sid = rig.create_akcipher(1, 1, pub, u32(0, 0))
    ok = rig.akcipher(sid, Op.AKCIPHER_ENCRYPT, b"\x05", 128, extra_writable=64)
    assert ok.status == Status.OK and ok.used_len == 129
    small = rig.akcipher(sid, Op.AKCIPHER_ENCRYPT, b"\x05", 64)        # result would not fit
    assert small.status == Status.ERR and small.used_len == 1
    sign = rig.akcipher(sid, Op.AKCIPHER_SIGN, b"\x05", 128)          # raw: no sign, and public key
    assert sign.status == Status.NOTSUPP and sign.used_len == 1
    too_big = rig.akcipher(sid, Op.AKCIPHER_ENCRYPT, b"\xff" * 128, 128)  # m >= n
    assert too_big.status == Status.ERR and too_big.used_len == 1


# ---- case 22: control requests always complete ---------------------------------------------

def test_22_control_requests_always_complete(rig):
    for readable, writable in (([b"\x02"], [16]), ([bytes(20)], [1]), ([ctrl_header(0x0002, b"")[:40]], [16]),
                               ([ctrl_header(Op.CIPHER_DESTROY_SESSION, b"")], [])):
        request = rig.ctrlq.submit(readable, writable)
        used = rig.ctrlq.collect()
        assert [u.head for u in used] == [request.head]
    still_works(rig)


# ---- case 23: HW_READY never changes at runtime ---------------------------------------------

def test_23_hw_ready_is_stable(rig):
    from vmsim.devices.virtio.spec import Reg
    before = rig.driver.read_reg(Reg.CONFIG)
    generation = rig.driver.read_reg(Reg.CONFIG_GENERATION)
    test_1_summed_lengths_that_would_overflow_32_bits(rig, 0xFFFF_FFF0, 0x20)
    assert rig.driver.read_reg(Reg.CONFIG) == before == 1
    assert rig.driver.read_reg(Reg.CONFIG_GENERATION) == generation


# ---- broken chains: needs reset, no exception ----------------------------------------------

def test_structurally_broken_chain_asks_for_reset(rig):
    q = rig.driver.queues[0]
    q.write_desc(0, Descriptor(rig.rig.ram.base, 72, Desc.NEXT, 999))   # next index out of range
    q.make_available(0)
    q.kick()
    assert rig.driver.status & DevStatus.DEVICE_NEEDS_RESET
