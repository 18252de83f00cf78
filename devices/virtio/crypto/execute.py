"""Running one validated job: the only code the workers execute.

A Job is an immutable copy of everything a request needs (the session parameters, the
bytes copied out of guest memory, the validated lengths). It never refers to guest
memory, so a guest rewriting its buffers after the device parsed them changes nothing
(CVE-2020-14375).
"""
from __future__ import annotations

from typing import NamedTuple

from devices.virtio.crypto import aead, akcipher, chaining, cipher, digest
from devices.virtio.crypto.constants import Service, Status
from devices.virtio.crypto.sessions import Params
from devices.virtio.crypto.wire import RequestError, fail


class Job(NamedTuple):
    """Immutable, and a NamedTuple rather than a frozen dataclass: one is built per
    request, and a frozen dataclass's __init__ costs about 2 µs more."""

    service: Service
    op: int
    params: Params
    src: bytes = b""
    iv: bytes = b""
    aad: bytes = b""
    digest: bytes = b""        # AKCIPHER verify: the data the signature covers
    result_len: int = 0        # HASH/MAC: bytes of hash result
    regions: chaining.ChainRegions | None = None
    out_limit: int = 0         # AKCIPHER: dst_data_len, the most the result may take

    @property
    def size(self) -> int:
        """Bytes of input, for choosing between the inline path and the pool."""
        return len(self.src) + len(self.aad)


class Outcome(NamedTuple):
    status: Status
    output: bytes = b""        # written at offset 0 of the writable area


def _compute(job: Job) -> bytes:
    p = job.params
    if isinstance(p, cipher.CipherParams):
        return cipher.run(p, job.iv, job.src)
    if isinstance(p, chaining.ChainParams):
        assert job.regions is not None
        return chaining.run(p, job.iv, job.src, job.aad, job.regions)
    if isinstance(p, digest.HashParams):
        return digest.run_hash(p, job.src, job.result_len)
    if isinstance(p, digest.MacParams):
        return digest.run_mac(p, job.src, job.result_len)
    if isinstance(p, aead.AeadParams):
        return aead.run(p, job.iv, job.src, job.aad)
    result = akcipher.run(p, job.op, job.src, job.digest)
    if len(result) > job.out_limit:
        raise fail(f"akcipher result of {len(result)} bytes exceeds dst_data_len {job.out_limit}")
    return result


def run(job: Job) -> Outcome:
    """Never raises: a guest-caused failure is its status, anything else is ERR."""
    try:
        return Outcome(Status.OK, _compute(job))
    except RequestError as exc:
        return Outcome(exc.status)
    except Exception:  # noqa: BLE001 - a library surprise must not take the device down
        return Outcome(Status.ERR)
