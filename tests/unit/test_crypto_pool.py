"""The worker pool: out-of-order completion, a worker killed mid-request, no orphans.

The pool is generic over its runner, so these tests give it small runners defined here
(importable by the worker subprocesses as tests.unit.test_crypto_pool:...).
"""
from __future__ import annotations

import array
import fcntl
import hashlib
import os
import select
import termios
import time

import pytest

from vmsim.devices.virtio.crypto.constants import CipherAlgo, HashAlgo, Op, Status
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.crypto.pool import WorkerPool
from vmsim.testing.crypto_rig import ServiceRig, u32
from vmsim.trace.hub import TraceHub

CRASHED = "crashed"


def sleep_then_echo(job: tuple[float, str]) -> str:
    """Runner: sleep for job[0] seconds, answer job[1]; a negative delay reports the pid."""
    delay, value = job
    if delay < 0:
        return str(os.getpid())
    time.sleep(delay)
    return value


def drain(pool: WorkerPool, count: int, timeout: float = 20.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count:
        got += pool.take_results()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(got)} of {count} results")
        time.sleep(0.002)
    return got


def unread_bytes(pipe_fd: int) -> int:
    """Bytes written to a pipe and not yet read (FIONREAD works on either end)."""
    count = array.array("i", [0])
    fcntl.ioctl(pipe_fd, termios.FIONREAD, count)
    return count[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); treat it as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture(params=["collector-thread", "owner-collects"])
def pool(request):
    """Both ways of collecting: a collector thread that calls back, and none (the
    machine's native fd watcher watches result_fds() and take_results() collects)."""
    wakes = []
    on_result = (lambda: wakes.append(1)) if request.param == "collector-thread" else None
    p = WorkerPool("tests.unit.test_crypto_pool:sleep_then_echo", CRASHED, workers=2,
                   on_result=on_result).start()
    p.wakes = wakes  # type: ignore[attr-defined]
    p.owner_collects = on_result is None  # type: ignore[attr-defined]
    yield p
    p.close()


def test_results_come_back_out_of_order_and_wake_the_machine(pool):
    pool.submit(1, (0.6, "slow"))
    pool.submit(2, (0.0, "fast"))
    if pool.owner_collects:      # the fast answer makes a result pipe readable
        ready, _, _ = select.select(pool.result_fds(), [], [], 20.0)
        assert ready
    results = drain(pool, 2)
    assert results == [(2, "fast"), (1, "slow")]
    assert pool.owner_collects or pool.wakes


def test_killed_worker_fails_only_its_request_and_is_replaced(pool):
    pids = pool.pids()
    pool.submit(1, (30.0, "never"))            # goes to an idle worker
    pool.submit(2, (0.0, "ok"))                # goes to the other one
    assert drain(pool, 1) == [(2, "ok")]
    victim = next(w for w in pool._workers if w.jobs)   # the worker holding job 1
    pool.submit(3, (0.0, "queued"))            # lands behind job 1 or on the free worker
    os.kill(victim.process.pid, 9)
    results = dict(drain(pool, 2))
    assert results == {1: CRASHED, 3: "queued"}
    assert pool.crashes == 1 and pool.size == 2
    assert victim.process.pid not in pool.pids() and set(pool.pids()) != set(pids)
    pool.submit(4, (0.0, "after"))
    assert drain(pool, 1) == [(4, "after")]


def test_close_leaves_no_processes(pool):
    pool.submit(1, (-1, ""))
    pool.submit(2, (30.0, "busy"))   # a worker busy in a long job must still go away
    drain(pool, 1)
    pids = pool.pids()
    pool.close()
    assert pids and not any(alive(pid) for pid in pids)


def test_device_pool_out_of_order_through_the_queues():
    """A big hash and a small one on the pool: the small one's used entry comes first."""
    r = ServiceRig(CryptoDevice(workers=2, inline_max_bytes=0), ram_size=64 << 20)
    try:
        assert r.device.wait_for_workers()
        slow = r.create_hash(HashAlgo.SHAKE256, 4096)
        fast = r.create_hash(HashAlgo.SHA1, 20)
        q = r.driver.queues[0]
        for _ in range(2):   # one warm-up per worker, so both are running before the race
            q.submit([r.hdr(Op.HASH, fast, u32(4, 20)), b"warm"], [20, 1], indirect=True)
        r.wait(0, 2)
        big = q.submit([r.hdr(Op.HASH, slow, u32(12 << 20, 4096)), bytes(12 << 20)], [4096, 1], indirect=True,
                       kick=False)
        small = q.submit([r.hdr(Op.HASH, fast, u32(3, 20)), b"abc"], [20, 1], indirect=True, kick=False)
        q.kick()
        used = r.wait(0, 2, timeout=60)
        assert [u.head for u in used] == [small.head, big.head]
        assert small.written()[-1] == big.written()[-1] == Status.OK
    finally:
        r.close()


def test_a_job_before_any_worker_has_started_runs_inline():
    """Worker processes take a few hundred ms to start; a public-key job that arrives
    before any is ready is done inline instead of waiting for them."""
    r = ServiceRig(CryptoDevice(workers=1))
    try:
        sid = r.create_akcipher(1, 1, _rsa_public_der(), u32(0, 0))
        q = r.driver.queues[0]
        request = q.submit([r.hdr(Op.AKCIPHER_ENCRYPT, sid, u32(128, 128), algo=1), bytes(127) + b"\2"],
                           [128, 1], indirect=True)
        (used,) = r.wait(0)
        assert used.head == request.head and request.written()[-1] == Status.OK
        assert (r.device.stats[0].inline, r.device.stats[0].pooled) == (1, 0)
        assert r.device.wait_for_workers()
    finally:
        r.close()


def test_destroy_while_requests_are_in_flight_is_safe():
    r = ServiceRig(CryptoDevice(workers=1, inline_max_bytes=0))
    try:
        key = os.urandom(16)
        sid = r.create_cipher(CipherAlgo.AES_ECB, key)
        q = r.driver.queues[0]
        from vmsim.testing.crypto_rig import sym_flf
        requests = [q.submit([r.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(0, 1 << 16, 1 << 16), 1)), bytes(1 << 16)],
                             [1 << 16, 1], indirect=True) for _ in range(4)]
        assert r.destroy(Op.CIPHER_DESTROY_SESSION, sid) == Status.OK
        r.wait(0, 4)
        assert all(req.written()[-1] == Status.OK for req in requests)
        assert r.cipher(sid, b"", bytes(16)).status == Status.INVSESS
    finally:
        r.close()


def test_device_close_leaves_no_workers():
    r = ServiceRig(CryptoDevice(workers=2, inline_max_bytes=0))
    sid = r.create_hash(HashAlgo.SHA1, 20)
    assert r.digest(Op.HASH, sid, b"abc", 20).status == Status.OK
    pids = r.device._pool.pids()
    r.close()
    assert pids and not any(alive(pid) for pid in pids)


def test_reset_cancels_pooled_jobs_and_nothing_late_reaches_the_new_rings():
    """A reset cancels what the pool holds for the old rings (the job is dropped and
    its worker killed and replaced), so nothing of it can land in the rings the driver
    sets up next: once the pool is idle again, the new ring holds the new answer alone."""
    r = ServiceRig(CryptoDevice(workers=1, inline_max_bytes=0))
    try:
        assert r.device.wait_for_workers()    # else the big hash would run inline
        sid = r.create_hash(HashAlgo.SHA_256, 32)
        q = r.driver.queues[0]
        q.submit([r.hdr(Op.HASH, sid, u32(8 << 20, 32)), bytes(8 << 20)], [32, 1], indirect=True)
        assert r.device.stats[0].pooled == 1
        (old_worker,) = r.device._pool.pids()
        r.driver.init(queue_size=64)          # status 0, then a fresh probe
        r.ctrlq = r.driver.queues[1]
        sid = r.create_hash(HashAlgo.SHA_256, 32)
        late = r.digest(Op.HASH, sid, b"x", 32)
        assert (late.status, late.output) == (Status.OK, hashlib.sha256(b"x").digest())
        deadline = time.monotonic() + 20
        while old_worker in r.device._pool.pids() or not r.device._pool.all_ready:
            assert time.monotonic() < deadline, "the cancelled job's worker was not replaced"
            r.device.poll()
            time.sleep(0.002)
        r.device.poll()
        assert not r.device._pending and r.device._pool.queued() == 0
        assert r.driver.queues[0].used_idx() == 1  # its entry alone: the stale job never came back
    finally:
        r.close()


def _rsa_public_der() -> bytes:
    """An RSA-1024 public key as PKCS#1 RSAPublicKey DER, the form Linux sends."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def _slow_rsa_key() -> bytes:
    """An RSAPrivateKey DER with an 8192-bit odd modulus and exponent and placeholder
    primes: a raw decrypt is then one pow() of several hundred ms in a worker."""
    import random
    rnd = random.Random(7)
    n = rnd.getrandbits(8192) | (1 << 8191) | 1
    d = rnd.getrandbits(8190) | 1

    def integer(v: int) -> bytes:
        body = v.to_bytes(v.bit_length() // 8 + 1, "big")
        return b"\x02" + (bytes([len(body)]) if len(body) < 0x80 else b"\x82" + len(body).to_bytes(2, "big")) + body

    body = b"".join(integer(v) for v in (0, n, 65537, d, 1, 1, 1, 1, 1))
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def test_device_request_on_a_killed_worker_completes_with_err():
    """... and observers see the worker's end and its replacement (a worker_restart
    event, on the CPU thread, with the pids and why)."""
    hub = TraceHub()
    sub = hub.subscribe()
    r = ServiceRig(CryptoDevice(workers=1, trace=hub), sink=hub)
    try:
        assert r.device.wait_for_workers()
        sid = r.create_akcipher(1, 2, _slow_rsa_key(), u32(0, 0))
        q = r.driver.queues[0]
        request = q.submit([r.hdr(Op.AKCIPHER_DECRYPT, sid, u32(16, 1024), algo=1), os.urandom(16)], [1024, 1],
                           indirect=True)
        (worker,) = r.device._pool._workers
        assert worker.jobs                            # an idle worker: sent before submit returned
        deadline = time.monotonic() + 10
        while unread_bytes(worker.tasks.fileno()):    # until the worker has taken the job in
            assert time.monotonic() < deadline, "the worker never read its job"
            time.sleep(0.001)
        os.kill(worker.process.pid, 9)
        (used,) = r.wait(0)
        assert used.head == request.head and used.len == 1      # akcipher: result 0 + 1
        assert request.written()[-1] == Status.ERR
        assert r.device.stats[0].statuses["ERR"] == 1
        (restart,) = [e for e in sub.drain() if e.kind == "worker_restart"]
        (replacement,) = r.device._pool._workers
        assert restart.fields == {"pid": worker.process.pid, "reason": "crashed", "jobs": 1,
                                  "new_pid": replacement.process.pid}
        hsid = r.create_hash(HashAlgo.SHA1, 20)
        assert r.digest(Op.HASH, hsid, b"abc", 20).status == Status.OK   # the device carries on
    finally:
        r.close()


def test_a_job_that_cannot_be_sent_fails_alone(pool):
    pool.submit(1, (0.0, lambda: None))      # not picklable
    pool.submit(2, (0.0, "fine"))
    assert sorted(drain(pool, 2), key=lambda r: r[0]) == [(1, CRASHED), (2, "fine")]


def test_worker_warm_up_runs_every_pooled_kind_successfully():
    """The warm-up a worker does before READY must really run RSA (raw and PKCS#1),
    ECDSA and AES jobs: a job that fails there would leave its path cold."""
    from vmsim.devices.virtio.crypto.execute import warm_up

    statuses = warm_up()
    assert len(statuses) == 4 and all(status == Status.OK for status in statuses)


def test_an_idle_started_worker_gets_the_job_before_one_still_starting(pool):
    deadline = time.monotonic() + 20
    while not all(w.ready for w in pool._workers):
        assert time.monotonic() < deadline, "workers did not start"
        pool.take_results()          # collects READY when the pool has no collector
        time.sleep(0.01)
    first, second = pool._workers
    first.ready = False              # as if it were still warming up
    pool.submit(1, (0.5, "job"))
    assert not first.jobs and second.jobs
    assert drain(pool, 1) == [(1, "job")]


def test_cancel_all_drops_queued_jobs_and_kills_busy_workers(pool):
    """What a device reset does to the pool: every job is forgotten at once. The queued
    ones never run, the running ones are killed with their workers (which are replaced),
    and no result for any of them comes back."""
    for token in range(1, 11):
        pool.submit(token, (30.0, f"job {token}"))
    deadline = time.monotonic() + 20
    while sum(len(w.jobs) for w in pool._workers) < 2:       # both workers hold a job
        assert time.monotonic() < deadline
        time.sleep(0.002)
    busy = pool.pids()
    assert pool.cancel_all() == 10
    assert pool.queued() == 0 and not any(w.jobs for w in pool._workers)
    pool.submit(11, (0.0, "after"))
    assert drain(pool, 1) == [(11, "after")]
    while set(busy) & set(pool.pids()):                     # both replaced
        assert time.monotonic() < deadline
        pool.take_results()
        time.sleep(0.002)
    assert pool.crashes == 0 and not any(alive(pid) for pid in busy)
    pool.submit(12, (0.0, "later"))
    assert drain(pool, 1) == [(12, "later")]                # and still nothing of 1..10


@pytest.mark.parametrize("collector", [True, False], ids=["collector-thread", "owner-collects"])
def test_a_job_past_the_time_limit_fails_and_the_job_behind_it_moves_on(collector):
    """One worker, a 30 s job and a quick one queued behind it: at the 0.3 s limit the
    long job gets the crash result, its worker is killed and replaced, and the quick one
    is answered by the replacement instead of waiting 30 s."""
    p = WorkerPool("tests.unit.test_crypto_pool:sleep_then_echo", CRASHED, workers=1,
                   on_result=(lambda: None) if collector else None, time_limit=0.3).start()
    try:
        (first,) = p.pids()
        start = time.monotonic()
        p.submit(1, (30.0, "never"))
        p.submit(2, (0.0, "behind"))
        assert dict(drain(p, 2)) == {1: CRASHED, 2: "behind"}
        assert time.monotonic() - start < 15
        assert (p.timeouts, p.crashes) == (1, 0) and first not in p.pids() and not alive(first)
        p.submit(3, (0.1, "fits"))                 # a job inside the limit is left alone
        assert drain(p, 1) == [(3, "fits")] and p.timeouts == 1
    finally:
        p.close()


def test_the_tui_counts_worker_restarts_by_reason():
    """The pool panel's restart count comes from worker_restart events (a replay of the
    two a test run makes: one crash, one time limit)."""
    from vmsim.trace.hub import Record
    from vmsim.trace.model import TraceModel
    from vmsim.tui.widgets import stats_text

    model = TraceModel()
    assert "restarts 0" in stats_text(model, 1.0).plain
    for seq, reason in enumerate(("crashed", "timed out", "crashed"), start=1):
        model.apply(Record(seq, 0.1 * seq, 0, "virtio-crypto", "worker_restart", None,
                           {"pid": 100 + seq, "reason": reason, "jobs": 1, "new_pid": 200 + seq}))
    assert "restarts 3 (2 crashed, 1 timed out)" in stats_text(model, 1.0).plain
