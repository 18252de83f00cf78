"""AEAD service: AES-GCM, AES-CCM, ChaCha20-Poly1305.

Encrypt writes ciphertext || tag (src_len + tag_len bytes). Decrypt takes
ciphertext || tag as its source and writes the plaintext; a tag that does not verify
is VIRTIO_CRYPTO_BADMSG, the one case the spec reserves that status for.

The IV, as the spec's AEAD request describes it:
- GCM: iv_len is 12 (a 96-bit IV) or 16, and then the IV *is* J0, the pre-counter
  block of NIST SP 800-38D (not an IV to be hashed into one). The field is iv_len
  bytes long.
- CCM: iv_len is the nonce length, 7..13; the IV field is a full 16 bytes whose first
  byte is reserved (the spec leaves it for the flags), and the nonce starts at iv[1].
- ChaCha20-Poly1305: a 12-byte nonce, the field is iv_len bytes.
OpenSSL has no GCM entry point that takes J0, so that case is built from AES-CTR
(GCTR, with SP 800-38D's 32-bit counter wrap) and a GHASH obtained from OpenSSL's own
GCM (see `_ghash`).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, ChaCha20Poly1305

from vmsim.devices.virtio.crypto.constants import AeadAlgo, CipherDirection, Status
from vmsim.devices.virtio.crypto.wire import fail


@dataclass(frozen=True, slots=True)
class AeadParams:
    algo: AeadAlgo
    key: bytes
    tag_len: int
    encrypt: bool


_KEYS = {
    AeadAlgo.GCM: frozenset({16, 24, 32}),
    AeadAlgo.CCM: frozenset({16, 24, 32}),
    AeadAlgo.CHACHA20_POLY1305: frozenset({32}),
}
_TAGS = {
    AeadAlgo.GCM: frozenset(range(4, 17)),
    AeadAlgo.CCM: frozenset({4, 6, 8, 10, 12, 14, 16}),
    AeadAlgo.CHACHA20_POLY1305: frozenset({16}),
}
_NONCES = {
    AeadAlgo.GCM: frozenset({12, 16}),          # a 96-bit IV, or J0
    AeadAlgo.CCM: frozenset(range(7, 14)),
    AeadAlgo.CHACHA20_POLY1305: frozenset({12}),
}
CCM_IV_FIELD = 16      # CCM's IV field: a reserved byte, the nonce, room to 16 bytes
J0_LEN = 16


def make_params(algo: int, key: bytes, tag_len: int, op: int) -> AeadParams:
    if algo not in _KEYS:
        raise fail(f"AEAD algorithm {algo} not supported", Status.NOTSUPP)
    algo = AeadAlgo(algo)
    if op not in (CipherDirection.ENCRYPT, CipherDirection.DECRYPT):
        raise fail(f"AEAD op {op} is neither encrypt nor decrypt", Status.NOTSUPP)
    if len(key) not in _KEYS[algo]:
        raise fail(f"{algo.name} does not take a {len(key)}-byte key")
    if tag_len not in _TAGS[algo]:
        raise fail(f"{algo.name} does not take a {tag_len}-byte tag")
    return AeadParams(algo, bytes(key), tag_len, op == CipherDirection.ENCRYPT)


def output_len(params: AeadParams, src_len: int) -> int:
    """Bytes the request produces; fails if a decrypt source cannot even hold the tag."""
    if params.encrypt:
        return src_len + params.tag_len
    if src_len < params.tag_len:
        raise fail(f"AEAD decrypt source of {src_len} bytes is shorter than the tag")
    return src_len - params.tag_len


def iv_field_len(algo: int, iv_len: int) -> int:
    """Bytes the IV field takes in the request: CCM's is always 16, others iv_len."""
    return CCM_IV_FIELD if algo == AeadAlgo.CCM else iv_len


def check_request(params: AeadParams, iv_len: int) -> None:
    if iv_len not in _NONCES[params.algo]:
        raise fail(f"{params.algo.name} does not take a {iv_len}-byte IV")


def nonce(params: AeadParams, iv_field: bytes, iv_len: int) -> bytes:
    """The nonce the algorithm runs on, from the request's IV field (CCM: from iv[1])."""
    if params.algo == AeadAlgo.CCM:
        return iv_field[1:1 + iv_len]
    return iv_field


def _block(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def _inc32(block: bytes) -> bytes:
    return block[:12] + ((int.from_bytes(block[12:], "big") + 1) & 0xFFFF_FFFF).to_bytes(4, "big")


def _gctr(key: bytes, icb: bytes, data: bytes) -> bytes:
    """GCTR (SP 800-38D): counter mode in which only the low 32 bits of the counter
    block count, wrapping to 0. OpenSSL's CTR carries into all 128 bits, so the data is
    cut where the low word would wrap and the rest restarts at counter 0."""
    if not data:
        return b""
    before_wrap = ((1 << 32) - int.from_bytes(icb[12:], "big")) * 16
    out = Cipher(algorithms.AES(key), modes.CTR(icb)).encryptor().update(data[:before_wrap])
    if len(data) > before_wrap:
        restart = icb[:12] + bytes(4)
        out += Cipher(algorithms.AES(key), modes.CTR(restart)).encryptor().update(data[before_wrap:])
    return out


_ZERO_IV = bytes(12)
_ZERO_J0 = _ZERO_IV + b"\0\0\0\1"


def _ghash(key: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """GHASH_H(A, C) as GCM uses it for the tag, at OpenSSL's speed: GCM with the
    96-bit IV 0 has J0 = 0^96 || 1, and encrypting GCTR(inc32(J0), C) gives back C,
    so its tag is E_K(J0) xor GHASH_H(A, C)."""
    plain = _gctr(key, _inc32(_ZERO_J0), ciphertext)
    enc = Cipher(algorithms.AES(key), modes.GCM(_ZERO_IV)).encryptor()
    enc.authenticate_additional_data(aad)
    enc.update(plain)
    enc.finalize()
    return _xor(enc.tag, _block(key, _ZERO_J0))


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _gcm_j0(params: AeadParams, j0: bytes, src: bytes, aad: bytes) -> bytes:
    """GCM given J0 itself (SP 800-38D, algorithms 4 and 5 from step 3 on)."""
    key, tag_len = params.key, params.tag_len
    if params.encrypt:
        body = _gctr(key, _inc32(j0), src)
        return body + _xor(_block(key, j0), _ghash(key, aad, body))[:tag_len]
    body, tag = src[:len(src) - tag_len], src[len(src) - tag_len:]
    expected = _xor(_block(key, j0), _ghash(key, aad, body))[:tag_len]
    if not hmac.compare_digest(expected, tag):
        raise InvalidTag()
    return _gctr(key, _inc32(j0), body)


def _gcm(params: AeadParams, iv: bytes, src: bytes, aad: bytes) -> bytes:
    if len(iv) == J0_LEN:
        return _gcm_j0(params, iv, src, aad)
    if params.encrypt:
        enc = Cipher(algorithms.AES(params.key), modes.GCM(iv)).encryptor()
        enc.authenticate_additional_data(aad)
        body = enc.update(src) + enc.finalize()
        return body + enc.tag[:params.tag_len]
    body, tag = src[:len(src) - params.tag_len], src[len(src) - params.tag_len:]
    dec = Cipher(algorithms.AES(params.key), modes.GCM(iv, tag, min_tag_length=params.tag_len)).decryptor()
    dec.authenticate_additional_data(aad)
    return dec.update(body) + dec.finalize()


def run(params: AeadParams, iv: bytes, src: bytes, aad: bytes) -> bytes:
    """Seal or open; raises RequestError(BADMSG) when the tag does not verify."""
    try:
        if params.algo == AeadAlgo.GCM:
            return _gcm(params, iv, src, aad)
        if params.algo == AeadAlgo.CCM:
            box = AESCCM(params.key, params.tag_len)
        else:
            box = ChaCha20Poly1305(params.key)
        if params.encrypt:
            return box.encrypt(iv, src, aad)
        return box.decrypt(iv, src, aad)
    except InvalidTag:
        raise fail("AEAD tag did not verify", Status.BADMSG) from None


def algorithm_mask() -> int:
    return sum(1 << int(a) for a in _KEYS)
