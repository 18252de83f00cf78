"""Data-queue requests: parse a chain once, validate it, and build an immutable Job.

Layout: a 24-byte header (opcode, algo, session_id, flag, padding), the opcode's
fixed-length fields (flf; padded to 48 bytes unless REVISION_1 is negotiated), the
device-readable variable fields (vlf), then the writable part: the outputs from offset 0
and the status byte as the *last* writable byte. Only header lengths are trusted, and
only after they are checked against max_size and against the bytes the descriptors
actually hold; the driver may hand more writable bytes than dst_data_len (Linux does).

Variable-field order, session mode (spec): cipher iv, src; chain iv, src, aad (QEMU
reads iv, aad, src: vmsim follows the spec); AEAD iv, src, aad; AKCIPHER src, and for
VERIFY src (signature) then dst_data_len readable bytes (the digest) - the Linux layout.
Stateless mode puts the keys first: cipher key, iv, src; chain cipher key, auth key, iv,
aad, src; MAC key, src; AEAD key, iv, src, aad; AKCIPHER key, src.
"""
from __future__ import annotations

import struct
from typing import Callable

from vmsim.devices.virtio.crypto import aead, akcipher, chaining, cipher, digest
from vmsim.devices.virtio.crypto.config import Limits
from vmsim.devices.virtio.crypto.constants import (
    DATA_FLF_LEGACY, DATA_HEADER_SIZE, FLAG_SESSION_MODE, STATELESS_FEATURE, CryptoFeatures, Op,
    Service, Status, SymOp)
from vmsim.devices.virtio.crypto.execute import Job
from vmsim.devices.virtio.crypto.sessions import Params, SessionTable
from vmsim.devices.virtio.crypto.wire import ReadableChain, RequestError, fail, take, take_fields, u32s

DATA_OPS = {Op.CIPHER_ENCRYPT, Op.CIPHER_DECRYPT, Op.HASH, Op.MAC, Op.AEAD_ENCRYPT, Op.AEAD_DECRYPT,
            Op.AKCIPHER_ENCRYPT, Op.AKCIPHER_DECRYPT, Op.AKCIPHER_SIGN, Op.AKCIPHER_VERIFY}

# Per request, plain ints and dicts stand in for enum constructors and IntFlag operators,
# which cost about a microsecond each.
_SERVICE_OF_OP = {int(op): Service(op >> 8) for op in DATA_OPS}
_REVISION_1 = int(CryptoFeatures.REVISION_1)
_HEADER = struct.Struct("<IIQI")  # opcode, algo, session_id, flag (4 bytes of padding follow)
# Linux's layout (the legacy 48-byte flf) fits in one copy with the header.
_PREFETCH = DATA_HEADER_SIZE + DATA_FLF_LEGACY
_ENCRYPT_OPS = frozenset({int(Op.CIPHER_ENCRYPT), int(Op.AEAD_ENCRYPT)})
# The sym data flf: the op_type-specific fields, then op_type at this offset.
_SYM_OP_TYPE_OFFSET = 40

# Natural flf sizes (REVISION_1): (session mode, stateless mode).
FLF_SIZES = {
    Service.CIPHER: (48, 76),
    Service.HASH: (8, 16),
    Service.MAC: (8, 16),
    Service.AEAD: (24, 32),
    Service.AKCIPHER: (8, 28),
}


class Parse:
    """Everything a service parser needs about one request; read-only by convention (a
    plain slotted class: a frozen dataclass costs a microsecond more per request)."""

    __slots__ = ("chain", "flf", "limits", "op", "params", "room", "vlf_offset")

    def __init__(self, chain: ReadableChain, op: int, flf: bytes, vlf_offset: int, room: int,
                 limits: Limits, params: Params | None) -> None:
        self.chain = chain
        self.op = op
        self.flf = flf
        self.vlf_offset = vlf_offset
        self.room = room              # writable bytes before the status byte
        self.limits = limits
        self.params = params          # the session's, or None in stateless mode

    def fields(self, sizes: list[int]) -> list[bytes]:
        """Copy the variable fields once, after bounding their sum by max_size."""
        total = sum(sizes)
        if total > self.limits.max_size:
            raise fail(f"request data of {total} bytes exceeds max_size {self.limits.max_size}")
        return take_fields(self.chain, self.vlf_offset, sizes, "variable fields")

    def output(self, size: int, what: str) -> None:
        if size > self.room:
            raise fail(f"{what} of {size} bytes does not fit the {self.room} writable bytes")
        if size > self.limits.max_size:
            raise fail(f"{what} of {size} bytes exceeds max_size")


def _cipher_key(p: Parse, key_len: int) -> None:
    if key_len > p.limits.max_cipher_key_len:
        raise fail(f"cipher key of {key_len} bytes exceeds max_cipher_key_len")


def _auth_key(p: Parse, key_len: int) -> None:
    if key_len > p.limits.max_auth_key_len:
        raise fail(f"auth key of {key_len} bytes exceeds max_auth_key_len")


def _direction(p: Parse, encrypt: bool) -> None:
    """The opcode's direction must be the one the parameters were made for. In session
    mode a mismatch means the session named cannot serve this request: INVSESS (the
    spec's "invalid session ID when executing crypto operations"; NOTSUPP would tell
    the driver the device cannot do the operation at all). In stateless mode there is
    no session to blame: sess_para.op contradicting the opcode asks for an operation
    that does not exist, NOTSUPP."""
    if (p.op in _ENCRYPT_OPS) != encrypt:
        opcode = Op(p.op).name
        if p.params is None:
            raise fail(f"stateless {opcode} with sess_para.op for the other direction", Status.NOTSUPP)
        raise fail(f"{opcode} on a session made for the other direction", Status.INVSESS)


def _same_length(src_len: int, dst_len: int) -> None:
    if src_len != dst_len:  # CVE-2023-3180
        raise fail(f"symmetric request with src_data_len {src_len} != dst_data_len {dst_len}")


def _plain_cipher(p: Parse, params: cipher.CipherParams, iv: bytes, src: bytes, dst_len: int) -> Job:
    _direction(p, params.encrypt)
    _same_length(len(src), dst_len)
    p.output(dst_len, "dst_data")
    cipher.check_request(params, len(iv), len(src))
    return Job(Service.CIPHER, p.op, params, src=src, iv=iv)


def _chain_job(p: Parse, params: chaining.ChainParams, v: tuple[int, ...], iv: bytes, src: bytes,
               aad: bytes) -> Job:
    _iv_len, src_len, dst_len, c_start, c_len, h_start, h_len, _aad_len, result_len = v
    _direction(p, params.cipher.encrypt)
    _same_length(src_len, dst_len)
    regions = chaining.ChainRegions(c_start, c_len, h_start, h_len, result_len)
    chaining.check_request(params, len(iv), src_len, regions)
    p.output(dst_len + result_len, "dst_data + hash_result")
    return Job(Service.CIPHER, p.op, params, src=src, iv=iv, aad=aad, regions=regions)


def _cipher_session(p: Parse) -> Job:
    """op_type says which flf variant follows; it must name the session's own kind."""
    params = p.params
    op_type = u32s(p.flf, _SYM_OP_TYPE_OFFSET, 1)[0]
    if op_type not in (SymOp.CIPHER, SymOp.ALGORITHM_CHAINING):
        raise fail(f"sym op_type {op_type} not supported", Status.NOTSUPP)
    if (op_type == SymOp.CIPHER) != isinstance(params, cipher.CipherParams):
        raise fail(f"sym op_type {SymOp(op_type).name} contradicts the session", Status.INVSESS)
    if isinstance(params, cipher.CipherParams):
        iv_len, src_len, dst_len = u32s(p.flf, 0, 3)
        iv, src = p.fields([iv_len, src_len])
        return _plain_cipher(p, params, iv, src, dst_len)
    assert isinstance(params, chaining.ChainParams)
    v = u32s(p.flf, 0, 9)
    iv, src, aad = p.fields([v[0], v[1], v[7]])
    return _chain_job(p, params, v, iv, src, aad)


def _cipher_stateless(p: Parse) -> Job:
    op_type = u32s(p.flf, 72, 1)[0]
    if op_type == SymOp.CIPHER:
        algo, key_len, op, iv_len, src_len, dst_len = u32s(p.flf, 0, 6)
        _cipher_key(p, key_len)
        key, iv, src = p.fields([key_len, iv_len, src_len])
        return _plain_cipher(p, cipher.make_params(algo, key, op), iv, src, dst_len)
    if op_type == SymOp.ALGORITHM_CHAINING:
        (order, _aad, c_algo, c_key_len, c_op, h_algo, h_key_len, h_mode, *rest) = u32s(p.flf, 0, 17)
        v = tuple(rest)
        _cipher_key(p, c_key_len)
        _auth_key(p, h_key_len)
        c_key, h_key, iv, aad, src = p.fields([c_key_len, h_key_len, v[0], v[7], v[1]])
        params = chaining.make_params(order, h_mode, cipher.make_params(c_algo, c_key, c_op), h_algo,
                                      v[8], h_key, v[7], p.limits.max_auth_key_len)
        return _chain_job(p, params, v, iv, src, aad)
    raise fail(f"stateless sym op_type {op_type} not supported", Status.NOTSUPP)


def _digest_job(p: Parse, service: Service, params: digest.HashParams | digest.MacParams,
                src: bytes, result_len: int) -> Job:
    digest.check_result_len(params, result_len)
    p.output(result_len, "hash_result")
    return Job(service, p.op, params, src=src, result_len=result_len)


def _hash(p: Parse) -> Job:
    if p.params is not None:
        src_len, result_len = u32s(p.flf, 0, 2)
        params = p.params
    else:
        algo, src_len, result_len = u32s(p.flf, 0, 3)
        params = digest.make_hash_params(algo, result_len)
    (src,) = p.fields([src_len])
    return _digest_job(p, Service.HASH, params, src, result_len)  # type: ignore[arg-type]


def _mac(p: Parse) -> Job:
    if p.params is not None:
        src_len, result_len = u32s(p.flf, 0, 2)
        (src,) = p.fields([src_len])
        return _digest_job(p, Service.MAC, p.params, src, result_len)  # type: ignore[arg-type]
    algo, key_len, src_len, result_len = u32s(p.flf, 0, 4)
    _auth_key(p, key_len)
    key, src = p.fields([key_len, src_len])
    params = digest.make_mac_params(algo, key, result_len, p.limits.max_auth_key_len)
    return _digest_job(p, Service.MAC, params, src, result_len)


def _aead(p: Parse) -> Job:
    """The IV field's length and meaning depend on the algorithm (see aead.py). In
    session mode the request repeats tag_len: it must be the session's (INVSESS
    otherwise, like any other request that contradicts its session)."""
    if p.params is not None:
        iv_len, aad_len, src_len, dst_len, tag_len = u32s(p.flf, 0, 5)
        params = p.params
        assert isinstance(params, aead.AeadParams)
        if tag_len != params.tag_len:
            raise fail(f"AEAD tag_len {tag_len} differs from the session's {params.tag_len}", Status.INVSESS)
        _direction(p, params.encrypt)
        aead.check_request(params, iv_len)
        iv, src, aad = p.fields([aead.iv_field_len(params.algo, iv_len), src_len, aad_len])
    else:
        algo, key_len, op, iv_len, tag_len, aad_len, src_len, dst_len = u32s(p.flf, 0, 8)
        _cipher_key(p, key_len)
        key, iv, src, aad = p.fields([key_len, aead.iv_field_len(algo, iv_len), src_len, aad_len])
        params = aead.make_params(algo, key, tag_len, op)
        _direction(p, params.encrypt)
        aead.check_request(params, iv_len)
    iv = aead.nonce(params, iv, iv_len)
    needed = aead.output_len(params, src_len)
    if dst_len < needed:
        raise fail(f"AEAD dst_data_len {dst_len} is under the {needed} bytes produced")
    p.output(needed, "AEAD output")
    return Job(Service.AEAD, p.op, params, src=src, iv=iv, aad=aad)


def _akcipher(p: Parse) -> Job:
    verify = p.op == Op.AKCIPHER_VERIFY
    if p.params is not None:
        src_len, dst_len = u32s(p.flf, 0, 2)
        key_len = 0
    else:
        algo, key_type, key_len, *_, src_len, dst_len = u32s(p.flf, 0, 7)
        if key_len > akcipher.MAX_KEY_LEN:
            raise fail(f"akcipher key of {key_len} bytes is too long")
    if not verify:
        p.output(dst_len, "dst_data")
    key, src, data = p.fields([key_len, src_len, dst_len if verify else 0])
    params = p.params if p.params is not None else akcipher.make_params(algo, key_type, key, p.flf[12:20])
    if verify:
        return Job(Service.AKCIPHER, p.op, params, src=src, digest=data)
    return Job(Service.AKCIPHER, p.op, params, src=src, out_limit=dst_len)


_PARSERS: dict[Service, tuple[Callable[[Parse], Job], Callable[[Parse], Job]]] = {
    Service.CIPHER: (_cipher_session, _cipher_stateless),
    Service.HASH: (_hash, _hash),
    Service.MAC: (_mac, _mac),
    Service.AEAD: (_aead, _aead),
    Service.AKCIPHER: (_akcipher, _akcipher),
}


def parse_data_request(chain: ReadableChain, writable_len: int, features: int, limits: Limits,
                       sessions: SessionTable) -> Job:
    """Validate one data request into a Job; raises RequestError with the status to return."""
    # One copy for header and flf when the chain holds both (the usual case); a shorter
    # chain takes the header alone and fails exactly where it did before.
    if chain.readable_len >= _PREFETCH:
        header = chain.read(0, _PREFETCH)
    else:
        header = take(chain, 0, DATA_HEADER_SIZE, "data header")
    opcode, _algo, session_id, flag = _HEADER.unpack_from(header)
    service = _SERVICE_OF_OP.get(opcode)
    if service is None:
        raise fail(f"data opcode {opcode:#x} not supported", Status.NOTSUPP)
    revision_1 = bool(features & _REVISION_1)
    stateless = revision_1 and not flag & FLAG_SESSION_MODE
    try:
        if stateless and not features & STATELESS_FEATURE[service]:
            raise fail(f"stateless {service.name} request without the feature", Status.NOTSUPP)
        flf_size = FLF_SIZES[service][stateless] if revision_1 else DATA_FLF_LEGACY
        flf_end = DATA_HEADER_SIZE + flf_size
        if flf_end <= len(header):
            flf = header[DATA_HEADER_SIZE:flf_end]
        else:
            flf = take(chain, DATA_HEADER_SIZE, flf_size, "data flf")
        params = None if stateless else sessions.get(session_id, service).params
        parse = Parse(chain, opcode, flf, DATA_HEADER_SIZE + flf_size, writable_len - 1, limits, params)
        return _PARSERS[service][stateless](parse)
    except RequestError as err:
        err.service = service
        raise
