"""AEAD service: AES-GCM, AES-CCM, ChaCha20-Poly1305.

Encrypt writes ciphertext || tag (src_len + tag_len bytes). Decrypt takes
ciphertext || tag as its source and writes the plaintext; a tag that does not verify
is VIRTIO_CRYPTO_BADMSG, the one case the spec reserves that status for. The IV field
carries the nonce as is (GCM: any 8..128-byte IV; CCM: a 7..13-byte nonce).
"""
from __future__ import annotations

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
    AeadAlgo.GCM: range(8, 129),
    AeadAlgo.CCM: range(7, 14),
    AeadAlgo.CHACHA20_POLY1305: range(12, 13),
}


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


def check_request(params: AeadParams, iv_len: int) -> None:
    if iv_len not in _NONCES[params.algo]:
        raise fail(f"{params.algo.name} does not take a {iv_len}-byte IV")


def _gcm(params: AeadParams, iv: bytes, src: bytes, aad: bytes) -> bytes:
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
