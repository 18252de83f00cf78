"""The virtio-crypto device (ID 20): queues, config space, sessions, inline and pooled work.

Every chain is parsed and copied out of guest memory exactly once, on the CPU thread,
into an immutable Job; only that copy goes to a worker. Small symmetric jobs run inline
(the IPC round trip would cost more than the work); large ones and all public-key jobs
go to the worker pool, and their completions are written back by `poll()` on the CPU
thread. When the machine's Waker is an FdWaker the device hands it the pool's result
pipes and the CPU thread collects them itself, so no Python thread (and no GIL) sits
between a worker's answer and the guest; otherwise the pool's collector thread calls
the Waker. Completions may leave in any order. Every popped chain is completed, with a
status when anything is wrong. A structurally broken chain (ChainError) is answered
ERR in its last writable byte when the queue can still find that byte; only one whose
end cannot be found makes the device ask for a reset.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from vmsim import log
from vmsim.devices.bus import FdWaker, NullWaker, Waker
from vmsim.devices.events import TraceSink, discard, event_log
from vmsim.devices.virtio.crypto import akcipher, execute, tracing
from vmsim.devices.virtio.crypto.config import CONFIG_SIZE, Limits, config_bytes, read_field
from vmsim.devices.virtio.crypto.constants import (CREATE_SESSION_OPS, DEVICE_ID, CryptoFeatures, Op,
                                                   Service, Status)
from vmsim.devices.virtio.crypto.control import ControlReply, handle_control
from vmsim.devices.virtio.crypto.deferred import Deferred
from vmsim.devices.virtio.crypto.execute import Job, Outcome
from vmsim.devices.virtio.crypto.faults import Fault, FaultPlan, opcode_name
from vmsim.devices.virtio.crypto.pool import WorkerPool
from vmsim.devices.virtio.crypto.requests import parse_data_request
from vmsim.devices.virtio.crypto.sessions import SessionTable
from vmsim.devices.virtio.crypto.wire import RequestError
from vmsim.devices.virtio.device import DeviceContext, VirtioDevice
from vmsim.devices.virtio.queue import ChainError, DescriptorChain

# bench/crypto_device.py (2 CPUs, AES-CBC): inline beats the pool at every measured size
# (16 B: 46k vs 12k req/s; 64 KiB: 840 vs 229 MB/s), so symmetric jobs run inline up to
# this size; bigger ones go to the pool so one request never stalls the vCPU for long.
# Public-key jobs (0.3-5 ms each) always go to the pool.
INLINE_MAX_BYTES = 256 << 10
# Request bytes held in flight (copied out of guest memory and not yet answered, see
# Job.memory); past it the device pops no further chain until completions free room,
# so a guest posting many large requests at once waits in its own ring instead of
# growing vmsim. At most one request more than this is held (max_size bounds it).
MAX_INFLIGHT_BYTES = 64 << 20
# Public-key work (akcipher.cost units) that may run on the CPU thread: about 2^20
# 64-bit limb products, some 10-30 ms. That covers RSA-2048 private operations with CRT
# and public ones up to 8192 bits (e = 65537); anything costlier goes to the pool.
INLINE_WORK = 1 << 20
# The longest a pooled job may run. Past it the job is answered ERR and its worker is
# killed and replaced; the jobs queued behind it go to other workers. The costliest
# legitimate job, a raw RSA-16384 private operation with CRT in Python, takes ~5 s.
JOB_TIME_LIMIT = 10.0
INLINE, POOL, REFUSE = "inline", "pool", "refuse"
# Injected interrupt timing: irq=late without delay= comes this late; irq=dup's second
# interrupt this long after the first, so the driver has acknowledged the first.
LATE_IRQ_MS = 100
DUP_IRQ_MS = 1
NAME = "virtio-crypto"
RUNNER = "vmsim.devices.virtio.crypto.execute:run"
# Per completion: one prebuilt status byte and name instead of bytes([...]) and the
# enum's name property.
_STATUS_BYTE = {status: bytes([status]) for status in Status}
_STATUS_NAME = {status: status.name for status in Status}
_SERVICE_NAME = {int(service): service.name for service in Service}   # per traced request
_monotonic = time.monotonic       # per traced event: one global lookup


def _checked_features(features: int) -> CryptoFeatures:
    """The device-type bits to offer. Every STATELESS bit requires REVISION_1 (spec,
    Crypto Device / Feature bit requirements) and a device must not offer a feature
    whose requirement it does not offer (Basic Facilities / Feature Bits), so such a
    configuration is a construction error, as is any bit the spec does not define."""
    if features & ~int(CryptoFeatures.ALL):
        raise ValueError(f"virtio-crypto defines feature bits 0..5 only, not {features:#x}")
    if features & ~int(CryptoFeatures.REVISION_1) and not features & CryptoFeatures.REVISION_1:
        raise ValueError("a STATELESS_MODE feature bit needs VIRTIO_CRYPTO_F_REVISION_1")
    return CryptoFeatures(features)


@dataclass
class QueueStats:
    """Per-queue counters for summaries (requests seen, bytes in, statuses returned)."""

    requests: int = 0
    bytes_in: int = 0
    inline: int = 0
    pooled: int = 0
    dropped: int = 0           # pooled results thrown away: the queue stopped before they came
    statuses: Counter = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Pending:
    queue: int
    chain: DescriptorChain
    service: Service
    epoch: int
    started: float = 0.0     # host time of the submit, for the trace's duration
    memory: int = 0          # what the job counts against the in-flight cap
    fault: Fault | None = None   # what a fault rule does to its completion


_REVISION_1 = int(CryptoFeatures.REVISION_1)


class CryptoDevice(VirtioDevice):
    """virtio-crypto backend; see the module docstring for the threading model."""

    device_id = DEVICE_ID
    feature_bit_names = tracing.FEATURE_BIT_NAMES

    def __init__(self, max_dataqueues: int = 1, workers: int | None = None, hw_ready: bool = True,
                 features: int = CryptoFeatures.DEFAULT, waker: Waker = NullWaker(),
                 trace: TraceSink = discard, *, limits: Limits = Limits(), max_sessions: int = 4096,
                 queue_max_size: int = 1024, inline_max_bytes: int = INLINE_MAX_BYTES,
                 max_inflight_bytes: int = MAX_INFLIGHT_BYTES,
                 job_time_limit: float = JOB_TIME_LIMIT, faults: FaultPlan | None = None) -> None:
        if not 1 <= max_dataqueues <= 65535:
            raise ValueError("max_dataqueues must be 1..65535")
        self.max_dataqueues = max_dataqueues
        self.num_queues = max_dataqueues + 1
        self.queue_max_size = queue_max_size
        self.control_queue = max_dataqueues
        self.offered = _checked_features(features)
        self._feature_mask = int(CryptoFeatures.ALL) & int(self.offered)
        self.limits = limits
        self.sessions = SessionTable(max_sessions)
        self.stats = [QueueStats() for _ in range(self.num_queues)]
        self._config = config_bytes(max_dataqueues, hw_ready, limits)
        self.faults = faults if faults is not None else FaultPlan()
        self._deferred = Deferred(waker.wake)   # delayed completions and interrupts
        self._workers = workers
        self._waker = waker
        self._trace = trace
        self._log = event_log(trace)
        self._inline_max = inline_max_bytes
        self._pool: WorkerPool[Job, Outcome] | None = None
        self._fd_waker = waker if isinstance(waker, FdWaker) else None
        self._watched_fds: tuple[int, ...] = ()
        self._pending: dict[int, _Pending] = {}
        self._next_token = 0
        self._epoch = 0
        self.dropped = 0           # pooled results never written (reset, stopped queue, NEEDS_RESET)
        self.max_inflight_bytes = max_inflight_bytes
        self.job_time_limit = job_time_limit
        self.inflight_bytes = 0    # Job.memory of the pooled jobs not yet answered
        self._throttled: set[int] = set()   # data queues that stopped popping at the cap
        self.ctx: DeviceContext | None = None

    # ---- lifecycle (the machine's) -------------------------------------------------------

    def start(self) -> None:
        """Nothing starts with the machine: the worker processes start when the guest
        first shows it has work for them, a public-key session with a costly key or a
        request that belongs in the pool (`_wanted`). Each takes a few hundred ms of CPU
        to start, which every boot paid although the kernel's own self-tests never need
        them; a driver creates its session before its first request, which gives them
        that head start. Until one is ready (and with workers=0) everything runs inline
        but public-key work over INLINE_WORK, which waits for a worker (see _placement)."""

    def close(self) -> None:
        """Stop the worker pool; no worker process outlives this."""
        self._deferred.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            self._watch_pool()                  # before its pipes close
            pool.close()

    def __enter__(self) -> CryptoDevice:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- VirtioDevice ------------------------------------------------------------------

    def device_features(self) -> int:
        return int(self.offered)

    def read_config(self, offset: int, size: int) -> int:
        return read_field(self._config, offset, size) if offset + size <= CONFIG_SIZE else 0

    def activate(self, ctx: DeviceContext) -> None:
        self.ctx = ctx

    def reset(self) -> None:
        """Drop sessions and forget in-flight work: a result that comes back later is
        dropped by poll(), never written to the new rings."""
        self.ctx = None
        self.sessions.clear()
        if self._pool is not None:
            self._pool.cancel_all()     # queued jobs dropped, busy workers killed and replaced
        self._pending.clear()
        self._deferred.clear()
        self.inflight_bytes = 0
        self._throttled.clear()
        self._epoch += 1

    def queue_notify(self, index: int) -> None:
        ctx = self.ctx
        if ctx is None or not 0 <= index < self.num_queues or index >= len(ctx.queues):
            return
        self._serve(ctx, index)

    def _serve(self, ctx: DeviceContext, index: int) -> None:
        """Drain one queue; a refused chain is answered (or stops the device) and the
        rest of the ring is served after it."""
        drain = self._drain_control if index == self.control_queue else self._drain_data
        while True:         # each refused chain is consumed, so this ends with the ring
            try:
                drain(ctx, index)
                return
            except ChainError as err:
                if not self._answer_refused(ctx, index, err):
                    return
            except Exception as err:  # noqa: BLE001 - a device never raises into the machine
                log.internal_error(NAME, f"queue {index}: {err!r}; the device now needs a reset")
                self._emit("error", index, reason=f"internal: {err!r}")
                ctx.needs_reset(f"virtio-crypto internal error: {err!r}")
                return

    def _answer_refused(self, ctx: DeviceContext, index: int, err: ChainError) -> bool:
        """A chain the queue refused: answer ERR in its last device-writable byte, where
        the Linux driver reads the status, and return it, when the queue could find that
        byte; True if so (the queue carries on). Otherwise DEVICE_NEEDS_RESET, which the
        Linux 6.1 driver ignores: its request would wait forever, so this is the last
        resort. used.len is 0 (nothing from the start of the writable area was written).
        Either way the reason is logged once as a guest error."""
        if err.head is None or err.last_writable is None:
            self._emit("error", index, reason=str(err))
            ctx.needs_reset(f"virtio-crypto queue {index}: {err}")   # logged by the transport
            return False
        log.guest_error(NAME, f"refused a chain, answered ERR: {err.reason}")
        self._emit("error", index, head=err.head, reason=err.reason, answered="ERR")
        ctx.mem.write(err.last_writable, _STATUS_BYTE[Status.ERR])
        ctx.queues[index].add_used(err.head, 0)
        self._count(index, Status.ERR, 0)
        ctx.signal_used(index)
        return True

    def poll(self) -> None:
        """Write back pooled results and due delayed work (CPU thread)."""
        self._deferred.run_due()
        if self._pool is None:
            return
        ctx, touched = self.ctx, set()
        results = self._pool.take_results()
        self._watch_pool()                      # a dead worker's replacement has new pipes
        if self._trace is not discard:
            for restart in self._pool.restarts():
                self._emit("worker_restart", None, **restart)
        for token, outcome in results:
            pending = self._pending.pop(token, None)
            if pending is not None:
                self.inflight_bytes -= pending.memory
            if pending is None or ctx is None or pending.epoch != self._epoch:
                self._drop(None if pending is None else pending.queue, token, "the device was reset")
                continue
            if not ctx.queues[pending.queue].ready:     # QueueReady=0, or NEEDS_RESET
                self._drop(pending.queue, token, "the queue is stopped")
                continue
            if pending.fault is not None:
                self._deliver(ctx, pending.queue, pending.chain, pending.fault, partial(
                    self._complete, ctx, pending.queue, pending.chain, pending.service,
                    outcome if pending.fault.status is None else Outcome(pending.fault.status),
                    pending.started, True))
                continue
            try:
                self._complete(ctx, pending.queue, pending.chain, pending.service, outcome,
                               pending.started, pooled=True)
                touched.add(pending.queue)
            except Exception as err:  # noqa: BLE001 - e.g. ChainError: the queue was stopped
                self._completion_failed(ctx, pending.queue, err)
        for index in touched:
            ctx.signal_used(index)  # type: ignore[union-attr]
        if self._throttled and ctx is not None and self.inflight_bytes < self.max_inflight_bytes:
            self._resume(ctx)

    def _completion_failed(self, ctx: DeviceContext, queue: int, err: Exception) -> None:
        if not isinstance(err, ChainError):
            log.internal_error(NAME, f"completion on queue {queue}: {err!r}")
        self._emit("error", queue, reason=f"completion: {err}")
        ctx.needs_reset(f"virtio-crypto completion: {err}")

    def _resume(self, ctx: DeviceContext) -> None:
        """Completions freed room under the in-flight cap: serve the queues that stopped
        at it (the driver already kicked them; it will not kick again)."""
        for index in sorted(self._throttled):
            if self.inflight_bytes >= self.max_inflight_bytes:
                break
            self._throttled.discard(index)
            if ctx.queues[index].ready:
                self._serve(ctx, index)

    # ---- control queue -----------------------------------------------------------------

    def _drain_control(self, ctx: DeviceContext, index: int) -> None:
        queue = ctx.queues[index]
        completed = False
        while (chain := queue.pop()) is not None:
            tracing_on = self._trace is not discard
            if tracing_on:
                request = tracing.control_request(chain)
                self._emit("request", index, **request)
                started = time.monotonic()
            reply = handle_control(chain, chain.writable_len, self._negotiated(ctx), self.limits, self.sessions)
            if self.faults.active and self._control_fault(ctx, index, chain, reply):
                continue
            if self._pool is None and reply.session_id is not None and self._workers != 0:
                self._start_pool_for_session(reply.session_id)
            if reply.data:
                chain.write(0, reply.data)
            if tracing_on:
                self._trace_control_done(ctx, index, chain, request, reply.status.name,
                                         reply.session_id, len(reply.data), started)
            queue.add_used(chain.head, len(reply.data))
            self._count(index, reply.status, chain.readable_len)
            completed = True
        if completed:
            ctx.signal_used(index)

    # ---- data queues -------------------------------------------------------------------

    def _drain_data(self, ctx: DeviceContext, index: int) -> None:
        queue = ctx.queues[index]
        features = self._negotiated(ctx)
        completed = False
        while queue.in_flight() < queue.size:
            if self.inflight_bytes >= self.max_inflight_bytes:
                self._throttled.add(index)      # poll() comes back once there is room
                self._emit("throttle", index, inflight=self.inflight_bytes, cap=self.max_inflight_bytes)
                break
            if (chain := queue.pop()) is None:
                break
            if chain.writable_len < 1:
                # No room even for the status byte: return the chain so nothing leaks.
                queue.add_used(chain.head, 0)
                self._count(index, Status.ERR, chain.readable_len)
                self._emit("error", index, head=chain.head, reason="no writable byte for the status")
                completed = True
                continue
            if self._trace is not discard:     # int &: no Flag call
                events = self._log
                events.record((events.next_seq(), _monotonic(), "request", NAME, index,
                               tracing.data_request(chain, bool(int(features) & _REVISION_1))))
            try:
                job = parse_data_request(chain, chain.writable_len, features, self.limits, self.sessions)
            except RequestError as err:
                if err.status == Status.NOTSUPP:
                    log.unimplemented(NAME, err.reason)
                else:
                    log.guest_error(NAME, err.reason)
                self._emit("error", index, head=chain.head, reason=err.reason)
                self._complete(ctx, index, chain, err.service, Outcome(err.status))
                completed = True
                continue
            if self.faults.active and (fault := self.faults.match(job.op, index)) is not None:
                self._data_fault(ctx, index, chain, job, fault)
                continue
            where = self._placement(job)
            if where == REFUSE:
                log.unimplemented(NAME, "a public-key operation too costly for the CPU thread, "
                                        "and no worker process can be started to run it")
                self._emit("error", index, head=chain.head, reason="public-key work over the inline budget")
                self._complete(ctx, index, chain, job.service, Outcome(Status.ERR))
                completed = True
            elif where == INLINE:
                self.stats[index].inline += 1
                started = time.monotonic() if self._trace is not discard else 0.0
                self._complete(ctx, index, chain, job.service, execute.run(job), started)
                completed = True
            else:
                self.stats[index].pooled += 1
                self._submit(index, chain, job)
        if completed:
            ctx.signal_used(index)

    def _placement(self, job: Job) -> str:
        """Where a job runs: INLINE (now, on the CPU thread), POOL, or REFUSE.

        Small symmetric jobs run inline, and so do large ones when there is no pool to
        use (workers=0, broken, or no worker started yet: a cold start costs more than
        the job; their size bounds them). A public-key job runs inline only if its
        estimated work is within INLINE_WORK, and then only when there is no started
        pool to take it; a costlier one always goes to the pool, where it waits for a
        worker still starting (with workers=0, one worker is started for it). Only when
        workers cannot be started at all is a costly one refused (ERR): the vCPU never
        stalls on public-key work."""
        pool = self._pool
        if job.service != Service.AKCIPHER:
            if job.size <= self._inline_max:
                return INLINE
            pool = self._wanted()
            if self._workers == 0 or pool is None or pool.broken or not pool.ready:
                return INLINE
            return POOL
        cheap = execute.work(job) <= INLINE_WORK
        if not cheap:
            pool = self._wanted()
        if pool is not None and pool.broken:
            return INLINE if cheap else REFUSE
        if not cheap or (self._workers != 0 and pool is not None and pool.ready):
            return POOL
        return INLINE

    def _wanted(self) -> WorkerPool[Job, Outcome] | None:
        """The pool, started now if the guest's first job for it has come (see start)."""
        if self._pool is None and self._workers != 0:
            return self._start_pool()
        return self._pool

    def _start_pool_for_session(self, session_id: int) -> None:
        """A public-key session whose private operations are over INLINE_WORK is the
        first sign of work for the pool: start the workers while the driver prepares its
        request. Cheaper keys (the kernel's self-tests at boot) never need them."""
        try:
            session = self.sessions.get(session_id, Service.AKCIPHER)
            costly = akcipher.cost(session.params, Op.AKCIPHER_DECRYPT) > INLINE_WORK  # type: ignore[arg-type]
        except RequestError:
            return                                  # not one, or a key that does not load
        if costly:
            self._start_pool()

    def wait_for_workers(self, timeout: float = 10.0) -> bool:
        """Start the workers if they are not, and block until every one has started and
        warmed up (for benchmarks and tests that must exercise the pool, not a worker
        still starting next to it); False if there is no pool or it did not start."""
        deadline = time.monotonic() + timeout
        self._wanted()
        while self._pool is not None and not self._pool.all_ready and not self._pool.broken:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return self._pool is not None and self._pool.all_ready

    def _start_pool(self) -> WorkerPool[Job, Outcome]:
        if self._pool is None:
            # workers=0: one worker, only ever given public-key work too costly inline.
            self._pool = WorkerPool(RUNNER, Outcome(Status.ERR), self._workers or 1,
                                    None if self._fd_waker else self._waker.wake,
                                    time_limit=self.job_time_limit).start()
            self._watch_pool()
        return self._pool

    def _watch_pool(self) -> None:
        """Keep the machine watching exactly the pool's current result pipes."""
        waker, pool = self._fd_waker, self._pool
        if waker is None:
            return
        fds = tuple(pool.result_fds()) if pool is not None else ()
        if fds != self._watched_fds:
            self._watched_fds = fds
            waker.watch(fds)

    def _submit(self, index: int, chain: DescriptorChain, job: Job, fault: Fault | None = None) -> int:
        pool = self._start_pool()
        token = self._next_token
        self._next_token += 1
        memory = job.memory
        self._pending[token] = _Pending(index, chain, job.service, self._epoch, time.monotonic(),
                                        memory, fault)
        self.inflight_bytes += memory
        pool.submit(token, job)
        if self._trace is not discard:
            self._emit("dispatch", index, head=chain.head, token=token, workers=pool.size,
                       backlog=len(self._pending))
        return token

    def _complete(self, ctx: DeviceContext, index: int, chain: DescriptorChain,
                  service: int | None, outcome: Outcome, started: float = 0.0,
                  pooled: bool = False, used_len: int | None = None) -> None:
        """Output at offset 0, status in the last writable byte, then the used entry.

        used.len claims only bytes that were written (split ring, used element rules):
        the output, plus the status byte when it directly follows the output. Nothing
        else is written: Linux hands its caller's own dst pages, which may run past the
        output. AKCIPHER is the exception Linux 6.1 forces: it takes used.len - 1 as the
        result length and the status from the last writable byte, so the status is also
        written right after the result (in the driver's bounce buffer), which puts it
        inside used.len = result + 1 as the spec's layout has it. `used_len` replaces
        used.len (an injected fault)."""
        if outcome.internal:
            log.internal_error(NAME, f"a request on queue {index} failed; the guest gets ERR",
                               outcome.internal)
        last = chain.writable_len - 1
        output = outcome.output
        if len(output) > last:          # parsing bounded it already; never past the status
            output = output[:last]
        if output:
            chain.write(0, output)
        status = _STATUS_BYTE[outcome.status]
        size = len(output)
        if service == Service.AKCIPHER:
            if size < last:
                chain.write(size, status)
            used = size + 1
        else:
            used = size + 1 if size == last else size
        chain.write(last, status)
        if used_len is not None:
            used = used_len
        if self._trace is not discard:          # the status is written: before the used entry
            events, now = self._log, _monotonic()
            events.record((events.next_seq(), now, "complete", NAME, index, (
                tracing.COMPLETE_FIELDS, chain.head, "data", _SERVICE_NAME.get(service, "?"),
                _STATUS_NAME[outcome.status], used,
                round((now - started) * 1e6, 1) if started else None,
                "pool" if pooled else "inline",
                ctx.queues[index].packed_chain(chain.head) or tracing.written(ctx.mem, chain))))
        ctx.queues[index].add_used(chain.head, used)
        self._count(index, outcome.status, chain.readable_len)

    def _trace_control_done(self, ctx: DeviceContext, index: int, chain: DescriptorChain,
                            request: dict, status: str, session: int | None, used: int,
                            started: float) -> None:
        """The control request's completion, and the session it created or destroyed."""
        self._emit("complete", index, head=chain.head, kind="control", status=status,
                   used=used, duration_us=round((time.monotonic() - started) * 1e6, 1),
                   where="inline", written=tracing.written(ctx.mem, chain))
        opcode = request.get("opcode", "")
        if opcode.endswith("_CREATE_SESSION") and status == "OK" and session is not None:
            self._emit("session_create", index, session=session, opcode=opcode,
                       algo=request.get("algo"))
        elif opcode.endswith("_DESTROY_SESSION") and "session" in request:
            self._emit("session_destroy", index, session=request["session"], opcode=opcode,
                       status=status)

    # ---- injected faults (docs/faults.md) -------------------------------------------------

    def _record(self, index: int, head: int, op: int, fault: Fault) -> None:
        """Every injected fault goes to the `-d fault` log and the trace."""
        actions = fault.describe()
        log.fault(NAME, f"queue {index} head {head} {opcode_name(op)}: "
                        + " ".join(f"{k}={v}" for k, v in actions.items())
                        + f" (rule {'; '.join(fault.rules)})")
        self._emit("fault", index, head=head, opcode=opcode_name(op), **actions,
                   rules=list(fault.rules))

    def _data_fault(self, ctx: DeviceContext, index: int, chain: DescriptorChain, job: Job,
                    fault: Fault) -> None:
        """A data request a rule fired on: the work is done (unless a status replaces
        its answer) and the completion goes through `_deliver`."""
        self._record(index, chain.head, job.op, fault)
        if fault.needs_reset:       # the request is never answered: the device stopped
            ctx.needs_reset(f"fault injected on {opcode_name(job.op)}")
            return
        if fault.kill_worker or (fault.status is None and self._placement(job) == POOL):
            self.stats[index].pooled += 1
            token = self._submit(index, chain, job, fault)
            if fault.kill_worker:   # the worker holding this job: it gets ERR
                self._start_pool().kill(token)
            return
        if fault.status is not None:
            outcome = Outcome(fault.status)
        elif self._placement(job) == REFUSE:
            outcome = Outcome(Status.ERR)
        else:
            self.stats[index].inline += 1
            outcome = execute.run(job)
        self._deliver(ctx, index, chain, fault, partial(
            self._complete, ctx, index, chain, job.service, outcome, 0.0, False))

    def _control_fault(self, ctx: DeviceContext, index: int, chain: DescriptorChain,
                       reply: ControlReply) -> bool:
        """A control request a rule fired on (True), or not (False: serve it as usual)."""
        op = int.from_bytes(chain.read(0, 4), "little") if chain.readable_len >= 4 else -1
        fault = self.faults.match(op, index)
        if fault is None:
            return False
        self._record(index, chain.head, op, fault)
        if fault.needs_reset:
            ctx.needs_reset(f"fault injected on {opcode_name(op)}")
            return True
        if fault.kill_worker and self._pool is not None:
            self._pool.kill()
        data, status = reply.data, reply.status
        if fault.status is not None and data:
            status = fault.status
            if reply.session_id is not None and op in CREATE_SESSION_OPS:   # undo the create
                self.sessions.destroy(reply.session_id, CREATE_SESSION_OPS[Op(op)])
            data = data[:8] + status.to_bytes(4, "little") + data[12:] if len(data) >= 12 \
                else status.to_bytes(1, "little") + data[1:]

        def finish(used_len: int | None) -> None:
            if data:
                chain.write(0, data)
            ctx.queues[index].add_used(chain.head, len(data) if used_len is None else used_len)
            self._count(index, status, chain.readable_len)

        self._deliver(ctx, index, chain, fault, finish)
        return True

    def _deliver(self, ctx: DeviceContext, index: int, chain: DescriptorChain, fault: Fault,
                 finish: Callable[[int | None], None]) -> None:
        """Complete a faulted request: `finish(used_len)` writes it and its used entry,
        now or after delay=MS (irq=late delays the interrupt instead); then HW_READY
        and the interrupt as the fault says. Dropped if the driver reset the device or
        stopped the queue in the meantime."""
        epoch = self._epoch

        def now() -> None:
            if epoch != self._epoch or self.ctx is not ctx or not ctx.queues[index].ready:
                self.dropped += 1
                self._emit("dropped", index, head=chain.head, reason="reset or stopped while delayed")
                return
            try:
                finish(fault.used_len)
            except Exception as err:  # noqa: BLE001 - a device never raises into the machine
                self._completion_failed(ctx, index, err)
                return
            if fault.hw_ready is not None:
                self._set_hw_ready(ctx, fault.hw_ready)
            self._interrupt(ctx, index, fault, epoch)

        if fault.delay_ms and fault.irq != "late":
            self._deferred.later(fault.delay_ms / 1000, now)
        else:
            now()

    def _interrupt(self, ctx: DeviceContext, index: int, fault: Fault, epoch: int) -> None:
        def forced() -> None:
            if epoch == self._epoch and self.ctx is ctx:
                ctx.interrupt(index)

        if fault.irq is None:
            ctx.signal_used(index)
        elif fault.irq == "late":
            self._deferred.later((fault.delay_ms or LATE_IRQ_MS) / 1000, forced)
        elif fault.irq == "dup":
            ctx.signal_used(index)
            self._deferred.later(DUP_IRQ_MS / 1000, forced)
        # irq=drop: the used entry is there, the interrupt never comes

    def _set_hw_ready(self, ctx: DeviceContext, ready: bool) -> None:
        """Withdraw (or restore) VIRTIO_CRYPTO_S_HW_READY and tell the driver."""
        config = config_bytes(self.max_dataqueues, ready, self.limits)
        if config != self._config:
            self._config = config
            ctx.config_changed()

    # ---- helpers -----------------------------------------------------------------------

    def _negotiated(self, ctx: DeviceContext) -> int:
        return ctx.driver_features & self._feature_mask

    def _drop(self, queue: int | None, token: int, why: str) -> None:
        """A pooled result whose chain may no longer be answered: nothing of it reaches
        guest memory (the driver may be reusing the buffers); it is counted and traced."""
        self.dropped += 1
        if queue is not None:
            self.stats[queue].dropped += 1
        self._emit("dropped", queue, token=token, reason=why)

    def _count(self, index: int, status: Status, size: int) -> None:
        stats = self.stats[index]
        stats.requests += 1
        stats.bytes_in += size
        stats.statuses[_STATUS_NAME[status]] += 1

    def _emit(self, event: str, queue: int | None, **fields: object) -> None:
        if self._trace is not discard:
            self._log.emit(event, NAME, queue, fields)
