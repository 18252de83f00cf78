"""Property tests: random request headers and chain shapes never raise out of the device,
every chain is completed exactly once with a sane used.len, nothing is written outside
the chain's writable buffers and the used ring, and the device never asks for a reset
for a chain that is structurally valid."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from vmsim.devices.virtio.crypto.constants import CipherAlgo, CryptoFeatures, HashAlgo, Op
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import Status as DevStatus
from vmsim.testing.crypto_rig import ServiceRig, u32

DATA_OPS = [0x000, 0x001, 0x100, 0x200, 0x300, 0x301, 0x400, 0x401, 0x402, 0x403]
CTRL_OPS = [0x002, 0x003, 0x102, 0x103, 0x202, 0x203, 0x302, 0x303, 0x404, 0x405]

lengths = st.one_of(st.integers(0, 80), st.sampled_from([0xFFFF_FFFF, 0x8000_0000, 1 << 20]))
opcodes = lambda known: st.one_of(st.sampled_from(known), st.integers(0, 0xFFFF_FFFF))  # noqa: E731


def _rsa_keys() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(65537, 1024)
    return (key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()),
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1))


RSA_PRIVATE, RSA_PUBLIC = _rsa_keys()


def make_rig(revision_1: bool = False) -> tuple[ServiceRig, list[int]]:
    features = CryptoFeatures.ALL if revision_1 else CryptoFeatures.DEFAULT
    rig = ServiceRig(CryptoDevice(workers=0, features=features), queue_size=16, ram_size=1 << 20)
    sessions = [rig.create_cipher(CipherAlgo.AES_CBC, bytes(16)), rig.create_hash(HashAlgo.SHA_256, 32),
                rig.create_mac(2, bytes(20), 20),
                rig.create_akcipher(1, 2, RSA_PRIVATE, u32(1, 5)), rig.create_akcipher(1, 1, RSA_PUBLIC, u32(0, 0))]
    return rig, sessions


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def allowed_ranges(rig: ServiceRig, queue: int, writable: list[tuple[int, int]]) -> list[tuple[int, int]]:
    q = rig.driver.queues[queue]
    ring = (q.used, 6 + 8 * q.size)   # flags, idx, ring, avail_event
    return [*writable, ring]


def masked(ram: bytes, base: int, ranges: list[tuple[int, int]]) -> bytes:
    out = bytearray(ram)
    for addr, size in ranges:
        out[addr - base:addr - base + size] = bytes(size)
    return bytes(out)


def run_and_check(rig: ServiceRig, queue: int, readable: list[bytes], writable: list[int], indirect: bool) -> None:
    ram = rig.rig.ram
    q = rig.driver.queues[queue]
    request = q.submit(readable, writable, indirect=indirect, kick=False)
    before = bytes(ram.buffer)
    q.kick()
    after = bytes(ram.buffer)
    used = q.collect()
    assert [u.head for u in used] == [request.head]
    assert used[0].len <= sum(writable)
    assert not rig.driver.status & DevStatus.DEVICE_NEEDS_RESET
    ranges = allowed_ranges(rig, queue, request.writable)
    assert masked(before, ram.base, ranges) == masked(after, ram.base, ranges)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opcode=opcodes(DATA_OPS), session=st.integers(0, 7), flag=st.integers(0, 3),
       fields=st.lists(lengths, min_size=12, max_size=12), op_type=st.integers(0, 3),
       payload=st.binary(max_size=160), cuts=st.lists(st.integers(0, 200), max_size=4),
       writable=st.lists(st.integers(0, 64), min_size=0, max_size=4), indirect=st.booleans(),
       truncate=st.integers(0, 80), revision_1=st.booleans(), tail=st.binary(max_size=40))
def test_random_data_requests(opcode, session, flag, fields, op_type, payload, cuts, writable, indirect, truncate,
                              revision_1, tail):
    """With REVISION_1 a zero flag means stateless, so keys come from the payload too."""
    rig, sessions = make_rig(revision_1)
    try:
        sid = sessions[session] if session < len(sessions) else session * 1000
        flf = u32(*fields[:10]) + u32(op_type, fields[10]) + tail
        header = struct.pack("<IIQII", opcode, 0, sid, flag, fields[11]) + flf
        header = header[:72 - truncate] if truncate < 8 else header
        readable = [p for p in [header, *split(payload, cuts)] if p]
        if not readable and not writable:
            writable = [1]
        run_and_check(rig, 0, readable, [w for w in writable if w] or [], indirect)
    finally:
        rig.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opcode=opcodes(CTRL_OPS), flf=st.binary(min_size=0, max_size=56), fields=st.lists(lengths, min_size=4,
       max_size=4), key=st.binary(max_size=80), writable=st.lists(st.integers(1, 24), max_size=3),
       indirect=st.booleans(), revision_1=st.booleans())
def test_random_control_requests_always_complete(opcode, flf, fields, key, writable, indirect, revision_1):
    rig, _ = make_rig(revision_1)
    try:
        body = (u32(*fields) + flf)[:56]
        header = u32(opcode, 0, 0, 0) + body
        run_and_check(rig, rig.device.control_queue, [header, key] if key else [header], writable, indirect)
    finally:
        rig.close()


@settings(max_examples=60, deadline=None)
@given(src=st.binary(min_size=0, max_size=200).map(lambda b: b[: len(b) // 16 * 16]),
       cuts=st.lists(st.integers(0, 200), max_size=5), dst_cuts=st.lists(st.integers(1, 64), max_size=4),
       slack=st.integers(0, 40), indirect=st.booleans())
def test_cipher_result_is_independent_of_chain_shape(src, cuts, dst_cuts, slack, indirect):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    rig, (cipher_sid, *_) = make_rig()
    try:
        from vmsim.testing.crypto_rig import sym_flf
        header = rig.hdr(Op.CIPHER_ENCRYPT, cipher_sid, sym_flf(u32(16, len(src), len(src)), 1))
        total = len(src) + slack
        sizes, left = [], total
        for c in dst_cuts:
            if left > c:
                sizes.append(c)
                left -= c
        sizes.append(left + 1)           # the status byte rides on the last segment
        request = rig.driver.queues[0].submit([header, bytes(16), *split(src, cuts)], [s for s in sizes if s],
                                              indirect=indirect)
        rig.driver.queues[0].collect()
        out = request.written()
        expected = Cipher(algorithms.AES(bytes(16)), modes.CBC(bytes(16))).encryptor().update(src)
        assert out[-1] == 0 and out[:len(src)] == expected and out[len(src):-1] == bytes(slack)
    finally:
        rig.close()
