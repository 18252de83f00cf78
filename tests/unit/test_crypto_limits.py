"""What a guest can make the host spend through the crypto device, bounded: the bytes
held in flight (a flood of large requests waits in the guest's own ring), and the
public-key work (key limits at session creation, a time limit per pooled job, and a
budget for anything that runs on the CPU thread)."""
from __future__ import annotations

import os
import time

import pytest

from vmsim.devices.virtio.crypto.constants import CipherAlgo, Op, Status, SymOp
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import Desc, Status as DevStatus
from vmsim.testing.crypto_rig import ServiceRig, sym_flf, u32
from vmsim.testing.virtio_driver import Descriptor

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """This process's resident set now (not the peak: earlier tests do not count)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


# ---- bytes in flight ----------------------------------------------------------------------

FLOOD_CHAINS = 200                # the red team's flood: 200 chains ...
FLOOD_SRC = 16 * MiB - 16         # ... on one 16 MiB buffer (max_size, the IV included)
CAP = 32 * MiB
# What one request can hold beyond its share of the cap while it moves between the
# device and a worker (the pickled copy going out, the result coming back and its
# unpickled copy), for each of the two requests that can be in flight at the cap.
SLACK = 2 * 4 * 16 * MiB


def flood(rig: ServiceRig, sid: int, chains: int) -> tuple[int, int]:
    """`chains` AES-CBC requests whose source is one 16 MiB guest buffer and whose
    destination is another, each in its own indirect table, made available with one
    kick. Returns the guest addresses of the first status byte and of the last."""
    heap, ram, q = rig.driver.heap, rig.rig.ram, rig.driver.queues[0]
    src, dst = heap.alloc(FLOOD_SRC, 4096), heap.alloc(FLOOD_SRC, 4096)
    ram.write(dst, bytes(FLOOD_SRC))                     # touched now, not during the flood
    header = heap.put(rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, FLOOD_SRC, FLOOD_SRC), SymOp.CIPHER)))
    iv = heap.put(bytes(16))
    statuses = []
    for head in range(chains):
        status = heap.alloc(1)
        ram.write(status, b"\xff")
        statuses.append(status)
        table = q.raw_table([Descriptor(header, 72, Desc.NEXT, 1), Descriptor(iv, 16, Desc.NEXT, 2),
                             Descriptor(src, FLOOD_SRC, Desc.NEXT, 3),
                             Descriptor(dst, FLOOD_SRC, Desc.WRITE | Desc.NEXT, 4),
                             Descriptor(status, 1, Desc.WRITE)])
        q.write_desc(head, Descriptor(table, 5 * 16, Desc.INDIRECT))
        q.make_available(head)
    return statuses


def test_a_flood_of_large_requests_is_held_to_the_in_flight_cap():
    """200 chains on one 16 MiB buffer, one doorbell: the device copies only as many
    as the cap allows and leaves the rest in the ring until completions free room.
    vmsim's memory stays under the cap plus a constant, and every chain is answered."""
    rig = ServiceRig(CryptoDevice(workers=2, max_inflight_bytes=CAP), queue_size=256, ram_size=48 * MiB)
    try:
        assert rig.device.wait_for_workers()
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        statuses = flood(rig, sid, FLOOD_CHAINS)
        q = rig.driver.queues[0]
        before = peak = rss()
        q.kick()
        assert rig.device.ctx.queues[0].pending() > 0, "the flood waits in the ring"
        answered, deadline = [], time.monotonic() + 600
        while len(answered) < FLOOD_CHAINS:
            assert time.monotonic() < deadline, f"{len(answered)} of {FLOOD_CHAINS} answered"
            rig.device.poll()
            answered += q.collect()
            peak = max(peak, rss())
            assert rig.device.inflight_bytes <= CAP + 2 * FLOOD_SRC + 4096
            time.sleep(0.001)
        assert sorted(u.head for u in answered) == list(range(FLOOD_CHAINS))
        assert {rig.rig.ram.read(s, 1) for s in statuses} == {bytes([Status.OK])}
        assert peak - before < CAP + SLACK, f"RSS grew by {(peak - before) / MiB:.0f} MiB"
        assert rig.device.inflight_bytes == 0
    finally:
        rig.close()


def test_a_reset_drops_every_queued_job():
    """Jobs waiting for a worker are dropped at a reset, not run for nobody."""
    rig = ServiceRig(CryptoDevice(workers=1, inline_max_bytes=0, max_inflight_bytes=1 << 40),
                     queue_size=64, ram_size=24 * MiB)
    try:
        assert rig.device.wait_for_workers()
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        q = rig.driver.queues[0]
        size = 256 << 10
        header = rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, size, size), SymOp.CIPHER))
        for _ in range(30):
            q.submit([header, bytes(16), bytes(size)], [size, 1], indirect=True, kick=False)
        q.kick()
        pool = rig.device._pool
        assert pool.queued() > 20 and rig.device.inflight_bytes > 20 * size
        rig.driver.reset()
        assert pool.queued() == 0 and rig.device.inflight_bytes == 0 and not rig.device._pending
    finally:
        rig.close()


def test_the_in_flight_cap_is_a_device_option():
    from vmsim.cli.device_option import parse_device
    from vmsim.devices.bus import LevelRecorder, NullWaker
    from vmsim.devices.memory import Ram
    from vmsim.devices.model import OptionError, SlotContext
    from vmsim.testing.virtio_driver import RAM_BASE
    request = parse_device("virtio-crypto,max-inflight=8,workers=0")
    ram = Ram(RAM_BASE, 1 << 20)
    transport = request.model.create(SlotContext(ram, LevelRecorder(), NullWaker()),
                                     request.model.resolve(request.given))
    assert transport.device.max_inflight_bytes == 8 * MiB
    assert CryptoDevice(workers=0).max_inflight_bytes == 64 * MiB       # the default
    for bad in ("0", "4097", "lots"):
        with pytest.raises(OptionError):
            parse_device(f"virtio-crypto,max-inflight={bad}")
    ram.close()


# ---- public-key work ------------------------------------------------------------------

def odd(bits: int, seed: int) -> int:
    """An odd number of exactly `bits` bits (a modulus does not need to be a real one
    for the limits, only for the arithmetic)."""
    import random
    return random.Random(seed).getrandbits(bits) | (1 << (bits - 1)) | 1


def public_der(n: int, e: int) -> bytes:
    from tests.unit.test_crypto_vectors import _der_int_sequence
    return _der_int_sequence([n, e])


def private_der(n: int, e: int, d: int) -> bytes:
    """An RSAPrivateKey with placeholder CRT fields, as Linux's testmgr writes some: the
    private operation is one pow() with the whole private exponent."""
    from tests.unit.test_crypto_vectors import _der_int_sequence
    return _der_int_sequence([0, n, e, d, 1, 1, 1, 1, 1])


def rsa_session(rig: ServiceRig, der: bytes, key_type: int = 1) -> tuple[int, int]:
    """(status, session id) of a raw RSA session on `der`."""
    from vmsim.devices.virtio.crypto.constants import AkcipherAlgo, RsaPadding
    from vmsim.testing.crypto_rig import pad
    return rig.create(Op.AKCIPHER_CREATE_SESSION,
                      u32(AkcipherAlgo.RSA, key_type, len(der)) + pad(u32(RsaPadding.RAW, 0), 44), der)


@pytest.fixture
def rig():
    r = ServiceRig()
    yield r
    r.close()


@pytest.mark.parametrize("n_bits,e,status", [
    (16384, 65537, Status.OK),
    (16385, 65537, Status.NOTSUPP),                 # over OpenSSL's largest modulus
    (87_200, (1 << 43_599) + 1, Status.NOTSUPP),    # the red team's 10,900-byte n, 5,450-byte e
    (16384, (1 << 16_382) + 1, Status.NOTSUPP),     # keyctl's 16384-bit n, 16383-bit e
    (4096, (1 << 64) - 1, Status.OK),               # a 64-bit e above 3072 bits: the most
    (4096, (1 << 64) + 1, Status.NOTSUPP),          # 65 bits
    (3072, (1 << 2000) + 1, Status.OK),             # up to 3072 bits, e may be long
    (2048, 65538, Status.ERR),                      # e even
    (2048, 1, Status.ERR),                          # e under 3
], ids=["16384-bit n", "16385-bit n", "red team key", "16383-bit e", "64-bit e", "65-bit e",
        "3072-bit n long e", "even e", "e 1"])
def test_rsa_public_keys_are_held_to_openssls_limits(rig, n_bits, e, status):
    n = odd(n_bits, n_bits)
    assert rsa_session(rig, public_der(n, e))[0] == status


def test_rsa_key_numbers_must_make_sense(rig):
    n = odd(2048, 1)
    assert rsa_session(rig, public_der(n, n + 2))[0] == Status.ERR            # e >= n
    assert rsa_session(rig, public_der(n - 1, 65537))[0] == Status.ERR        # n even
    assert rsa_session(rig, private_der(n, 65537, n + 1), key_type=2)[0] == Status.ERR   # d >= n
    assert rsa_session(rig, private_der(n, 65537, 12345), key_type=2)[0] == Status.OK


def test_a_stateless_request_with_an_oversized_key_is_notsupp():
    from vmsim.devices.virtio.crypto.constants import CryptoFeatures
    from vmsim.testing.crypto_rig import data_header
    rig = ServiceRig(CryptoDevice(workers=0, features=CryptoFeatures.ALL))
    try:
        der = public_der(odd(16385, 3), 65537)
        flf = u32(1, 1, len(der), 0, 0, 16, 2049)
        reply = rig.data([data_header(Op.AKCIPHER_ENCRYPT, 0, flf, True), der, bytes(16)], 2049)
        assert reply.status == Status.NOTSUPP
    finally:
        rig.close()


def slow_private_session(rig: ServiceRig, bits: int = 16384) -> int:
    """A raw RSA private session whose decryption is one pow() with a `bits`-bit private
    exponent: tens of seconds of work at 16384 bits."""
    n = odd(bits, 7)
    status, sid = rsa_session(rig, private_der(n, 65537, odd(bits - 2, 8)), key_type=2)
    assert status == Status.OK
    return sid


def decrypt_request(rig: ServiceRig, sid: int, bits: int = 16384):
    q = rig.driver.queues[0]
    size = bits // 8
    return q.submit([rig.hdr(Op.AKCIPHER_DECRYPT, sid, u32(16, size), algo=1), bytes(15) + b"\x07"],
                    [size, 1], indirect=True, kick=False)


def kick_time(rig: ServiceRig) -> float:
    """How long the CPU thread spends in the notify (where inline work would run)."""
    start = time.perf_counter()
    rig.driver.queues[0].kick()
    return time.perf_counter() - start


def answer(rig: ServiceRig, request, timeout: float = 30.0):
    (used,) = rig.wait(0, timeout=timeout)
    assert used.head == request.head
    return request.written()[-1]


def test_with_workers_0_costly_public_key_work_goes_to_a_worker_not_the_cpu_thread():
    """workers=0 runs everything on the CPU thread except public-key work over its
    budget: a raw RSA-16384 private operation (over a second, even through OpenSSL) goes
    to a worker started for it, and the notify returns at once."""
    rig = ServiceRig(CryptoDevice(workers=0, job_time_limit=0.5))
    try:
        sid = slow_private_session(rig)
        request = decrypt_request(rig, sid)
        assert kick_time(rig) < 1.0
        assert (rig.device.stats[0].inline, rig.device.stats[0].pooled) == (0, 1)
        assert answer(rig, request) == Status.ERR          # it ran past its 0.5 s in the worker
        cheap = rig.create_hash(1, 16)                     # and the rest still runs inline
        assert rig.digest(Op.HASH, cheap, b"abc", 16).status == Status.OK
        assert rig.device.stats[0].inline == 1
    finally:
        rig.close()


def test_costly_public_key_work_before_the_pool_is_ready_waits_for_a_worker():
    """Before any worker has started, cheap jobs run inline (a cold start would cost
    more), but one over the budget waits for a worker instead of stalling the vCPU."""
    rig = ServiceRig(CryptoDevice(workers=1, job_time_limit=0.5))
    try:
        sid = slow_private_session(rig)
        assert not rig.device._pool.ready, "the worker started too soon for this test"
        request = decrypt_request(rig, sid)
        assert kick_time(rig) < 1.0
        assert (rig.device.stats[0].inline, rig.device.stats[0].pooled) == (0, 1)
        assert answer(rig, request) == Status.ERR
    finally:
        rig.close()


def test_a_job_past_its_time_limit_gets_err_and_the_jobs_behind_it_do_not_wait(tmp_path):
    """One worker: a raw RSA-16384 private operation, then a small public-key job queued
    behind it. At the limit the first is answered ERR and its worker is replaced; the
    second is answered by the new worker, long before the first would have finished."""
    from vmsim import log
    log.configure({log.GUEST_ERRORS}, (), tmp_path / "log")
    rig = ServiceRig(CryptoDevice(workers=1, job_time_limit=0.5))
    try:
        assert rig.device.wait_for_workers()
        slow = decrypt_request(rig, slow_private_session(rig))
        n = odd(1024, 9)
        status, pub = rsa_session(rig, public_der(n, 65537))
        q = rig.driver.queues[0]
        quick = q.submit([rig.hdr(Op.AKCIPHER_ENCRYPT, pub, u32(16, 128), algo=1), bytes(15) + b"\x02"],
                         [128, 1], indirect=True, kick=False)
        start = time.monotonic()
        q.kick()
        assert rig.device.stats[0].pooled == 2
        used = rig.wait(0, 2, timeout=30)
        assert time.monotonic() - start < 5.0               # the pow() alone takes longer
        assert {u.head for u in used} == {slow.head, quick.head}
        assert slow.written()[-1] == Status.ERR and quick.written()[-1] == Status.OK
        assert rig.device._pool.timeouts == 1 and rig.device._pool.crashes == 0
        lines = (tmp_path / "log").read_text()
        assert lines.count("ran past its 0.5 s limit") == 1, lines
    finally:
        rig.close()
        log.configure()


def test_when_no_worker_can_start_costly_public_key_work_is_refused(monkeypatch):
    from vmsim.devices.virtio.crypto.pool import WorkerPool
    rig = ServiceRig(CryptoDevice(workers=1))
    try:
        monkeypatch.setattr(WorkerPool, "broken", property(lambda self: True))
        sid = slow_private_session(rig)
        request = decrypt_request(rig, sid)
        assert kick_time(rig) < 1.0
        assert answer(rig, request) == Status.ERR
        assert (rig.device.stats[0].inline, rig.device.stats[0].pooled) == (0, 0)
    finally:
        rig.close()
