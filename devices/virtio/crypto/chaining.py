"""ALGORITHM_CHAINING: a cipher and a hash or MAC over one source buffer.

Order CIPHER_THEN_HASH ciphers the cipher region, then authenticates the *output*
(encrypt-then-MAC); HASH_THEN_CIPHER authenticates the *input*, then ciphers (the
verify-then-decrypt direction). Bytes outside the cipher region are copied to the
destination unchanged. The AAD, when present, is authenticated ahead of the hash
region. The result is dst || hash_result, exactly the writable layout of the request.

Wire order of the variable fields: the spec puts them as iv, src, aad; QEMU reads
iv, aad, src. vmsim follows the spec (see `requests.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

from vmsim.devices.virtio.crypto import cipher, digest
from vmsim.devices.virtio.crypto.constants import ChainOrder, HashMode, Status
from vmsim.devices.virtio.crypto.wire import fail


@dataclass(frozen=True, slots=True)
class ChainParams:
    order: ChainOrder
    cipher: cipher.CipherParams
    auth: digest.HashParams | digest.MacParams
    aad_len: int


@dataclass(frozen=True, slots=True)
class ChainRegions:
    """Where the cipher and the hash apply inside src, and how long the hash result is."""

    cipher_start: int
    cipher_len: int
    hash_start: int
    hash_len: int
    result_len: int


def make_params(order: int, hash_mode: int, cipher_params: cipher.CipherParams,
                auth_algo: int, result_len: int, auth_key: bytes, aad_len: int,
                max_auth_key_len: int) -> ChainParams:
    if order not in (ChainOrder.HASH_THEN_CIPHER, ChainOrder.CIPHER_THEN_HASH):
        raise fail(f"chain order {order} unknown", Status.NOTSUPP)
    if hash_mode == HashMode.PLAIN:
        auth: digest.HashParams | digest.MacParams = digest.make_hash_params(auth_algo, result_len)
    elif hash_mode == HashMode.AUTH:
        auth = digest.make_mac_params(auth_algo, auth_key, result_len, max_auth_key_len)
    else:
        raise fail(f"chain hash mode {hash_mode} not supported", Status.NOTSUPP)
    return ChainParams(ChainOrder(order), cipher_params, auth, aad_len)


def check_request(params: ChainParams, iv_len: int, src_len: int, regions: ChainRegions) -> None:
    for name, start, length in (("cipher", regions.cipher_start, regions.cipher_len),
                                ("hash", regions.hash_start, regions.hash_len)):
        if start + length > src_len:
            raise fail(f"chain {name} region {start}+{length} runs past src ({src_len} bytes)")
    cipher.check_request(params.cipher, iv_len, regions.cipher_len)
    digest.check_result_len(params.auth, regions.result_len)


def run(params: ChainParams, iv: bytes, src: bytes, aad: bytes, regions: ChainRegions) -> bytes:
    c0, c1 = regions.cipher_start, regions.cipher_start + regions.cipher_len
    h0, h1 = regions.hash_start, regions.hash_start + regions.hash_len
    if params.order == ChainOrder.HASH_THEN_CIPHER:
        tag = digest.run_auth(params.auth, aad + src[h0:h1], regions.result_len)
    dst = src[:c0] + cipher.run(params.cipher, iv, src[c0:c1]) + src[c1:]
    if params.order == ChainOrder.CIPHER_THEN_HASH:
        tag = digest.run_auth(params.auth, aad + dst[h0:h1], regions.result_len)
    return dst + tag
