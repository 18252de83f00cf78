"""HASH and MAC services.

The result length is chosen per request (`hash_result_len`) and may truncate the
digest; SHAKE128/256 produce exactly that many bytes. The virtio MAC request has no IV
field, so GMAC-AES takes its 12-byte IV from the first 12 bytes of the message (the
data it authenticates is the rest): a documented device convention.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.primitives import cmac, hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmsim.devices.virtio.crypto.cipher import des3_key
from vmsim.devices.virtio.crypto.constants import HashAlgo, MacAlgo, Status
from vmsim.devices.virtio.crypto.wire import fail

MAX_XOF_LEN = 4096   # the longest SHAKE output a request may ask for
GMAC_IV_LEN = 12


@dataclass(frozen=True, slots=True)
class HashParams:
    algo: HashAlgo
    result_len: int


@dataclass(frozen=True, slots=True)
class MacParams:
    algo: MacAlgo
    key: bytes
    result_len: int


_HASHES: dict[HashAlgo, Callable[[], hashes.HashAlgorithm]] = {
    HashAlgo.MD5: hashes.MD5,
    HashAlgo.SHA1: hashes.SHA1,
    HashAlgo.SHA_224: hashes.SHA224,
    HashAlgo.SHA_256: hashes.SHA256,
    HashAlgo.SHA_384: hashes.SHA384,
    HashAlgo.SHA_512: hashes.SHA512,
    HashAlgo.SHA3_224: hashes.SHA3_224,
    HashAlgo.SHA3_256: hashes.SHA3_256,
    HashAlgo.SHA3_384: hashes.SHA3_384,
    HashAlgo.SHA3_512: hashes.SHA3_512,
}
_XOFS = {HashAlgo.SHAKE128: hashes.SHAKE128, HashAlgo.SHAKE256: hashes.SHAKE256}

_HMACS: dict[MacAlgo, Callable[[], hashes.HashAlgorithm]] = {
    MacAlgo.HMAC_MD5: hashes.MD5,
    MacAlgo.HMAC_SHA1: hashes.SHA1,
    MacAlgo.HMAC_SHA_224: hashes.SHA224,
    MacAlgo.HMAC_SHA_256: hashes.SHA256,
    MacAlgo.HMAC_SHA_384: hashes.SHA384,
    MacAlgo.HMAC_SHA_512: hashes.SHA512,
}
_AES_KEYS = frozenset({16, 24, 32})
_BLOCK_MACS = {  # algo: (key sizes, tag length)
    MacAlgo.CMAC_AES: (_AES_KEYS, 16),
    MacAlgo.CMAC_3DES: (frozenset({16, 24}), 8),
    MacAlgo.GMAC_AES: (_AES_KEYS, 16),
}


def hash_output_max(algo: HashAlgo) -> int:
    return MAX_XOF_LEN if algo in _XOFS else _HASHES[algo]().digest_size


def mac_output_max(algo: MacAlgo) -> int:
    if algo in _HMACS:
        return _HMACS[algo]().digest_size
    return _BLOCK_MACS[algo][1]


def _check_len(result_len: int, limit: int, name: str) -> None:
    if not 1 <= result_len <= limit:
        raise fail(f"{name} result length {result_len} outside 1..{limit}")


def make_hash_params(algo: int, result_len: int) -> HashParams:
    if algo not in _HASHES and algo not in _XOFS:
        raise fail(f"hash algorithm {algo} not supported", Status.NOTSUPP)
    algo = HashAlgo(algo)
    _check_len(result_len, hash_output_max(algo), algo.name)
    return HashParams(algo, result_len)


def make_mac_params(algo: int, key: bytes, result_len: int, max_key_len: int) -> MacParams:
    if algo not in _HMACS and algo not in _BLOCK_MACS:
        raise fail(f"MAC algorithm {algo} not supported", Status.NOTSUPP)
    algo = MacAlgo(algo)
    if len(key) > max_key_len:
        raise fail(f"auth key of {len(key)} bytes exceeds max_auth_key_len {max_key_len}")
    if algo in _BLOCK_MACS and len(key) not in _BLOCK_MACS[algo][0]:
        raise fail(f"{algo.name} does not take a {len(key)}-byte key")
    _check_len(result_len, mac_output_max(algo), algo.name)
    return MacParams(algo, bytes(key), result_len)


def check_result_len(params: HashParams | MacParams, result_len: int) -> None:
    limit = hash_output_max(params.algo) if isinstance(params, HashParams) else mac_output_max(params.algo)
    _check_len(result_len, limit, params.algo.name)


def run_hash(params: HashParams, data: bytes, result_len: int) -> bytes:
    if params.algo in _XOFS:
        h = hashes.Hash(_XOFS[params.algo](digest_size=result_len))
    else:
        h = hashes.Hash(_HASHES[params.algo]())
    h.update(data)
    return h.finalize()[:result_len]


def _gmac(key: bytes, message: bytes) -> bytes:
    if len(message) < GMAC_IV_LEN:
        raise fail("GMAC message shorter than its 12-byte IV prefix")
    enc = Cipher(algorithms.AES(key), modes.GCM(message[:GMAC_IV_LEN])).encryptor()
    enc.authenticate_additional_data(message[GMAC_IV_LEN:])
    enc.finalize()
    return enc.tag


def run_mac(params: MacParams, data: bytes, result_len: int) -> bytes:
    if params.algo in _HMACS:
        h = hmac.HMAC(params.key, _HMACS[params.algo]())
        h.update(data)
        tag = h.finalize()
    elif params.algo == MacAlgo.GMAC_AES:
        tag = _gmac(params.key, data)
    else:
        block = (algorithms.AES(params.key) if params.algo == MacAlgo.CMAC_AES
                 else decrepit.TripleDES(des3_key(params.key)))
        c = cmac.CMAC(block)
        c.update(data)
        tag = c.finalize()
    return tag[:result_len]


def run_auth(params: HashParams | MacParams, data: bytes, result_len: int) -> bytes:
    """Hash or MAC, whichever the session holds (used by algorithm chaining)."""
    if isinstance(params, HashParams):
        return run_hash(params, data, result_len)
    return run_mac(params, data, result_len)


def hash_mask() -> int:
    return sum(1 << int(a) for a in (*_HASHES, *_XOFS))


def mac_mask() -> int:
    """64-bit mask (mac_algo_l | mac_algo_h << 32): GMAC_AES is bit 41."""
    return sum(1 << int(a) for a in (*_HMACS, *_BLOCK_MACS))
