"""AKCIPHER service: RSA (raw and PKCS#1 v1.5) and ECDSA over the NIST curves.

Keys arrive as the spec encodes them: RSA as PKCS#1 DER (RSAPublicKey or RSAPrivateKey),
ECDSA private keys as RFC 5915 DER, ECDSA public keys as the bare SEC1 point. Parsed keys
are cached per process, keyed by the (immutable) session parameters, so a worker parses
a key once however many requests use it.

Raw RSA results are zero-padded on the left to the modulus length, as the spec's RAW
rule asks. PKCS#1 sign takes the digest the driver computed (the session's hash only
selects the DigestInfo); with NO_HASH the input is padded as is. ECDSA signatures are
DER (what Linux's ecdsa and `cryptography` both use); the digest length picks the hash.
A signature that does not verify is VIRTIO_CRYPTO_KEY_REJECTED.

RSA keys are held to OpenSSL's limits when they are loaded (at session creation, or
per request in stateless mode): a modulus of at most 16384 bits, and above 3072 bits a
public exponent of at most 64 bits; a key past them is NOTSUPP. What `cryptography`
requires of the numbers is ERR: an odd modulus, an odd public exponent with
3 <= e < n, and (private keys) 0 < d < n. `cost()` estimates an operation's work, so
that the device runs only cheap ones on its CPU thread.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from vmsim.devices.virtio.crypto.constants import AkcipherAlgo, Curve, KeyType, Op, RsaHash, RsaPadding, Status
from vmsim.devices.virtio.crypto.modexp import UNIT_SPEEDUP, has_openssl, modexp
from vmsim.devices.virtio.crypto.wire import fail


@dataclass(frozen=True, slots=True)
class AkcipherParams:
    algo: AkcipherAlgo
    key_type: KeyType
    key: bytes
    rsa_padding: RsaPadding = RsaPadding.RAW
    rsa_hash: RsaHash = RsaHash.NO_HASH
    curve: Curve = Curve.UNKNOWN


_RSA_HASHES = {
    RsaHash.MD5: hashes.MD5, RsaHash.SHA1: hashes.SHA1, RsaHash.SHA224: hashes.SHA224,
    RsaHash.SHA256: hashes.SHA256, RsaHash.SHA384: hashes.SHA384, RsaHash.SHA512: hashes.SHA512,
}
_CURVES = {
    Curve.NIST_P192: ec.SECP192R1, Curve.NIST_P224: ec.SECP224R1, Curve.NIST_P256: ec.SECP256R1,
    Curve.NIST_P384: ec.SECP384R1, Curve.NIST_P521: ec.SECP521R1,
}
_DIGEST_BY_LEN = {20: hashes.SHA1, 28: hashes.SHA224, 32: hashes.SHA256, 48: hashes.SHA384, 64: hashes.SHA512}
MAX_KEY_LEN = 16384
# OpenSSL's RSA limits (OPENSSL_RSA_MAX_MODULUS_BITS, _SMALL_MODULUS_BITS, _MAX_PUBEXP_BITS).
MAX_MODULUS_BITS = 16384
SMALL_MODULUS_BITS = 3072
MAX_PUBEXP_BITS = 64


# --- DER: just enough to read a SEQUENCE of INTEGERs (PKCS#1 keys) ---------------------

def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the element at `pos`."""
    if pos + 2 > len(data):
        raise fail("DER element truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise fail("DER length malformed")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise fail("DER value runs past the key")
    return tag, pos, pos + length


def der_integers(data: bytes) -> list[int]:
    """The leading INTEGERs of a DER SEQUENCE (anything after them is ignored).

    INTEGERs are read as unsigned, as Linux's RSA key parser does: testmgr's public key
    vector encodes its modulus without the leading zero byte strict DER would need."""
    tag, pos, end = _tlv(data, 0)
    if tag != 0x30:
        raise fail("key is not a DER SEQUENCE")
    values = []
    while pos < end:
        tag, start, stop = _tlv(data, pos)
        if tag != 0x02:
            break
        if stop == start:
            raise fail("DER INTEGER is empty")
        values.append(int.from_bytes(data[start:stop], "big"))
        pos = stop
    return values


# --- prepared keys ----------------------------------------------------------------------

@dataclass(frozen=True)
class _RsaKey:
    n: int
    e: int
    d: int | None
    crt: tuple[int, int, int, int, int] | None   # p, q, dp, dq, qinv
    private: rsa.RSAPrivateKey | None
    public: rsa.RSAPublicKey | None

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def public_op(self, m: int) -> int:
        return modexp(m, self.e, self.n)

    def private_op(self, c: int) -> int:
        if self.crt:
            p, q, dp, dq, qinv = self.crt
            m1, m2 = modexp(c, dp, p), modexp(c, dq, q)
            return m2 + q * ((qinv * (m1 - m2)) % p)
        assert self.d is not None
        return modexp(c, self.d, self.n)


@dataclass(frozen=True)
class _EcKey:
    private: ec.EllipticCurvePrivateKey | None
    public: ec.EllipticCurvePublicKey


def _load_rsa(params: AkcipherParams) -> _RsaKey:
    ints = der_integers(params.key)
    if params.key_type == KeyType.PUBLIC:
        if len(ints) < 2:
            raise fail("RSAPublicKey needs modulus and exponent")
        n, e, d, crt = ints[0], ints[1], None, None
    else:
        if len(ints) < 4:
            raise fail("RSAPrivateKey needs version, modulus, exponents")
        n, e, d = ints[1], ints[2], ints[3]
        crt = tuple(ints[4:9]) if len(ints) >= 9 and ints[4] * ints[5] == n else None
    check_rsa_numbers(n, e, d)
    if crt is not None:
        p, q, dp, dq, qinv = crt
        if not (dp < p and dq < q and qinv < p):     # else the Python CRT could cost more
            crt = None
    public = private = None
    try:
        pub_numbers = rsa.RSAPublicNumbers(e, n)
        public = pub_numbers.public_key()
        if crt:
            p, q, dp, dq, qinv = crt
            private = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qinv, pub_numbers).private_key(
                unsafe_skip_rsa_key_validation=True)
    except (ValueError, UnsupportedAlgorithm):
        pass  # raw operations still work from the integers
    return _RsaKey(n, e, d, crt, private, public)  # type: ignore[arg-type]


def check_rsa_numbers(n: int, e: int, d: int | None) -> None:
    """OpenSSL's size limits (NOTSUPP: a key the device does not take) and the
    consistency `cryptography` asks of RSA numbers (ERR: not a usable key)."""
    bits = n.bit_length()
    if bits > MAX_MODULUS_BITS:
        raise fail(f"RSA modulus of {bits} bits is over {MAX_MODULUS_BITS}", Status.NOTSUPP)
    if bits > SMALL_MODULUS_BITS and e.bit_length() > MAX_PUBEXP_BITS:
        raise fail(f"RSA public exponent of {e.bit_length()} bits with a modulus over "
                   f"{SMALL_MODULUS_BITS} bits (at most {MAX_PUBEXP_BITS})", Status.NOTSUPP)
    if bits < 64 or not n & 1:
        raise fail("RSA modulus is not odd or under 64 bits")
    if not 3 <= e < n or not e & 1:
        raise fail("RSA public exponent must be odd, at least 3 and below the modulus")
    if d is not None and not 0 < d < n:
        raise fail("RSA private exponent must lie between 0 and the modulus")


def _load_ec(params: AkcipherParams) -> _EcKey:
    curve = _CURVES[params.curve]()
    try:
        if params.key_type == KeyType.PUBLIC:
            return _EcKey(None, ec.EllipticCurvePublicKey.from_encoded_point(curve, params.key))
        # imported here: its module pulls in all of cryptography's key formats (SSH
        # included), which `vmsim run` would load on every start for EC keys only
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_der_private_key(params.key, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise fail("ECDSA key does not parse") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != curve.name:
        raise fail("ECDSA key is not on the session's curve")
    return _EcKey(private, private.public_key())


_CACHE: OrderedDict[AkcipherParams, _RsaKey | _EcKey] = OrderedDict()
_CACHE_SIZE = 64


def prepare(params: AkcipherParams) -> _RsaKey | _EcKey:
    """Parse the session key once per process (LRU), failing with ERR if it is bad."""
    key = _CACHE.get(params)
    if key is None:
        key = _load_rsa(params) if params.algo == AkcipherAlgo.RSA else _load_ec(params)
        _CACHE[params] = key
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(params)
    return key


def make_params(algo: int, key_type: int, key: bytes, para: bytes) -> AkcipherParams:
    """Validate an AKCIPHER session; `para` is the algorithm-specific flf (RSA or ECDSA)."""
    if key_type not in (KeyType.PUBLIC, KeyType.PRIVATE):
        raise fail(f"akcipher key type {key_type} unknown")
    if not key or len(key) > MAX_KEY_LEN:
        raise fail(f"akcipher key length {len(key)} outside 1..{MAX_KEY_LEN}")
    if algo == AkcipherAlgo.RSA:
        pad_algo, hash_algo = int.from_bytes(para[0:4], "little"), int.from_bytes(para[4:8], "little")
        if pad_algo not in (RsaPadding.RAW, RsaPadding.PKCS1):
            raise fail(f"RSA padding {pad_algo} not supported", Status.NOTSUPP)
        if pad_algo == RsaPadding.RAW:
            hash_algo = RsaHash.NO_HASH  # the spec: ignored with raw padding
        elif hash_algo != RsaHash.NO_HASH and hash_algo not in _RSA_HASHES:
            raise fail(f"RSA hash {hash_algo} not supported", Status.NOTSUPP)
        params = AkcipherParams(AkcipherAlgo.RSA, KeyType(key_type), bytes(key), RsaPadding(pad_algo),
                                RsaHash(hash_algo))
    elif algo == AkcipherAlgo.ECDSA:
        curve = int.from_bytes(para[0:4], "little")
        if curve not in _CURVES:
            raise fail(f"ECDSA curve {curve} not supported", Status.NOTSUPP)
        params = AkcipherParams(AkcipherAlgo.ECDSA, KeyType(key_type), bytes(key), curve=Curve(curve))
    else:
        raise fail(f"akcipher algorithm {algo} not supported", Status.NOTSUPP)
    prepare(params)
    return params


# --- operations -------------------------------------------------------------------------

# DigestInfo DER prefixes of EMSA-PKCS1-v1_5 (RFC 8017, section 9.2, note 1).
_DIGEST_INFO = {
    RsaHash.MD5: bytes.fromhex("3020300c06082a864886f70d020505000410"),
    RsaHash.SHA1: bytes.fromhex("3021300906052b0e03021a05000414"),
    RsaHash.SHA224: bytes.fromhex("302d300d06096086480165030402040500041c"),
    RsaHash.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    RsaHash.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    RsaHash.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}


def _emsa_pkcs1(params: AkcipherParams, digest: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5 block type 1: 00 01 FF.. 00 DigestInfo digest (no DigestInfo for NO_HASH)."""
    hash_cls = _RSA_HASHES.get(params.rsa_hash)
    if hash_cls is not None and len(digest) != hash_cls().digest_size:
        raise fail(f"digest of {len(digest)} bytes does not match {params.rsa_hash.name}")
    t = _DIGEST_INFO.get(params.rsa_hash, b"") + digest
    if len(t) > size - 11:
        raise fail("PKCS#1 input too long for the modulus")
    return b"\x00\x01" + b"\xff" * (size - 3 - len(t)) + b"\x00" + t


def _eme_pkcs1_decode(em: bytes) -> bytes:
    """EME-PKCS1-v1_5 decoding (block type 2), for keys `cryptography` cannot load."""
    sep = em.find(b"\x00", 2)
    if em[:2] != b"\x00\x02" or sep < 10:
        raise fail("PKCS#1 decryption error")
    return em[sep + 1:]


def _rsa_int(data: bytes, key: _RsaKey) -> int:
    value = int.from_bytes(data, "big")
    if len(data) > key.size or value >= key.n:
        raise fail("RSA input is not smaller than the modulus")
    return value


def _need_private(key: _RsaKey | _EcKey) -> None:
    if (key.d if isinstance(key, _RsaKey) else key.private) is None:
        raise fail("operation needs a private key")


def _rsa(params: AkcipherParams, key: _RsaKey, op: int, src: bytes, digest: bytes) -> bytes:
    """Raw RSA is integer arithmetic; PKCS#1 uses `cryptography` where it has a key object
    (fast CRT private operations) and the same arithmetic otherwise (odd test keys).
    Verification compares the recomputed encoding, as RFC 8017 recommends."""
    k = key.size
    raw = params.rsa_padding == RsaPadding.RAW
    if raw and op not in (Op.AKCIPHER_ENCRYPT, Op.AKCIPHER_DECRYPT):
        raise fail("raw RSA sessions cannot sign or verify", Status.NOTSUPP)
    if op in (Op.AKCIPHER_DECRYPT, Op.AKCIPHER_SIGN):
        _need_private(key)
    if op == Op.AKCIPHER_ENCRYPT:
        if raw:
            return key.public_op(_rsa_int(src, key)).to_bytes(k, "big")
        if key.public is None or len(src) > k - 11:
            raise fail("PKCS#1 message too long for the modulus")
        return key.public.encrypt(src, padding.PKCS1v15())
    if op == Op.AKCIPHER_DECRYPT:
        if raw:
            return key.private_op(_rsa_int(src, key)).to_bytes(k, "big")
        if key.private is not None:
            try:
                return key.private.decrypt(src, padding.PKCS1v15())
            except ValueError:
                raise fail("PKCS#1 decryption error") from None
        return _eme_pkcs1_decode(key.private_op(_rsa_int(src, key)).to_bytes(k, "big"))
    if op == Op.AKCIPHER_SIGN:
        em = _emsa_pkcs1(params, src, k)
        hash_cls = _RSA_HASHES.get(params.rsa_hash)
        if key.private is not None and hash_cls is not None:
            return key.private.sign(src, padding.PKCS1v15(), utils.Prehashed(hash_cls()))
        return key.private_op(int.from_bytes(em, "big")).to_bytes(k, "big")
    # VERIFY: src is the signature, digest the data it signs
    expected = _emsa_pkcs1(params, digest, k)
    if len(src) != k or key.public_op(_rsa_int(src, key)).to_bytes(k, "big") != expected:
        raise fail("RSA signature does not verify", Status.KEY_REJECTED)
    return b""


def _ecdsa(key: _EcKey, op: int, src: bytes, digest: bytes) -> bytes:
    if op not in (Op.AKCIPHER_SIGN, Op.AKCIPHER_VERIFY):
        raise fail("ECDSA only signs and verifies", Status.NOTSUPP)
    data = src if op == Op.AKCIPHER_SIGN else digest
    if len(data) not in _DIGEST_BY_LEN:
        raise fail(f"ECDSA digest of {len(data)} bytes matches no supported hash")
    scheme = ec.ECDSA(utils.Prehashed(_DIGEST_BY_LEN[len(data)]()))
    if op == Op.AKCIPHER_SIGN:
        _need_private(key)
        return key.private.sign(data, scheme)  # type: ignore[union-attr]
    try:
        key.public.verify(src, digest, scheme)
    except InvalidSignature:
        raise fail("ECDSA signature does not verify", Status.KEY_REJECTED) from None
    return b""


def run(params: AkcipherParams, op: int, src: bytes, digest: bytes) -> bytes:
    """One AKCIPHER operation. For VERIFY, `src` is the signature and `digest` the data."""
    key = prepare(params)
    if isinstance(key, _RsaKey):
        return _rsa(params, key, op, src, digest)
    return _ecdsa(key, op, src, digest)


# One work unit: a product of two 64-bit limbs. A modular exponentiation with a k-bit
# exponent and an L-limb modulus costs about k * L^2 of them (Python's pow about 10-30
# ns a unit on a 2020s x86 core; OpenSSL's, which `modexp` uses where it can, about a
# tenth of that, so cost() divides by modexp.UNIT_SPEEDUP).
_EC_WORK = 1 << 16       # an ECDSA operation on P-521, the largest curve, is ~1-3 ms


def cost(params: AkcipherParams, op: int) -> int:
    """An estimate of one operation's work in units (see above), from the session's
    key: the public exponent's bits for a public operation; for a private one, the
    CRT halves when the key has usable CRT values, else the whole private exponent."""
    if params.algo != AkcipherAlgo.RSA:
        return _EC_WORK
    key = prepare(params)
    assert isinstance(key, _RsaKey)
    limbs = (key.n.bit_length() + 63) // 64
    if op in (Op.AKCIPHER_ENCRYPT, Op.AKCIPHER_VERIFY) or key.d is None:
        units = key.e.bit_length() * limbs * limbs
    elif key.crt is not None:
        units = key.n.bit_length() * limbs * limbs // 4
    else:
        units = key.d.bit_length() * limbs * limbs
    return units // UNIT_SPEEDUP if has_openssl() else units


def algorithm_mask() -> int:
    return (1 << AkcipherAlgo.RSA) | (1 << AkcipherAlgo.ECDSA)
