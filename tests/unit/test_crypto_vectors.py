"""Known-answer tests from the cryptography_vectors package, run through the virtqueues.

Every algorithm the device advertises is checked in every direction it offers, on a
sample of each vector file (the first few vectors of each section) to keep the run short.
"""
from __future__ import annotations

import hashlib
import os

import pytest
import cryptography_vectors
from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmsim.devices.virtio.crypto.constants import (
    AeadAlgo, AkcipherAlgo, CipherAlgo, CipherDirection, CryptoFeatures, Curve, HashAlgo, KeyType, MacAlgo, Op,
    RsaHash, RsaPadding, Status)
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.testing.crypto_rig import ServiceRig, u32

SAMPLE = 4


def load(path: str) -> list[dict[str, str]]:
    """NIST/RFC-style 'NAME = value' blocks; a [section] line is kept as 'section'."""
    vectors, current, section = [], {}, ""
    with cryptography_vectors.open_vector_file(path, "r") as f:
        for raw in f:
            line = raw.strip()
            if line.startswith("#"):
                continue
            if not line:
                if current:
                    vectors.append(current)
                    current = {}
                continue
            if line.startswith("["):
                if current:
                    vectors.append(current)
                    current = {}
                section = line.strip("[]")
                continue
            if "=" in line:
                name, _, value = line.partition("=")
                current[name.strip().upper()] = value.strip()
                current["SECTION"] = section
            else:
                current[line.upper()] = "1"  # e.g. FAIL
    if current:
        vectors.append(current)
    return vectors


def sample(path: str, key: str = "SECTION", n: int = SAMPLE) -> list[dict[str, str]]:
    """The first n vectors of each distinct `key` value."""
    seen: dict[str, int] = {}
    out = []
    for v in load(path):
        group = v.get(key, "")
        if seen.get(group, 0) < n:
            seen[group] = seen.get(group, 0) + 1
            out.append(v)
    return out


def h(value: str) -> bytes:
    return bytes.fromhex(value)


@pytest.fixture(scope="module", params=["legacy", "revision_1"])
def rig(request):
    """Each vector runs twice: Linux's padded layouts, and REVISION_1's unpadded ones."""
    features = CryptoFeatures.DEFAULT if request.param == "legacy" else CryptoFeatures.REVISION_1
    r = ServiceRig(CryptoDevice(workers=0, features=features), queue_size=256)
    assert r.revision_1 == (request.param == "revision_1")
    yield r
    r.close()


def _cipher_roundtrip(rig: ServiceRig, algo: int, key: bytes, iv: bytes, pt: bytes, ct: bytes,
                      encrypt_only: bool = False) -> None:
    enc = rig.create_cipher(algo, key, CipherDirection.ENCRYPT)
    reply = rig.cipher(enc, iv, pt, extra_writable=7)   # Linux hands more dst than dst_len
    assert reply.status == Status.OK and reply.output == ct
    if not encrypt_only:
        dec = rig.create_cipher(algo, key, CipherDirection.DECRYPT)
        reply = rig.cipher(dec, iv, ct, decrypt=True)
        assert reply.status == Status.OK and reply.output == pt
        rig.destroy(Op.CIPHER_DESTROY_SESSION, dec)
    rig.destroy(Op.CIPHER_DESTROY_SESSION, enc)


@pytest.mark.parametrize("mode,algo", [("CBC", CipherAlgo.AES_CBC), ("ECB", CipherAlgo.AES_ECB)])
@pytest.mark.parametrize("bits", [128, 192, 256])
def test_aes_block_modes(rig, mode, algo, bits):
    for v in sample(f"ciphers/AES/{mode}/{mode}MMT{bits}.rsp") + sample(f"ciphers/AES/{mode}/{mode}GFSbox{bits}.rsp"):
        _cipher_roundtrip(rig, algo, h(v["KEY"]), h(v.get("IV", "")), h(v["PLAINTEXT"]), h(v["CIPHERTEXT"]))


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_aes_ctr(rig, bits):
    for v in load(f"ciphers/AES/CTR/aes-{bits}-ctr.txt"):
        _cipher_roundtrip(rig, CipherAlgo.AES_CTR, h(v["KEY"]), h(v["IV"]), h(v["PLAINTEXT"]), h(v["CIPHERTEXT"]))


@pytest.mark.parametrize("bits", [128, 256])
def test_aes_xts(rig, bits):
    vectors = [v for v in load(f"ciphers/AES/XTS/tweak-128hexstr/XTSGenAES{bits}.rsp")
               if int(v["DATAUNITLEN"]) % 8 == 0]
    for v in vectors[:SAMPLE] + vectors[-SAMPLE:]:
        _cipher_roundtrip(rig, CipherAlgo.AES_XTS, h(v["KEY"]), h(v["I"]), h(v["PT"]), h(v["CT"]))


@pytest.mark.parametrize("mode,algo", [("ECB", CipherAlgo.DES3_ECB), ("CBC", CipherAlgo.DES3_CBC)])
def test_3des(rig, mode, algo):
    for name in ("MMT2", "MMT3"):
        for v in sample(f"ciphers/3DES/{mode}/T{mode}{name}.rsp"):
            key = h(v["KEY1"]) + h(v["KEY2"]) + h(v["KEY3"])
            key = key[:16] if name == "MMT2" else key   # keying option 2: K3 = K1
            pt, ct = h(v["PLAINTEXT"]), h(v["CIPHERTEXT"])
            _cipher_roundtrip(rig, algo, key, h(v.get("IV", "")), pt, ct)


@pytest.mark.parametrize("mode,algo", [("ECB", CipherAlgo.DES_ECB), ("CBC", CipherAlgo.DES_CBC)])
def test_single_des(rig, mode, algo):
    """TDEA with one key (KEYs = K1 = K2 = K3) is single DES."""
    for v in sample(f"ciphers/3DES/{mode}/T{mode}varkey.rsp"):
        _cipher_roundtrip(rig, algo, h(v["KEYS"]), h(v.get("IV", "")), h(v["PLAINTEXT"]), h(v["CIPHERTEXT"]))


def test_3des_ctr_matches_counter_mode_over_3des_ecb(rig):
    """No CAVP file for 3DES-CTR: check against CTR built here from 3DES-ECB."""
    key, iv, pt = os.urandom(24), b"\xff" * 7 + b"\xfe", os.urandom(45)   # counter wraps 2^64
    ecb = Cipher(decrepit.TripleDES(key), modes.ECB()).encryptor()
    blocks = [((int.from_bytes(iv, "big") + i) % 2**64).to_bytes(8, "big") for i in range(6)]
    stream = ecb.update(b"".join(blocks))
    ct = bytes(a ^ b for a, b in zip(pt, stream))
    _cipher_roundtrip(rig, CipherAlgo.DES3_CTR, key, iv, pt, ct)


def test_arc4(rig):
    for bits in (40, 128, 256):
        for v in load(f"ciphers/ARC4/rfc-6229-{bits}.txt")[:3]:
            offset = int(v["OFFSET"])
            stream_end = offset + len(h(v["PLAINTEXT"]))
            pt = bytes(stream_end)
            enc = rig.create_cipher(CipherAlgo.ARC4, h(v["KEY"]))
            reply = rig.cipher(enc, b"", pt)
            assert reply.status == Status.OK and reply.output[offset:] == h(v["CIPHERTEXT"])


_SHA_FILES = {
    HashAlgo.SHA1: "SHA1/SHA1ShortMsg.rsp", HashAlgo.SHA_224: "SHA2/SHA224ShortMsg.rsp",
    HashAlgo.SHA_256: "SHA2/SHA256ShortMsg.rsp", HashAlgo.SHA_384: "SHA2/SHA384ShortMsg.rsp",
    HashAlgo.SHA_512: "SHA2/SHA512ShortMsg.rsp", HashAlgo.SHA3_224: "SHA3/SHA3_224ShortMsg.rsp",
    HashAlgo.SHA3_256: "SHA3/SHA3_256ShortMsg.rsp", HashAlgo.SHA3_384: "SHA3/SHA3_384ShortMsg.rsp",
    HashAlgo.SHA3_512: "SHA3/SHA3_512ShortMsg.rsp",
}


@pytest.mark.parametrize("algo", list(_SHA_FILES))
def test_hashes(rig, algo):
    vectors = [v for v in load(f"hashes/{_SHA_FILES[algo]}") if "MD" in v]
    for v in vectors[:SAMPLE] + vectors[-2:]:
        msg = h(v["MSG"])[: int(v["LEN"]) // 8]
        md = h(v["MD"])
        sid = rig.create_hash(algo, len(md))
        reply = rig.digest(Op.HASH, sid, msg, len(md))
        assert reply.status == Status.OK and reply.output == md
        assert rig.destroy(Op.HASH_DESTROY_SESSION, sid) == Status.OK


def test_md5(rig):
    sid = rig.create_hash(HashAlgo.MD5, 16)
    for v in load("hashes/MD5/rfc-1321.txt"):
        msg = h(v["MSG"])[: int(v["LEN"]) // 8]
        assert rig.digest(Op.HASH, sid, msg, 16).output == h(v["MD"])


@pytest.mark.parametrize("algo,name", [(HashAlgo.SHAKE128, "SHAKE128"), (HashAlgo.SHAKE256, "SHAKE256")])
def test_shake_variable_output(rig, algo, name):
    for v in load(f"hashes/SHAKE/{name}VariableOut.rsp")[:SAMPLE]:
        out = h(v["OUTPUT"])
        sid = rig.create_hash(algo, len(out))
        assert rig.digest(Op.HASH, sid, h(v["MSG"]), len(out)).output == out


_HMAC = {MacAlgo.HMAC_MD5: "rfc-2202-md5", MacAlgo.HMAC_SHA1: "rfc-2202-sha1", MacAlgo.HMAC_SHA_224: "rfc-4231-sha224",
         MacAlgo.HMAC_SHA_256: "rfc-4231-sha256", MacAlgo.HMAC_SHA_384: "rfc-4231-sha384",
         MacAlgo.HMAC_SHA_512: "rfc-4231-sha512"}


@pytest.mark.parametrize("algo", list(_HMAC))
def test_hmac(rig, algo):
    for v in load(f"HMAC/{_HMAC[algo]}.txt"):
        md = h(v["MD"])
        sid = rig.create_mac(algo, h(v["KEY"]), len(md))
        reply = rig.digest(Op.MAC, sid, h(v["MSG"]), len(md))
        assert reply.status == Status.OK and reply.output == md, v


@pytest.mark.parametrize("name", ["aes128", "aes192", "aes256", "3des"])
def test_cmac(rig, name):
    for v in load(f"CMAC/nist-800-38b-{name}.txt")[:8]:
        if name == "3des":
            key, algo = h(v["KEY1"]) + h(v["KEY2"]) + h(v["KEY3"]), MacAlgo.CMAC_3DES
        else:
            key, algo = h(v["KEY"]), MacAlgo.CMAC_AES
        out = h(v["OUTPUT"] if "OUTPUT" in v else v["MAC"])
        sid = rig.create_mac(algo, key, len(out))
        assert rig.digest(Op.MAC, sid, h(v.get("MESSAGE", v.get("MSG", ""))), len(out)).output == out


def test_gmac_from_gcm_vectors_with_empty_plaintext(rig):
    """GMAC = GCM over AAD only; the message carries the 12-byte IV first (device convention)."""
    vectors = [v for v in load("ciphers/AES/GCM/gcmEncryptExtIV128.rsp")
               if v.get("PT") == "" and len(h(v["IV"])) == 12 and v.get("AAD")]
    for v in vectors[:SAMPLE]:
        tag = h(v["TAG"])
        sid = rig.create_mac(MacAlgo.GMAC_AES, h(v["KEY"]), len(tag))
        assert rig.digest(Op.MAC, sid, h(v["IV"]) + h(v["AAD"]), len(tag)).output == tag


def gf_mult(x: int, y: int) -> int:
    """Multiplication in GF(2^128) as GCM defines it (SP 800-38D, algorithm 1)."""
    r = 0xE1 << 120
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ r if v & 1 else v >> 1
    return z


def ghash(h_key: bytes, data: bytes) -> bytes:
    """GHASH_H over whole blocks, bit by bit: slow, independent of the device's."""
    h_int, y = int.from_bytes(h_key, "big"), 0
    for i in range(0, len(data), 16):
        y = gf_mult(y ^ int.from_bytes(data[i:i + 16], "big"), h_int)
    return y.to_bytes(16, "big")


def gcm_j0(key: bytes, iv: bytes) -> bytes:
    """The pre-counter block J0 for an IV (SP 800-38D, algorithm 4, step 2)."""
    if len(iv) == 12:
        return iv + b"\0\0\0\1"
    h_key = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(bytes(16))
    padded = iv + bytes(-len(iv) % 16) + bytes(8) + (8 * len(iv)).to_bytes(8, "big")
    return ghash(h_key, padded)


def gcm_ivs(key: bytes, iv: bytes) -> list[bytes]:
    """The IV fields a GCM vector can be sent with: J0 always (iv_len 16), and the IV
    itself when it is the 96-bit IV the spec also accepts."""
    return [gcm_j0(key, iv)] + ([iv] if len(iv) == 12 else [])


@pytest.mark.parametrize("bits", [128, 256])
def test_gcm(rig, bits):
    """Every CAVP IV length: a 96-bit IV as itself and as J0; any other as the J0 the
    standard derives from it (the spec's iv_len 16 means "the IV is J0")."""
    enc_vectors = [v for v in load(f"ciphers/AES/GCM/gcmEncryptExtIV{bits}.rsp") if "KEY" in v]
    picked = enc_vectors[::max(1, len(enc_vectors) // 12)]
    assert {len(h(v["IV"])) == 12 for v in picked} == {True, False}
    for v in picked:
        key, iv, pt, aad, ct, tag = (h(v[k]) for k in ("KEY", "IV", "PT", "AAD", "CT", "TAG"))
        sid = rig.create_aead(AeadAlgo.GCM, key, len(tag), True)
        for field in gcm_ivs(key, iv):
            reply = rig.aead(sid, True, field, pt, aad, len(ct) + len(tag))
            assert reply.status == Status.OK and reply.output == ct + tag, (v, len(field))
    dec_vectors = [v for v in load(f"ciphers/AES/GCM/gcmDecrypt{bits}.rsp") if "KEY" in v]
    picked = dec_vectors[::max(1, len(dec_vectors) // 12)]
    assert any("FAIL" in v for v in picked)
    for v in picked:
        key, iv, aad, ct, tag = (h(v[k]) for k in ("KEY", "IV", "AAD", "CT", "TAG"))
        sid = rig.create_aead(AeadAlgo.GCM, key, len(tag), False)
        for field in gcm_ivs(key, iv):
            reply = rig.aead(sid, False, field, ct + tag, aad, len(ct))
            if "FAIL" in v:
                assert reply.status == Status.BADMSG
            else:
                assert reply.status == Status.OK and reply.output == h(v["PT"])


def ccm_iv(nonce: bytes) -> bytes:
    """CCM's 16-byte IV field: a reserved first byte (here Linux's L - 1), the nonce
    from iv[1], zeros to the end."""
    return bytes([14 - len(nonce)]) + nonce + bytes(15 - len(nonce))


def ccm_vectors(name: str):
    """(key, nonce, adata, payload or None, ct, tlen, passes) from a NIST CCM file, whose
    lengths come from file-level lines, section headers or the entries themselves."""
    lengths: dict[str, int] = {}
    key = nonce = None
    for v in load(f"ciphers/AES/CCM/{name}.rsp"):
        for item in v["SECTION"].split(","):
            if "=" in item:
                field, _, value = item.partition("=")
                lengths[field.strip().upper()] = int(value)
        for field in ("ALEN", "PLEN", "NLEN", "TLEN"):
            if field in v:
                lengths[field] = int(v[field])
        key = h(v["KEY"]) if "KEY" in v else key
        nonce = h(v["NONCE"]) if "NONCE" in v else nonce
        if "CT" in v:
            payload = h(v["PAYLOAD"])[:lengths["PLEN"]] if "PAYLOAD" in v else None
            yield (key, nonce, h(v["ADATA"])[:lengths["ALEN"]], payload, h(v["CT"]), lengths["TLEN"],
                   not v.get("RESULT", "Pass").startswith("Fail"))


@pytest.mark.parametrize("name", ["DVPT128", "DVPT256", "VNT128", "VTT256"])
def test_ccm(rig, name):
    """NIST CCM vectors, with the nonce at iv[1] of the 16-byte IV field. DVPT covers
    nonce and tag lengths in decryption (failures included); VNT every nonce length and
    VTT every tag length in encryption."""
    checked: dict[tuple[int, int], int] = {}
    for key, nonce, aad, payload, ct, tlen, passes in ccm_vectors(name):
        shape = (len(nonce), tlen)
        if checked.get(shape, 0) >= 2:
            continue
        checked[shape] = checked.get(shape, 0) + 1
        plen = len(ct) - tlen
        dec = rig.create_aead(AeadAlgo.CCM, key, tlen, False)
        reply = rig.aead(dec, False, ccm_iv(nonce), ct, aad, plen, iv_len=len(nonce))
        if not passes:
            assert reply.status == Status.BADMSG
            continue
        assert reply.status == Status.OK and reply.output == payload
        enc = rig.create_aead(AeadAlgo.CCM, key, tlen, True)
        reply = rig.aead(enc, True, ccm_iv(nonce), payload, aad, len(ct), iv_len=len(nonce))
        assert reply.status == Status.OK and reply.output == ct
    assert checked
    if name.startswith("VNT"):
        assert {n for n, _ in checked} == set(range(7, 14))
    if name.startswith("VTT"):
        assert {t for _, t in checked} == {4, 6, 8, 10, 12, 14, 16}


def test_chacha20_poly1305(rig):
    for v in load("ciphers/ChaCha20Poly1305/openssl.txt")[:6]:
        key, iv, aad, tag, pt, ct = (h(v[k]) for k in ("KEY", "IV", "AAD", "TAG", "PLAINTEXT", "CIPHERTEXT"))
        if len(tag) != 16 or len(iv) != 12:
            continue
        dec = rig.create_aead(AeadAlgo.CHACHA20_POLY1305, key, 16, False)
        reply = rig.aead(dec, False, iv, ct + tag, aad, len(ct))
        if "RESULT" in v:
            assert reply.status == Status.BADMSG
        else:
            assert reply.status == Status.OK and reply.output == pt
            enc = rig.create_aead(AeadAlgo.CHACHA20_POLY1305, key, 16, True)
            assert rig.aead(enc, True, iv, pt, aad, len(ct) + 16).output == ct + tag


# ---- AKCIPHER ------------------------------------------------------------------------------

def _rsa_der(key: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    priv = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return priv, pub


def _sigver15_vectors():
    """(n, e, sha name, msg, S, pass) from the CAVP SigVer15 file."""
    n = None
    out = []
    for v in load("asymmetric/RSA/FIPS_186-2/SigVer15_186-3.rsp"):
        n = int(v["N"], 16) if "N" in v else n
        if "MSG" in v:
            out.append((n, int(v["E"], 16), v["SHAALG"], h(v["MSG"]), h(v["S"]), v["RESULT"].startswith("P")))
    return out


_RSA_HASH = {"SHA1": (RsaHash.SHA1, hashlib.sha1), "SHA224": (RsaHash.SHA224, hashlib.sha224),
             "SHA256": (RsaHash.SHA256, hashlib.sha256), "SHA384": (RsaHash.SHA384, hashlib.sha384),
             "SHA512": (RsaHash.SHA512, hashlib.sha512)}


def test_rsa_pkcs1_verify_cavp(rig):
    """CAVP SigVer15: passing signatures verify (OK), failing ones are KEY_REJECTED."""
    by_hash: dict[str, int] = {}
    for n, e, sha, msg, sig, ok in _sigver15_vectors():
        if by_hash.get(sha, 0) >= 6:
            continue
        by_hash[sha] = by_hash.get(sha, 0) + 1
        pub = rsa.RSAPublicNumbers(e, n).public_key().public_bytes(serialization.Encoding.DER,
                                                                    serialization.PublicFormat.PKCS1)
        rsa_hash, hasher = _RSA_HASH[sha]
        sid = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PUBLIC, pub, u32(RsaPadding.PKCS1, rsa_hash))
        reply = rig.akcipher(sid, Op.AKCIPHER_VERIFY, sig, 0, digest=hasher(msg).digest())
        assert reply.status == (Status.OK if ok else Status.KEY_REJECTED)
        assert reply.used_len == 1
    assert len(by_hash) == 5


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize("rsa_hash,hasher", [
    (RsaHash.MD5, hashes.MD5), (RsaHash.SHA1, hashes.SHA1), (RsaHash.SHA224, hashes.SHA224),
    (RsaHash.SHA256, hashes.SHA256), (RsaHash.SHA384, hashes.SHA384), (RsaHash.SHA512, hashes.SHA512)])
def test_rsa_pkcs1_sign_is_the_deterministic_signature(rig, rsa_key, rsa_hash, hasher):
    """PKCS#1 v1.5 signing is deterministic: the device must give cryptography's bytes."""
    priv, pub = _rsa_der(rsa_key)
    digest = hashes.Hash(hasher())
    digest.update(b"abc")
    md = digest.finalize()
    sid = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PRIVATE, priv, u32(RsaPadding.PKCS1, rsa_hash))
    reply = rig.akcipher(sid, Op.AKCIPHER_SIGN, md, 256, extra_writable=5)
    assert reply.status == Status.OK and reply.used_len == 257
    assert reply.output == rsa_key.sign(md, padding.PKCS1v15(), utils.Prehashed(hasher()))
    verifier = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PUBLIC, pub, u32(RsaPadding.PKCS1, rsa_hash))
    assert rig.akcipher(verifier, Op.AKCIPHER_VERIFY, reply.output, 0, digest=md).status == Status.OK


def test_rsa_raw_and_pkcs1_encrypt_decrypt(rig, rsa_key):
    priv, pub = _rsa_der(rsa_key)
    k = 256
    # raw: c = m^e mod n, left-padded with zeros; decrypt inverts it
    m = b"\x00\x01" + os.urandom(100)
    enc = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PUBLIC, pub, u32(RsaPadding.RAW, 0))
    reply = rig.akcipher(enc, Op.AKCIPHER_ENCRYPT, m, k)
    nums = rsa_key.private_numbers()
    expected = pow(int.from_bytes(m, "big"), nums.public_numbers.e, nums.public_numbers.n).to_bytes(k, "big")
    assert reply.status == Status.OK and reply.output == expected and reply.used_len == k + 1
    dec = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PRIVATE, priv, u32(RsaPadding.RAW, 0))
    reply = rig.akcipher(dec, Op.AKCIPHER_DECRYPT, expected, k)
    assert reply.output == m.rjust(k, b"\x00")
    # PKCS#1 v1.5 type 2, both ways, against cryptography
    p_enc = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PUBLIC, pub, u32(RsaPadding.PKCS1, RsaHash.SHA1))
    reply = rig.akcipher(p_enc, Op.AKCIPHER_ENCRYPT, b"secret", k)
    assert rsa_key.decrypt(reply.output, padding.PKCS1v15()) == b"secret"
    p_dec = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PRIVATE, priv, u32(RsaPadding.PKCS1, RsaHash.SHA1))
    ct = rsa_key.public_key().encrypt(b"hello device", padding.PKCS1v15())
    reply = rig.akcipher(p_dec, Op.AKCIPHER_DECRYPT, ct, k)
    assert reply.status == Status.OK and reply.output[:reply.used_len - 1] == b"hello device"
    assert reply.used_len == len(b"hello device") + 1     # result length + 1, not dst_len + 1


def test_rsa_pkcs1_no_hash_sign_verify(rig, rsa_key):
    priv, pub = _rsa_der(rsa_key)
    data = os.urandom(36)
    signer = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PRIVATE, priv, u32(RsaPadding.PKCS1, RsaHash.NO_HASH))
    sig = rig.akcipher(signer, Op.AKCIPHER_SIGN, data, 256).output
    em = pow(int.from_bytes(sig, "big"), 65537, rsa_key.public_key().public_numbers().n).to_bytes(256, "big")
    assert em == b"\x00\x01" + b"\xff" * (256 - 3 - 36) + b"\x00" + data
    verifier = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PUBLIC, pub, u32(RsaPadding.PKCS1, RsaHash.NO_HASH))
    assert rig.akcipher(verifier, Op.AKCIPHER_VERIFY, sig, 0, digest=data).status == Status.OK
    assert rig.akcipher(verifier, Op.AKCIPHER_VERIFY, sig, 0, digest=os.urandom(36)).status == Status.KEY_REJECTED


_CURVES = {"P-192": (Curve.NIST_P192, ec.SECP192R1), "P-224": (Curve.NIST_P224, ec.SECP224R1),
           "P-256": (Curve.NIST_P256, ec.SECP256R1), "P-384": (Curve.NIST_P384, ec.SECP384R1),
           "P-521": (Curve.NIST_P521, ec.SECP521R1)}
_SHA = {"SHA-1": hashes.SHA1, "SHA-224": hashes.SHA224, "SHA-256": hashes.SHA256, "SHA-384": hashes.SHA384,
        "SHA-512": hashes.SHA512}


def test_ecdsa_verify_cavp(rig):
    """CAVP SigVer (FIPS 186-3) for P-192..P-521; a bad signature is KEY_REJECTED."""
    seen: dict[str, int] = {}
    for v in load("asymmetric/ECDSA/FIPS_186-3/SigVer.rsp"):
        curve_name, _, sha = v["SECTION"].partition(",")
        if curve_name not in _CURVES or sha not in _SHA or "MSG" not in v or seen.get(v["SECTION"], 0) >= 2:
            continue
        seen[v["SECTION"]] = seen.get(v["SECTION"], 0) + 1
        curve_id, curve = _CURVES[curve_name]
        point = ec.EllipticCurvePublicNumbers(int(v["QX"], 16), int(v["QY"], 16), curve()).public_key()
        raw_point = point.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        sid = rig.create_akcipher(AkcipherAlgo.ECDSA, KeyType.PUBLIC, raw_point, u32(curve_id))
        digest = hashes.Hash(_SHA[sha]())
        digest.update(h(v["MSG"]))
        sig = utils.encode_dss_signature(int(v["R"], 16), int(v["S"], 16))
        reply = rig.akcipher(sid, Op.AKCIPHER_VERIFY, sig, 0, digest=digest.finalize())
        assert reply.status == (Status.OK if v["RESULT"].startswith("P") else Status.KEY_REJECTED), v["SECTION"]
    assert {s.partition(",")[0] for s in seen} == set(_CURVES)


@pytest.mark.parametrize("name", list(_CURVES))
def test_ecdsa_sign_verifies_with_cryptography(rig, name):
    curve_id, curve = _CURVES[name]
    key = ec.generate_private_key(curve())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    sid = rig.create_akcipher(AkcipherAlgo.ECDSA, KeyType.PRIVATE, der, u32(curve_id))
    digest = hashlib.sha256(b"message").digest()
    reply = rig.akcipher(sid, Op.AKCIPHER_SIGN, digest, 160)
    assert reply.status == Status.OK and 8 < reply.used_len <= 161
    sig = reply.output[:reply.used_len - 1]
    key.public_key().verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def _der_int_sequence(values: list[int]) -> bytes:
    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
            (n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + length + body
    ints = b"".join(tlv(2, v.to_bytes(v.bit_length() // 8 + 1, "big")) for v in values)
    return tlv(0x30, ints)


def test_rsa_key_with_placeholder_primes_like_linux_testmgr(rig, rsa_key):
    """testmgr's RSA private keys carry only n, e, d (primes and CRT fields are 1): raw and
    PKCS#1 must still work, from the integers alone."""
    nums = rsa_key.private_numbers()
    n, e, d = nums.public_numbers.n, nums.public_numbers.e, nums.d
    odd = _der_int_sequence([0, n, e, d, 1, 1, 1, 1, 1])
    raw = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PRIVATE, odd, u32(RsaPadding.RAW, 0))
    c = os.urandom(200)
    assert rig.akcipher(raw, Op.AKCIPHER_DECRYPT, c, 256).output == pow(int.from_bytes(c, "big"), d, n).to_bytes(256, "big")
    pk = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PRIVATE, odd, u32(RsaPadding.PKCS1, RsaHash.SHA1))
    md = hashlib.sha1(b"x").digest()
    assert rig.akcipher(pk, Op.AKCIPHER_SIGN, md, 256).output == rsa_key.sign(md, padding.PKCS1v15(),
                                                                              utils.Prehashed(hashes.SHA1()))
    reply = rig.akcipher(pk, Op.AKCIPHER_DECRYPT, rsa_key.public_key().encrypt(b"abc", padding.PKCS1v15()), 256)
    assert reply.status == Status.OK and reply.output[:reply.used_len - 1] == b"abc"
    bad = rig.akcipher(pk, Op.AKCIPHER_DECRYPT, os.urandom(255), 256)
    assert bad.status == Status.ERR and bad.used_len == 1


def test_rsa_public_key_modulus_without_leading_zero_like_linux_testmgr(rig, rsa_key):
    """testmgr's rsa public-key vector writes a 256-byte modulus with its top bit set and
    no leading zero (negative in strict DER); Linux reads it unsigned, and so must we."""
    n = rsa_key.public_key().public_numbers().n
    body = b"\x02\x82\x01\x00" + n.to_bytes(256, "big") + b"\x02\x03\x01\x00\x01"
    key = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    sid = rig.create_akcipher(AkcipherAlgo.RSA, KeyType.PUBLIC, key, u32(RsaPadding.RAW, 0))
    reply = rig.akcipher(sid, Op.AKCIPHER_ENCRYPT, b"\x02", 256)
    assert reply.status == Status.OK and reply.output == pow(2, 65537, n).to_bytes(256, "big")
