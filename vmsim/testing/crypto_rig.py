"""Helpers for the virtio-crypto tests: a Linux-like crypto driver on the test rig.

It builds requests with the exact layouts the Linux 6.1 driver uses (72-byte control
and data headers, padded flf), and the unpadded REVISION_1 layouts, and submits them
through real virtqueues via vmsim.testing.virtio_driver. No tests live here.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Callable

from vmsim.devices.virtio.crypto.constants import (
    CipherDirection, CryptoFeatures, Op, Status, SymOp)
from vmsim.devices.events import TraceEvent
from vmsim.devices.virtio.crypto import strict as crypto_strict
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.strict.rules import Finding
from vmsim.testing.virtio_driver import Request, Rig, make_rig


def pad(data: bytes, size: int) -> bytes:
    assert len(data) <= size
    return data + bytes(size - len(data))


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def ctrl_header(opcode: int, flf: bytes, revision_1: bool = False, algo: int = 0, queue_id: int = 0) -> bytes:
    head = u32(opcode, algo, 0, queue_id)
    return head + (flf if revision_1 else pad(flf, 56))


def data_header(opcode: int, session_id: int, flf: bytes, revision_1: bool = False, flag: int = 0,
                algo: int = 0) -> bytes:
    head = struct.pack("<IIQII", opcode, algo, session_id, flag, 0)
    return head + (flf if revision_1 else pad(flf, 48))


def sym_flf(op_flf: bytes, op_type: int, size: int = 40) -> bytes:
    """struct virtio_crypto_sym_*_flf: op-specific fields padded, then op_type, padding."""
    return pad(op_flf, size) + u32(op_type, 0)


@dataclass
class Reply:
    status: int
    output: bytes
    used_len: int
    request: Request


class CryptoRig:
    """A CryptoDevice on the MMIO transport with a driver that speaks its protocol."""

    def __init__(self, device: CryptoDevice | None = None, queue_size: int = 64,
                 wanted: int | None = None, indirect: bool = False, ram_size: int = 16 << 20,
                 trace: bool = True, sink: Callable[[TraceEvent], None] | None = None,
                 strict: Callable[[Finding], None] | None = None) -> None:
        self.device = device if device is not None else CryptoDevice(workers=0)
        self.device.start()                     # the rig owns the device, as a machine would
        self.rig: Rig = make_rig(self.device, ram_size=ram_size, trace=trace, sink=sink,
                                 name="virtio-crypto" if sink is not None else None,
                                 strict=strict, strict_rules=crypto_strict.RULES)
        self.driver = self.rig.driver
        self.features = self.driver.init(queue_size=queue_size, wanted=wanted)
        self.revision_1 = bool(self.features & CryptoFeatures.REVISION_1)
        self.indirect = indirect
        self.ctrlq = self.driver.queues[self.device.control_queue]

    def close(self) -> None:
        self.device.close()
        self.rig.ram.close()

    # ---- control ------------------------------------------------------------------------

    def control(self, readable: list[bytes], writable: list[int]) -> tuple[Request, int]:
        request = self.ctrlq.submit(readable, writable, indirect=self.indirect)
        used = self.ctrlq.collect()
        assert [u.head for u in used] == [request.head], "control requests complete at once"
        return request, used[0].len

    def create(self, service_op: int, flf: bytes, keys: bytes = b"") -> tuple[int, int]:
        """(status, session_id) of a create-session request."""
        request, used_len = self.control([ctrl_header(service_op, flf, self.revision_1), keys], [16])
        session_id, status = struct.unpack_from("<QI", request.written())
        assert used_len == 16
        return status, session_id

    def create_cipher(self, algo: int, key: bytes, op: int = CipherDirection.ENCRYPT) -> int:
        status, sid = self.create(Op.CIPHER_CREATE_SESSION, sym_flf(u32(algo, len(key), op, 0), SymOp.CIPHER, 48),
                                  key)
        assert status == Status.OK, Status(status)
        return sid

    def destroy(self, opcode: int, session_id: int) -> int:
        request, used_len = self.control([ctrl_header(opcode, struct.pack("<Q", session_id), self.revision_1)], [1])
        return request.written()[0]

    # ---- data ---------------------------------------------------------------------------

    def hdr(self, opcode: int, session_id: int, flf: bytes, algo: int = 0) -> bytes:
        """A session-mode data header (with REVISION_1: unpadded flf, FLAG_SESSION_MODE set)."""
        return data_header(opcode, session_id, flf, self.revision_1, flag=1 if self.revision_1 else 0, algo=algo)

    def submit(self, queue: int, readable: list[bytes], writable: list[int]) -> Request:
        return self.driver.queues[queue].submit([r for r in readable if r], writable, indirect=self.indirect)

    def wait(self, queue: int, count: int = 1, timeout: float = 20.0) -> list:
        """Collect `count` used entries, polling the device as the run loop would."""
        q = self.driver.queues[queue]
        got: list = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            self.device.poll()
            got += q.collect()
            if len(got) < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(got)} of {count} completions")
                time.sleep(0.001)
        return got

    def data(self, readable: list[bytes], out_len: int, extra_writable: int = 0, queue: int = 0) -> Reply:
        """One data request: outputs in one buffer (plus slack), status in its own byte."""
        writable = ([out_len + extra_writable] if out_len + extra_writable else []) + [1]
        request = self.submit(queue, readable, writable)
        (used,) = self.wait(queue)
        assert used.head == request.head
        written = request.written()
        return Reply(written[-1], written[:out_len], used.len, request)

    def cipher(self, session_id: int, iv: bytes, src: bytes, decrypt: bool = False, queue: int = 0,
               extra_writable: int = 0) -> Reply:
        op = Op.CIPHER_DECRYPT if decrypt else Op.CIPHER_ENCRYPT
        flf = sym_flf(u32(len(iv), len(src), len(src)), SymOp.CIPHER)
        return self.data([self.hdr(op, session_id, flf), iv, src], len(src),
                         extra_writable, queue)


class ServiceRig(CryptoRig):
    """CryptoRig plus a create/run pair for every service, in the session-mode layouts."""

    def must_create(self, opcode: int, flf: bytes, keys: bytes = b"") -> int:
        status, sid = self.create(opcode, flf, keys)
        assert status == Status.OK, Status(status)
        return sid

    def create_hash(self, algo: int, result_len: int) -> int:
        return self.must_create(Op.HASH_CREATE_SESSION, u32(algo, result_len))

    def create_mac(self, algo: int, key: bytes, result_len: int) -> int:
        return self.must_create(Op.MAC_CREATE_SESSION, u32(algo, result_len, len(key), 0), key)

    def create_aead(self, algo: int, key: bytes, tag_len: int, encrypt: bool, aad_len: int = 0) -> int:
        op = CipherDirection.ENCRYPT if encrypt else CipherDirection.DECRYPT
        return self.must_create(Op.AEAD_CREATE_SESSION, u32(algo, len(key), tag_len, aad_len, op, 0), key)

    def create_akcipher(self, algo: int, key_type: int, key: bytes, para: bytes) -> int:
        return self.must_create(Op.AKCIPHER_CREATE_SESSION, u32(algo, key_type, len(key)) + pad(para, 44), key)

    def create_chain(self, order: int, hash_mode: int, cipher_algo: int, cipher_key: bytes, cipher_op: int,
                     auth_algo: int, result_len: int, auth_key: bytes = b"", aad_len: int = 0) -> int:
        auth_flf = u32(auth_algo, result_len, len(auth_key), 0) if hash_mode == 2 else u32(auth_algo, result_len)
        op_flf = u32(order, hash_mode, cipher_algo, len(cipher_key), cipher_op, 0) + pad(auth_flf, 16) + u32(aad_len, 0)
        return self.must_create(Op.CIPHER_CREATE_SESSION, sym_flf(op_flf, SymOp.ALGORITHM_CHAINING, 48),
                                cipher_key + auth_key)

    def digest(self, opcode: int, session_id: int, msg: bytes, result_len: int) -> Reply:
        header = self.hdr(opcode, session_id, u32(len(msg), result_len))
        return self.data([header, msg], result_len)

    def aead(self, session_id: int, encrypt: bool, iv: bytes, src: bytes, aad: bytes, out_len: int,
             iv_len: int | None = None, tag_len: int | None = None) -> Reply:
        """`iv` is the IV field as sent (CCM: 16 bytes, the nonce at iv[1], iv_len its
        length); tag_len, which the request repeats from the session, defaults to what
        the lengths imply."""
        op = Op.AEAD_ENCRYPT if encrypt else Op.AEAD_DECRYPT
        if tag_len is None:
            tag_len = out_len - len(src) if encrypt else len(src) - out_len
        flf = u32(len(iv) if iv_len is None else iv_len, len(aad), len(src), out_len, tag_len, 0)
        return self.data([self.hdr(op, session_id, flf), iv, src, aad], out_len)

    def chain(self, session_id: int, iv: bytes, src: bytes, aad: bytes, cipher_region: tuple[int, int],
              hash_region: tuple[int, int], result_len: int) -> Reply:
        flf = sym_flf(u32(len(iv), len(src), len(src), *cipher_region, *hash_region, len(aad), result_len, 0),
                      SymOp.ALGORITHM_CHAINING)
        return self.data([self.hdr(Op.CIPHER_ENCRYPT, session_id, flf), iv, src, aad],
                         len(src) + result_len)

    def akcipher(self, session_id: int, opcode: int, src: bytes, dst_len: int, digest: bytes = b"",
                 extra_writable: int = 0) -> Reply:
        """Linux's layouts: out [72][src] in [dst][status]; verify: out [72][sig||digest] in [status]."""
        if opcode == Op.AKCIPHER_VERIFY:
            header = self.hdr(opcode, session_id, u32(len(src), len(digest)), algo=1)
            return self.data([header, src + digest], 0)
        header = self.hdr(opcode, session_id, u32(len(src), dst_len), algo=1)
        return self.data([header, src], dst_len, extra_writable)
