"""The device as the Linux 6.1 driver and a REVISION_1 driver see it: config space,
features, session lifecycle, every service's data path, chaining, stateless mode and the
status codes, all through the MMIO transport and real virtqueues."""
from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vmsim.devices.virtio.crypto.constants import (
    AeadAlgo, ChainOrder, CipherAlgo, CipherDirection, CryptoFeatures, HashAlgo, HashMode, MacAlgo, Op,
    Status, SymOp)
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import Feature, Reg
from vmsim.testing.crypto_rig import (
    CryptoRig, ServiceRig, ctrl_header, data_header, pad, sym_flf, u32)


def aes_cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool = True) -> bytes:
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


@pytest.fixture
def rig():
    r = ServiceRig()
    yield r
    r.close()


@pytest.fixture
def rev1():
    r = ServiceRig(CryptoDevice(workers=0, features=CryptoFeatures.ALL))
    yield r
    r.close()


def config(rig: CryptoRig, offset: int, size: int = 4) -> int:
    return rig.driver.read_reg(Reg.CONFIG + offset, size)


# ---- config space and features --------------------------------------------------------

def test_config_layout_advertises_exactly_what_is_implemented(rig):
    assert config(rig, 0x00) == 1                    # HW_READY
    assert config(rig, 0x04) == 1                    # max_dataqueues
    assert config(rig, 0x08) == 0b11111              # CIPHER HASH MAC AEAD AKCIPHER
    cipher_l = config(rig, 0x0C)
    assert cipher_l & (1 << CipherAlgo.AES_CBC)      # what Linux needs for cbc(aes)
    assert not cipher_l & (1 << CipherAlgo.KASUMI_F8 | 1 << CipherAlgo.SNOW3G_UEA2 | 1 << CipherAlgo.ZUC_EEA3
                           | 1 << CipherAlgo.AES_F8 | 1 << CipherAlgo.NO_CIPHER)
    assert config(rig, 0x10) == 0
    assert config(rig, 0x14) == sum(1 << a for a in range(1, 13))   # MD5 .. SHAKE256
    mac = config(rig, 0x18) | config(rig, 0x1C) << 32
    assert mac == sum(1 << a for a in (1, 2, 3, 4, 5, 6, 25, 26, 41))
    assert config(rig, 0x20) == 0b1110               # GCM CCM CHACHA20_POLY1305
    assert config(rig, 0x24) >= 32 and config(rig, 0x28) > 0
    assert config(rig, 0x2C) == (1 << 1) | (1 << 3)  # RSA, ECDSA with the Linux numbering
    max_size = config(rig, 0x30) | config(rig, 0x34) << 32
    assert max_size >= 1 << 20
    assert config(rig, 0x38) == 0 and config(rig, 0x1000) == 0
    assert config(rig, 0x00, 1) == 1 and config(rig, 0x08, 2) == 0b11111


def test_default_features_are_what_linux_61_negotiates(rig):
    assert rig.features & 0xFFFFFF == 0
    assert rig.features & Feature.VERSION_1


def test_revision_1_and_stateless_bits_only_when_enabled(rev1):
    assert rev1.features & 0x3F == CryptoFeatures.ALL


def test_hw_ready_can_be_withheld_and_queues_are_counted():
    r = CryptoRig(CryptoDevice(max_dataqueues=8, workers=0, hw_ready=False))
    assert config(r, 0) == 0 and config(r, 4) == 8
    assert len(r.driver.queues) == 9 and r.device.control_queue == 8
    r.close()


# ---- the Linux 6.1 skcipher path --------------------------------------------------------

@pytest.mark.parametrize("key_len", [16, 24, 32])
def test_linux_cbc_aes_sessions_encrypt_decrypt_destroy(rig, key_len):
    key, iv, src = os.urandom(key_len), os.urandom(16), os.urandom(4096)
    enc = rig.create_cipher(CipherAlgo.AES_CBC, key, CipherDirection.ENCRYPT)
    dec = rig.create_cipher(CipherAlgo.AES_CBC, key, CipherDirection.DECRYPT)
    assert enc != dec
    reply = rig.cipher(enc, iv, src, extra_writable=100)
    assert reply.status == Status.OK and reply.output == aes_cbc(key, iv, src)
    assert reply.used_len == len(src)      # what was written: the slack and status lie past it
    back = rig.cipher(dec, iv, reply.output, decrypt=True)
    assert back.output == src
    assert rig.destroy(Op.CIPHER_DESTROY_SESSION, enc) == Status.OK
    assert rig.destroy(Op.CIPHER_DESTROY_SESSION, dec) == Status.OK
    assert rig.cipher(enc, iv, src).status == Status.INVSESS


def test_linux_indirect_descriptors():
    r = ServiceRig(indirect=True)
    key, iv, src = os.urandom(16), os.urandom(16), os.urandom(64)
    sid = r.create_cipher(CipherAlgo.AES_CBC, key)
    assert r.cipher(sid, iv, src).output == aes_cbc(key, iv, src)
    r.close()


def test_src_split_over_many_segments_with_trailing_bytes(rig):
    """Linux passes whole src sg entries, which may extend past src_data_len."""
    key, iv, src = os.urandom(16), os.urandom(16), os.urandom(96)
    sid = rig.create_cipher(CipherAlgo.AES_CBC, key)
    header = rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, 96, 96), SymOp.CIPHER))
    request = rig.submit(0, [header, iv, src[:10], src[10:50], src[50:] + b"junk"], [40, 56, 7, 1])
    (used,) = rig.wait(0)
    out = request.written()
    assert out[-1] == Status.OK and out[:96] == aes_cbc(key, iv, src) and out[96:103] == bytes(7)


def test_queue_id_in_control_header_is_ignored(rig):
    key = os.urandom(16)
    flf = sym_flf(u32(CipherAlgo.AES_CBC, 16, CipherDirection.ENCRYPT), SymOp.CIPHER, 48)
    request, _ = rig.control([ctrl_header(Op.CIPHER_CREATE_SESSION, flf, queue_id=0xFFFF_FFFF), key], [16])
    assert struct.unpack_from("<QI", request.written())[1] == Status.OK


def test_padding_and_reserved_fields_may_hold_garbage(rig):
    """Linux 6.1 copies 56 bytes from a 20-byte stack object into the akcipher flf."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(65537, 1024).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    flf = u32(1, 1, len(key), 0, 5) + os.urandom(36)
    request, _ = rig.control([ctrl_header(Op.AKCIPHER_CREATE_SESSION, flf, algo=0xDEAD) , key], [16])
    assert struct.unpack_from("<QI", request.written())[1] == Status.OK
    cipher_flf = u32(CipherAlgo.AES_CBC, 16, 1, 0xFFFFFFFF) + os.urandom(32) + u32(SymOp.CIPHER, 0xABCDEF)
    request, _ = rig.control([ctrl_header(Op.CIPHER_CREATE_SESSION, cipher_flf), os.urandom(16)], [16])
    assert struct.unpack_from("<QI", request.written())[1] == Status.OK


# ---- other services -------------------------------------------------------------------

def test_hash_and_mac_sessions(rig):
    msg = os.urandom(300)
    sid = rig.create_hash(HashAlgo.SHA_256, 32)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(msg)
    expected = digest.finalize()
    reply = rig.digest(Op.HASH, sid, msg, 32)
    assert reply.status == Status.OK and reply.output == expected and reply.used_len == 33
    assert rig.digest(Op.HASH, sid, msg, 12).output == expected[:12]      # truncation
    key = os.urandom(40)
    mac = rig.create_mac(MacAlgo.HMAC_SHA_512, key, 64)
    h = hmac.HMAC(key, hashes.SHA512())
    h.update(msg)
    assert rig.digest(Op.MAC, mac, msg, 64).output == h.finalize()
    assert rig.destroy(Op.MAC_DESTROY_SESSION, mac) == Status.OK
    assert rig.destroy(Op.HASH_DESTROY_SESSION, sid) == Status.OK


def test_aead_failed_tag_is_badmsg(rig):
    key, iv, pt, aad = os.urandom(16), os.urandom(12), os.urandom(50), os.urandom(20)
    enc = rig.create_aead(AeadAlgo.GCM, key, 16, True)
    sealed = rig.aead(enc, True, iv, pt, aad, 66)
    assert sealed.status == Status.OK and sealed.output == AESGCM(key).encrypt(iv, pt, aad)
    dec = rig.create_aead(AeadAlgo.GCM, key, 16, False)
    assert rig.aead(dec, False, iv, sealed.output, aad, 50).output == pt
    tampered = sealed.output[:-1] + bytes([sealed.output[-1] ^ 1])
    reply = rig.aead(dec, False, iv, tampered, aad, 50)
    assert reply.status == Status.BADMSG and reply.output == bytes(50)   # nothing released


@pytest.mark.parametrize("order", [ChainOrder.CIPHER_THEN_HASH, ChainOrder.HASH_THEN_CIPHER])
def test_algorithm_chaining_cipher_and_hmac(rig, order):
    ckey, akey, iv = os.urandom(16), os.urandom(32), os.urandom(16)
    src, aad = os.urandom(80), os.urandom(8)
    sid = rig.create_chain(order, HashMode.AUTH, CipherAlgo.AES_CBC, ckey, CipherDirection.ENCRYPT,
                           MacAlgo.HMAC_SHA_256, 32, akey, aad_len=len(aad))
    reply = rig.chain(sid, iv, src, aad, (16, 64), (0, 80), 32)
    assert reply.status == Status.OK
    dst = src[:16] + aes_cbc(ckey, iv, src[16:80])
    assert reply.request.written()[:80] == dst
    authed = dst if order == ChainOrder.CIPHER_THEN_HASH else src
    h = hmac.HMAC(akey, hashes.SHA256())
    h.update(aad + authed)
    assert reply.request.written()[80:112] == h.finalize()


def test_chain_with_plain_hash_and_regions_past_src_is_err(rig):
    sid = rig.create_chain(ChainOrder.CIPHER_THEN_HASH, HashMode.PLAIN, CipherAlgo.AES_CTR, os.urandom(16),
                           CipherDirection.ENCRYPT, HashAlgo.SHA1, 20)
    assert rig.chain(sid, os.urandom(16), os.urandom(33), b"", (0, 33), (0, 33), 20).status == Status.OK
    assert rig.chain(sid, os.urandom(16), os.urandom(33), b"", (1, 33), (0, 33), 20).status == Status.ERR
    assert rig.chain(sid, os.urandom(16), os.urandom(33), b"", (0, 33), (30, 4), 20).status == Status.ERR


def test_nested_hash_mode_is_notsupp(rig):
    op_flf = u32(1, HashMode.NESTED, CipherAlgo.AES_CBC, 16, 1, 0) + pad(u32(HashAlgo.SHA1, 20), 16) + u32(0, 0)
    status, _ = rig.create(Op.CIPHER_CREATE_SESSION, sym_flf(op_flf, SymOp.ALGORITHM_CHAINING, 48), os.urandom(16))
    assert status == Status.NOTSUPP


# ---- status codes ---------------------------------------------------------------------

def test_unsupported_algorithms_are_notsupp(rig):
    for algo in (CipherAlgo.KASUMI_F8, CipherAlgo.ZUC_EEA3, 99):
        status, _ = rig.create(Op.CIPHER_CREATE_SESSION, sym_flf(u32(algo, 16, 1), SymOp.CIPHER, 48), bytes(16))
        assert status == Status.NOTSUPP
    assert rig.create(Op.HASH_CREATE_SESSION, u32(0, 20))[0] == Status.NOTSUPP
    assert rig.create(Op.MAC_CREATE_SESSION, u32(MacAlgo.SNOW3G_UIA2, 4, 16, 0), bytes(16))[0] == Status.NOTSUPP
    assert rig.create(Op.AEAD_CREATE_SESSION, u32(7, 16, 16, 0, 1), bytes(16))[0] == Status.NOTSUPP
    # DSA (2 on the Linux numbering) is not offered
    assert rig.create(Op.AKCIPHER_CREATE_SESSION, u32(2, 1, 4), bytes(4))[0] == Status.NOTSUPP


def test_wrong_session_service_is_invsess(rig):
    sid = rig.create_hash(HashAlgo.SHA1, 20)
    assert rig.cipher(sid, os.urandom(16), os.urandom(16)).status == Status.INVSESS
    assert rig.destroy(Op.CIPHER_DESTROY_SESSION, sid) == Status.ERR
    assert rig.destroy(Op.HASH_DESTROY_SESSION, sid) == Status.OK


def test_full_session_table_is_err_without_revision_1():
    r = ServiceRig(CryptoDevice(workers=0, max_sessions=3))
    for _ in range(3):
        r.create_hash(HashAlgo.SHA1, 20)
    assert r.create(Op.HASH_CREATE_SESSION, u32(HashAlgo.SHA1, 20))[0] == Status.ERR
    r.close()


def test_full_session_table_is_nospc_with_revision_1():
    r = ServiceRig(CryptoDevice(workers=0, max_sessions=2, features=CryptoFeatures.ALL))
    r.create_hash(HashAlgo.SHA1, 20)
    r.create_hash(HashAlgo.SHA1, 20)
    assert r.create(Op.HASH_CREATE_SESSION, u32(HashAlgo.SHA1, 20))[0] == Status.NOSPC
    r.close()


def test_reset_drops_sessions(rig):
    sid = rig.create_cipher(CipherAlgo.AES_CBC, os.urandom(16))
    rig.driver.init(queue_size=64)
    assert len(rig.device.sessions) == 0
    rig.ctrlq = rig.driver.queues[rig.device.control_queue]
    assert rig.cipher(sid, os.urandom(16), os.urandom(16)).status == Status.INVSESS


def test_eight_data_queues_each_serve_requests():
    r = ServiceRig(CryptoDevice(max_dataqueues=8, workers=0))
    key = os.urandom(16)
    sid = r.create_cipher(CipherAlgo.AES_ECB, key)
    for q in range(8):
        src = os.urandom(32)
        assert r.cipher(sid, b"", src, queue=q).output == Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(src)
    assert [s.requests for s in r.device.stats[:8]] == [1] * 8
    r.close()


# ---- REVISION_1 layouts and stateless mode -------------------------------------------------

def test_revision_1_session_mode_uses_unpadded_layouts(rev1):
    sid = rev1.create_hash(HashAlgo.SHA_256, 32)                      # 8-byte flf, not 56
    msg = os.urandom(40)
    reply = rev1.digest(Op.HASH, sid, msg, 32)                        # 8-byte data flf, not 48
    digest = hashes.Hash(hashes.SHA256())
    digest.update(msg)
    assert reply.status == Status.OK and reply.output == digest.finalize()
    key, iv, src = os.urandom(16), os.urandom(16), os.urandom(32)
    csid = rev1.create_cipher(CipherAlgo.AES_CBC, key)
    assert rev1.cipher(csid, iv, src).output == aes_cbc(key, iv, src)
    assert rev1.destroy(Op.HASH_DESTROY_SESSION, sid) == Status.OK     # 8-byte destroy flf


def test_stateless_cipher_hash_mac_aead(rev1):
    key, iv, src = os.urandom(16), os.urandom(16), os.urandom(48)
    flf = pad(u32(CipherAlgo.AES_CBC, 16, CipherDirection.ENCRYPT, 16, 48, 48), 72) + u32(SymOp.CIPHER)
    reply = rev1.data([data_header(Op.CIPHER_ENCRYPT, 0, flf, True, flag=0), key, iv, src], 48)
    assert reply.status == Status.OK and reply.output == aes_cbc(key, iv, src)

    msg = os.urandom(77)
    reply = rev1.data([data_header(Op.HASH, 0, u32(HashAlgo.SHA3_256, 77, 32, 0), True), msg], 32)
    digest = hashes.Hash(hashes.SHA3_256())
    digest.update(msg)
    assert reply.output == digest.finalize()

    mkey = os.urandom(20)
    reply = rev1.data([data_header(Op.MAC, 0, u32(MacAlgo.HMAC_SHA1, 20, 77, 20), True), mkey, msg], 20)
    h = hmac.HMAC(mkey, hashes.SHA1())
    h.update(msg)
    assert reply.output == h.finalize()

    akey, nonce, aad = os.urandom(32), os.urandom(12), os.urandom(5)
    flf = u32(AeadAlgo.GCM, 32, CipherDirection.ENCRYPT, 12, 16, 5, 77, 93)
    reply = rev1.data([data_header(Op.AEAD_ENCRYPT, 0, flf, True), akey, nonce, msg, aad], 93)
    assert reply.output == AESGCM(akey).encrypt(nonce, msg, aad)


def test_stateless_chain_puts_keys_first_and_aad_before_src(rev1):
    ckey, akey, iv, src, aad = os.urandom(16), os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(4)
    sess = u32(ChainOrder.CIPHER_THEN_HASH, 4, CipherAlgo.AES_CBC, 16, CipherDirection.ENCRYPT,
               MacAlgo.HMAC_SHA_256, 16, HashMode.AUTH)
    para = u32(16, 32, 32, 0, 32, 0, 32, 4, 32, 0)
    flf = pad(sess + para, 72) + u32(SymOp.ALGORITHM_CHAINING)
    reply = rev1.data([data_header(Op.CIPHER_ENCRYPT, 0, flf, True), ckey, akey, iv, aad, src], 64)
    assert reply.status == Status.OK
    dst = aes_cbc(ckey, iv, src)
    h = hmac.HMAC(akey, hashes.SHA256())
    h.update(aad + dst)
    assert reply.output == dst + h.finalize()


def test_stateless_without_its_feature_is_notsupp():
    r = ServiceRig(CryptoDevice(workers=0, features=CryptoFeatures.ALL),
                   wanted=CryptoFeatures.REVISION_1 | Feature.VERSION_1)
    assert r.revision_1
    reply = r.data([data_header(Op.HASH, 0, u32(HashAlgo.SHA1, 3, 20, 0), True), b"abc"], 20)
    assert reply.status == Status.NOTSUPP
    r.close()


def test_stateless_akcipher_rsa_and_ecdsa(rev1):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
    key = rsa.generate_private_key(65537, 1024)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    digest = os.urandom(32)
    flf = u32(1, 2, len(der), 1, 6, 32, 128)      # RSA, private, PKCS#1 + SHA-256, src 32, dst 128
    reply = rev1.data([data_header(Op.AKCIPHER_SIGN, 0, flf, True), der, digest], 128)
    from cryptography.hazmat.primitives.asymmetric import padding
    assert reply.status == Status.OK and reply.used_len == 129
    assert reply.output == key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    eck = ec.generate_private_key(ec.SECP384R1())
    point = eck.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    sig = eck.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    flf = u32(3, 1, len(point), 4, 0, len(sig), 32)   # ECDSA, public, P-384, sig, digest
    ok = rev1.data([data_header(Op.AKCIPHER_VERIFY, 0, flf, True), point, sig + digest], 0)
    assert ok.status == Status.OK and ok.used_len == 1
    bad = rev1.data([data_header(Op.AKCIPHER_VERIFY, 0, flf, True), point, sig + bytes(32)], 0)
    assert bad.status == Status.KEY_REJECTED
