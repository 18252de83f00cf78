"""CIPHER service: block and stream ciphers on `cryptography`.

A session is immutable, so each request starts from the session key and the request's
IV; stream state (ARC4's keystream, a CTR counter) never carries over between requests.
DES is TripleDES with K1 = K2 = K3, which is single DES by definition. 3DES-CTR is not
offered by OpenSSL, so it is built here from 3DES-ECB with a 64-bit big-endian counter.

CBC, the mode Linux's virtio_crypto driver offers, keeps one long-lived context per key
and direction (CbcStream) instead of building one per request: building one cost about
5 us, far more than the AES work of a small request. QEMU likewise keeps one cipher per
session and sets only the IV per request.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Callable

from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmsim.devices.virtio.crypto.constants import CipherAlgo, CipherDirection, Status
from vmsim.devices.virtio.crypto.wire import fail


@dataclass(frozen=True, slots=True)
class CipherParams:
    """What a CIPHER session (or the cipher half of a chain) fixes."""

    algo: CipherAlgo
    key: bytes
    encrypt: bool
    # The key's `cryptography` algorithm object, built once per session rather than
    # per request.
    algorithm: object = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class _Spec:
    key_sizes: frozenset[int]
    block: int           # data must be a multiple of this (1 for stream modes)
    iv_len: int          # required IV length (0: IV ignored)
    algorithm: Callable[[bytes], object]           # key -> algorithm object
    run: Callable[[object, bytes, bool, bytes], bytes]  # (algorithm, iv, encrypt, data)


def des3_key(key: bytes) -> bytes:
    """Expand DES (K) and two-key 3DES (K1 K2) keys to the three-key form K1 K2 K3."""
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    return key


def _des3(key: bytes) -> decrepit.TripleDES:
    return decrepit.TripleDES(des3_key(key))


def _openssl(make_mode: Callable[[bytes], object] | None):
    def run(algorithm: object, iv: bytes, encrypt: bool, data: bytes) -> bytes:
        mode = make_mode(iv) if make_mode else None
        cipher = Cipher(algorithm, mode)  # type: ignore[arg-type]
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        out = ctx.update(data)
        tail = ctx.finalize()       # empty for every mode here: no 64 KiB copy to add it
        return out + tail if tail else out
    return run


class CbcStream:
    """One key's CBC context in one direction, reused across requests.

    CBC carries one block of state: the last ciphertext block. A context left running
    after a request holds the previous request's last block; it is moved to the new
    request's IV by feeding one block first, whose output is dropped:
    - decrypting, the state becomes the ciphertext block fed, so that block is the IV;
    - encrypting, it becomes E(X xor state); X = D(IV) xor state makes that the IV
      (D from a decrypting ECB context of the same key).
    Then the request's blocks run as in a fresh context. Whole blocks only (the device
    refuses other lengths first), so the context never holds a partial block."""

    def __init__(self, algorithm: object, encrypt: bool) -> None:
        block = algorithm.block_size // 8                   # type: ignore[attr-defined]
        cipher = Cipher(algorithm, modes.CBC(bytes(block)))  # type: ignore[arg-type]
        self._ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        self._block = block
        self._encrypt = encrypt
        self._state = bytes(block)          # encrypting: the last ciphertext block out
        self._lock = threading.Lock()       # the state must follow each request exactly
        if encrypt:
            self._ecb_decrypt = Cipher(algorithm, modes.ECB()).decryptor()  # type: ignore[arg-type]

    def run(self, iv: bytes, data: bytes) -> bytes:
        block = self._block
        if len(iv) != block or not data or len(data) % block:
            raise ValueError(f"CBC takes a {block}-byte IV and whole blocks")
        with self._lock:
            if not self._encrypt:
                self._ctx.update(iv)
                return self._ctx.update(data)
            state = int.from_bytes(self._state, "little")
            lead = int.from_bytes(self._ecb_decrypt.update(iv), "little") ^ state
            self._ctx.update(lead.to_bytes(block, "little"))
            out = self._ctx.update(data)
            self._state = out[-block:]
            return out


@functools.lru_cache(maxsize=64)
def cbc_stream(algorithm_type: type, key: bytes, encrypt: bool) -> CbcStream:
    """The CbcStream of a key and direction. Sessions' keys are few: a process keeps the
    64 most recently used (and so holds a destroyed session's key until it is evicted,
    as a per-session cipher would until the session's end)."""
    return CbcStream(algorithm_type(key), encrypt)


def _cbc(algorithm: object, iv: bytes, encrypt: bool, data: bytes) -> bytes:
    key = algorithm.key                                     # type: ignore[attr-defined]
    return cbc_stream(type(algorithm), key, encrypt).run(iv, data)


def _des3_ctr(algorithm: object, iv: bytes, encrypt: bool, data: bytes) -> bytes:
    """CTR over 3DES-ECB: keystream block i = E(counter + i mod 2^64)."""
    blocks = (len(data) + 7) // 8
    start = int.from_bytes(iv, "big")
    counters = b"".join(((start + i) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")
                        for i in range(blocks))
    ecb = Cipher(algorithm, modes.ECB()).encryptor()  # type: ignore[arg-type]
    stream = ecb.update(counters)[:len(data)]
    mixed = int.from_bytes(stream, "big") ^ int.from_bytes(data, "big")
    return mixed.to_bytes(len(data), "big")


_AES_KEYS = frozenset({16, 24, 32})
_DES3_KEYS = frozenset({16, 24})
_ARC4_KEYS = frozenset({5, 7, 8, 10, 16, 20, 24, 32})

SPECS: dict[CipherAlgo, _Spec] = {
    CipherAlgo.ARC4: _Spec(_ARC4_KEYS, 1, 0, decrepit.ARC4, _openssl(None)),
    CipherAlgo.AES_ECB: _Spec(_AES_KEYS, 16, 0, algorithms.AES, _openssl(lambda iv: modes.ECB())),
    CipherAlgo.AES_CBC: _Spec(_AES_KEYS, 16, 16, algorithms.AES, _cbc),
    CipherAlgo.AES_CTR: _Spec(_AES_KEYS, 1, 16, algorithms.AES, _openssl(modes.CTR)),
    CipherAlgo.AES_XTS: _Spec(frozenset({32, 64}), 1, 16, algorithms.AES, _openssl(modes.XTS)),
    CipherAlgo.DES_ECB: _Spec(frozenset({8}), 8, 0, _des3, _openssl(lambda iv: modes.ECB())),
    CipherAlgo.DES_CBC: _Spec(frozenset({8}), 8, 8, _des3, _cbc),
    CipherAlgo.DES3_ECB: _Spec(_DES3_KEYS, 8, 0, _des3, _openssl(lambda iv: modes.ECB())),
    CipherAlgo.DES3_CBC: _Spec(_DES3_KEYS, 8, 8, _des3, _cbc),
    CipherAlgo.DES3_CTR: _Spec(_DES3_KEYS, 1, 8, _des3, _des3_ctr),
}

MAX_KEY_LEN = max(max(spec.key_sizes) for spec in SPECS.values())


def make_params(algo: int, key: bytes, op: int) -> CipherParams:
    """Validate a cipher session's parameters (shared by sessions and stateless requests)."""
    if algo not in SPECS:
        raise fail(f"cipher algorithm {algo} not supported", Status.NOTSUPP)
    if op not in (CipherDirection.ENCRYPT, CipherDirection.DECRYPT):
        raise fail(f"cipher op {op} is neither encrypt nor decrypt", Status.NOTSUPP)
    spec = SPECS[CipherAlgo(algo)]
    if len(key) not in spec.key_sizes:
        raise fail(f"{CipherAlgo(algo).name} does not take a {len(key)}-byte key")
    if algo == CipherAlgo.AES_XTS and key[:len(key) // 2] == key[len(key) // 2:]:
        raise fail("AES-XTS key halves must differ")
    key = bytes(key)
    return CipherParams(CipherAlgo(algo), key, op == CipherDirection.ENCRYPT, spec.algorithm(key))


def check_request(params: CipherParams, iv_len: int, data_len: int) -> None:
    """Reject IV and data lengths the algorithm cannot take, before any work is queued."""
    spec = SPECS[params.algo]
    if spec.iv_len and iv_len != spec.iv_len:
        raise fail(f"{params.algo.name} needs a {spec.iv_len}-byte IV, got {iv_len}")
    if data_len % spec.block:
        raise fail(f"{params.algo.name} data length {data_len} is not a multiple of {spec.block}")
    if params.algo == CipherAlgo.AES_XTS and 0 < data_len < 16:
        raise fail("AES-XTS needs at least 16 bytes of data")


def run(params: CipherParams, iv: bytes, data: bytes) -> bytes:
    """Encrypt or decrypt `data` in the session's direction."""
    if not data:
        return b""
    spec = SPECS[params.algo]
    algorithm = params.algorithm if params.algorithm is not None else spec.algorithm(params.key)
    return spec.run(algorithm, iv[:spec.iv_len] if spec.iv_len else b"", params.encrypt, data)


def algorithm_mask() -> int:
    return sum(1 << int(algo) for algo in SPECS)
