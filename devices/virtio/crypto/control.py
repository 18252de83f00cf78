"""Control-queue requests: create and destroy sessions.

Layout: a 16-byte header (opcode, algo, flag, queue_id/reserved; queue_id is ignored),
the opcode's flf (padded to 56 bytes unless REVISION_1 is negotiated), then the keys.
Replies: a create answers with the 16-byte session_input (session_id at 0, status at 8);
a destroy answers with one status byte at offset 0. The reply is sized from the
writable bytes really present (a create given less than 16 bytes gets ERR in its last
byte), and every request whose chain could be popped is completed: the Linux 6.1 driver
waits for control completions without a timeout.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from vmsim.devices.virtio.crypto import aead, akcipher, chaining, cipher, digest
from vmsim.devices.virtio.crypto.config import Limits
from vmsim.devices.virtio.crypto.constants import (
    CREATE_SESSION_INPUT_SIZE, CREATE_SESSION_OPS, CTRL_FLF_LEGACY, CTRL_HEADER_SIZE, DESTROY_SESSION_OPS,
    CryptoFeatures, Service, Status, SymOp)
from vmsim.devices.virtio.crypto.sessions import Params, SessionTable
from vmsim.devices.virtio.crypto.wire import ReadableChain, RequestError, fail, split, take, u32s, u64

CREATE_FLF_SIZES = {Service.CIPHER: 56, Service.HASH: 8, Service.MAC: 16, Service.AEAD: 24, Service.AKCIPHER: 56}
DESTROY_FLF_SIZE = 8


@dataclass(frozen=True, slots=True)
class ControlReply:
    """Bytes to write at offset 0 of the writable area; used.len is their length."""

    status: Status
    data: bytes
    session_id: int | None = None


def _keys(chain: ReadableChain, offset: int, sizes: list[int], limits: Limits) -> list[bytes]:
    if sum(sizes) > limits.max_size:
        raise fail("session keys exceed max_size")
    return split(take(chain, offset, sum(sizes), "session keys"), sizes)


def _session_params(service: Service, flf: bytes, chain: ReadableChain, vlf: int, limits: Limits) -> Params:
    if service == Service.CIPHER:
        op_type = u32s(flf, 48, 1)[0]
        if op_type == SymOp.CIPHER:
            algo, key_len, op = u32s(flf, 0, 3)
            if key_len > limits.max_cipher_key_len:
                raise fail(f"cipher key of {key_len} bytes exceeds max_cipher_key_len")
            (key,) = _keys(chain, vlf, [key_len], limits)
            return cipher.make_params(algo, key, op)
        if op_type == SymOp.ALGORITHM_CHAINING:
            order, hash_mode, c_algo, c_key_len, c_op, _pad, h_algo, result_len, h_key_len = u32s(flf, 0, 9)
            aad_len = u32s(flf, 40, 1)[0]
            if hash_mode != 2:  # only the MAC flf carries an auth key length
                h_key_len = 0
            if c_key_len > limits.max_cipher_key_len or h_key_len > limits.max_auth_key_len:
                raise fail("chain session key exceeds the advertised maximum")
            c_key, h_key = _keys(chain, vlf, [c_key_len, h_key_len], limits)
            return chaining.make_params(order, hash_mode, cipher.make_params(c_algo, c_key, c_op), h_algo,
                                        result_len, h_key, aad_len, limits.max_auth_key_len)
        raise fail(f"sym session op_type {op_type} not supported", Status.NOTSUPP)
    if service == Service.HASH:
        algo, result_len = u32s(flf, 0, 2)
        return digest.make_hash_params(algo, result_len)
    if service == Service.MAC:
        algo, result_len, key_len = u32s(flf, 0, 3)
        if key_len > limits.max_auth_key_len:
            raise fail(f"auth key of {key_len} bytes exceeds max_auth_key_len")
        (key,) = _keys(chain, vlf, [key_len], limits)
        return digest.make_mac_params(algo, key, result_len, limits.max_auth_key_len)
    if service == Service.AEAD:
        algo, key_len, tag_len, _aad_len, op = u32s(flf, 0, 5)
        if key_len > limits.max_cipher_key_len:
            raise fail(f"AEAD key of {key_len} bytes exceeds max_cipher_key_len")
        (key,) = _keys(chain, vlf, [key_len], limits)
        return aead.make_params(algo, key, tag_len, op)
    algo, key_type, key_len = u32s(flf, 0, 3)
    if key_len > akcipher.MAX_KEY_LEN:
        raise fail(f"akcipher key of {key_len} bytes is too long")
    (key,) = _keys(chain, vlf, [key_len], limits)
    return akcipher.make_params(algo, key_type, key, flf[12:20])


def _create_input(session_id: int, status: Status) -> bytes:
    return struct.pack("<QII", session_id, int(status), 0)


def _status_reply(status: Status, writable_len: int, shaped_as_create: bool) -> ControlReply:
    if shaped_as_create and writable_len >= CREATE_SESSION_INPUT_SIZE:
        return ControlReply(status, _create_input(0, status))
    if writable_len < 1:
        return ControlReply(status, b"")
    # Too small for a session_input: put the status in the last writable byte.
    return ControlReply(status, bytes(writable_len - 1) + bytes([status]))


def handle_control(chain: ReadableChain, writable_len: int, features: int, limits: Limits,
                   sessions: SessionTable) -> ControlReply:
    """Run one control request against the session table and build its reply."""
    revision_1 = bool(features & CryptoFeatures.REVISION_1)
    opcode = None
    try:
        header = take(chain, 0, CTRL_HEADER_SIZE, "control header")
        opcode = u32s(header, 0, 1)[0]
        if opcode in CREATE_SESSION_OPS:
            service = CREATE_SESSION_OPS[opcode]
            flf_size = CREATE_FLF_SIZES[service] if revision_1 else CTRL_FLF_LEGACY
            flf = take(chain, CTRL_HEADER_SIZE, flf_size, "create-session flf")
            if writable_len < CREATE_SESSION_INPUT_SIZE:
                raise fail(f"create-session reply needs 16 writable bytes, chain has {writable_len}")
            params = _session_params(service, flf, chain, CTRL_HEADER_SIZE + flf_size, limits)
            session = sessions.create(params, Status.NOSPC if revision_1 else Status.ERR)
            return ControlReply(Status.OK, _create_input(session.id, Status.OK), session.id)
        if opcode in DESTROY_SESSION_OPS:
            flf_size = DESTROY_FLF_SIZE if revision_1 else CTRL_FLF_LEGACY
            flf = take(chain, CTRL_HEADER_SIZE, flf_size, "destroy-session flf")
            sessions.destroy(u64(flf, 0), DESTROY_SESSION_OPS[opcode])
            return ControlReply(Status.OK, bytes([Status.OK]) if writable_len else b"")
        raise fail(f"control opcode {opcode:#x} not supported", Status.NOTSUPP)
    except RequestError as exc:
        if opcode in DESTROY_SESSION_OPS and writable_len:
            return ControlReply(exc.status, bytes([exc.status]))
        return _status_reply(exc.status, writable_len, opcode not in DESTROY_SESSION_OPS)
