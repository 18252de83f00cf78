"""Running one validated job: the only code the workers execute.

A Job is an immutable copy of everything a request needs (the session parameters, the
bytes copied out of guest memory, the validated lengths). It never refers to guest
memory, so a guest rewriting its buffers after the device parsed them changes nothing
(CVE-2020-14375).
"""
from __future__ import annotations

import traceback
from typing import NamedTuple

from vmsim.devices.virtio.crypto import aead, akcipher, chaining, cipher, digest
from vmsim.devices.virtio.crypto.constants import (AkcipherAlgo, CipherAlgo, CipherDirection, Curve,
                                             KeyType, Op, RsaHash, RsaPadding, Service, Status)
from vmsim.devices.virtio.crypto.sessions import Params
from vmsim.devices.virtio.crypto.wire import RequestError, fail


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

    @property
    def memory(self) -> int:
        """Bytes this job holds until it is answered: its copied inputs, and a bound on
        its output (src_len for ciphers, plus a hash result, a tag, or dst_data_len)."""
        return (2 * len(self.src) + len(self.iv) + len(self.aad) + len(self.digest)
                + self.result_len + self.out_limit + 16)


class Outcome(NamedTuple):
    status: Status
    output: bytes = b""        # written at offset 0 of the writable area
    internal: str = ""         # with ERR from a bug of vmsim's: the traceback, for the log


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


def work(job: Job) -> int:
    """The estimated work of a public-key job (akcipher.cost), to decide whether it may
    run on the CPU thread; 0 for other jobs, whose cost their size bounds."""
    if job.service != Service.AKCIPHER:
        return 0
    try:
        return akcipher.cost(job.params, job.op)  # type: ignore[arg-type]
    except RequestError:
        return 0                                   # a key that does not load fails at once


def run(job: Job) -> Outcome:
    """Never raises: a guest-caused failure is its status, anything else is ERR."""
    try:
        return Outcome(Status.OK, _compute(job))
    except RequestError as exc:
        return Outcome(exc.status)
    except Exception:  # noqa: BLE001 - a library surprise must not take the device down
        # The guest gets ERR; the traceback travels with it (this may run in a worker
        # process) so that the device logs it where the user asked (-D).
        return Outcome(Status.ERR, internal=traceback.format_exc())


def warm_up() -> list[Status]:
    """Run one job of each pooled kind on throwaway keys, before a worker says READY.

    The first RSA or ECDSA operation in a process costs about a millisecond more than
    later ones (OpenSSL fetches its algorithm implementations lazily, Python specialises
    the code); a worker pays that here instead of on a guest's first request."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    der = serialization.Encoding.DER
    pkcs1 = serialization.PrivateFormat.TraditionalOpenSSL
    none = serialization.NoEncryption()
    rsa_key = rsa.generate_private_key(65537, 1024).private_bytes(der, pkcs1, none)
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(der, pkcs1, none)
    digest = bytes(32)
    jobs = []
    for padding, hash_algo, op, src in ((RsaPadding.RAW, RsaHash.NO_HASH, Op.AKCIPHER_DECRYPT, bytes(128)),
                                        (RsaPadding.PKCS1, RsaHash.SHA256, Op.AKCIPHER_SIGN, digest)):
        para = int(padding).to_bytes(4, "little") + int(hash_algo).to_bytes(4, "little")
        params = akcipher.make_params(AkcipherAlgo.RSA, KeyType.PRIVATE, rsa_key, para)
        jobs.append(Job(Service.AKCIPHER, op, params, src, out_limit=128))
    ec_params = akcipher.make_params(AkcipherAlgo.ECDSA, KeyType.PRIVATE, ec_key,
                                     int(Curve.NIST_P256).to_bytes(4, "little"))
    jobs.append(Job(Service.AKCIPHER, Op.AKCIPHER_SIGN, ec_params, digest, out_limit=128))
    aes = cipher.make_params(CipherAlgo.AES_CBC, bytes(16), CipherDirection.ENCRYPT)
    jobs.append(Job(Service.CIPHER, Op.CIPHER_ENCRYPT, aes, bytes(4096), bytes(16)))
    return [run(job).status for job in jobs]

