"""A pool of worker processes that run jobs and hand back results out of order.

Each worker has its own task pipe and result pipe, so the pool always knows which jobs
a worker holds and in what order it runs them. Three roles:
- `submit()` (the CPU thread) never waits for a busy worker: a job goes straight down
  the pipe of an idle one (which is already waiting to read it, so the write lasts
  only as long as the copy), otherwise to a dispatcher thread that sends it to the
  least-loaded worker when it can;
- collecting receives results and notices dead workers (their result pipe hits EOF).
  With an `on_result` callback a collector thread does it and calls back after each
  batch. Without one, the owner watches `result_fds()` itself (the machine's native
  fd watcher, which needs no GIL) and `take_results()` collects on the CPU thread:
  no Python thread stands between a worker's answer and the guest;
- `take_results()` (the CPU thread again) hands over what is ready.
A worker says READY when its imports are done; `ready` tells whether any has, so a
caller can avoid queueing work behind a process that is still starting.

A worker that dies mid-job is replaced: the job it was running completes with
`crash_result`, the jobs queued behind it go to the dispatcher again, nothing else is
lost. `cancel_all()` forgets every job at once (the device's reset): the queued ones
are dropped, workers running one are killed and replaced, and no result for any of
them comes back. With a `time_limit`, a timer thread kills a worker whose job runs
longer: that job gets `crash_result` and the jobs behind it go to other workers, as
for any death. Workers are plain subprocesses (`python -m vmsim.devices.virtio.crypto.worker`): no fork
of a threaded process, no re-import of the parent's __main__. No worker outlives the
pool, or vmsim, whatever ends it: `close()` kills the busy ones (their answers are no
longer wanted) and stops the rest; a worker exits when its task pipe closes, and the
kernel kills it when the thread that started it ends (PR_SET_PDEATHSIG, even after
kill -9 of vmsim). Workers print nothing: their stdout and stderr are /dev/null, and a
worker's own failure comes back as a CRASHED message whose traceback goes to the log.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Generic, TypeVar

from vmsim import log

J = TypeVar("J")
R = TypeVar("R")

_MAX_FAILED_STARTS = 3
READY = "ready"   # a worker's first message: its imports are done
CRASHED = "crashed"  # (CRASHED, traceback text): a worker's last message, on a bug of its own


def _end_reason(worker: "_Worker") -> str:
    if worker.cancelled:
        return "cancelled"
    if worker.timed_out:
        return "timed out"
    return "killed" if worker.killed else "crashed"


class _Worker:
    """One worker subprocess and its two pipes. The result pipe doubles as the death
    sentinel: only the child holds its write end, so EOF means the child is gone."""

    def __init__(self, runner: str) -> None:
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vmsim.devices.virtio.crypto.worker", runner, str(task_read),
             str(result_write), str(os.getpid())],
            pass_fds=(task_read, result_write), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)   # the guest's terminal
        os.close(task_read)
        os.close(result_write)
        self.tasks = Connection(task_write, readable=False)
        self.results = Connection(result_read, writable=False)
        self.jobs: deque[tuple[int, Any]] = deque()   # sent, not yet answered, in run order
        self.answered = 0
        self.ready = False
        self.crash_report = ""   # the traceback of the worker's own failure, if it sent one
        self.cancelled = False   # killed by cancel_all(): its death is expected, its jobs gone
        self.timed_out = False   # killed by the timer: its job ran past the time limit
        self.killed = False      # killed on purpose by kill() (an injected fault)
        self.started: float | None = None   # when its first job began running, if it is

    @property
    def doomed(self) -> bool:
        """Killed on purpose and about to be replaced: it takes no more work."""
        return self.cancelled or self.timed_out or self.killed

    def stop(self, timeout: float) -> None:
        self.ask_to_stop()
        self.reap(time.monotonic() + timeout)

    def ask_to_stop(self) -> None:
        """Send the None that ends the worker's loop (call only when it holds no jobs:
        then its task pipe is empty and this cannot block)."""
        try:
            self.tasks.send(None)
        except (OSError, ValueError):
            pass

    def reap(self, deadline: float) -> None:
        """Wait for the process until `deadline`, kill it if it is still there, and close
        the pipes."""
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for conn in (self.tasks, self.results):
            conn.close()


class WorkerPool(Generic[J, R]):
    """Runs `runner(job)` in worker processes; results come back by token, in any order."""

    def __init__(self, runner: str, crash_result: R, workers: int | None = None,
                 on_result: Callable[[], None] | None = lambda: None,
                 time_limit: float | None = None) -> None:
        """`runner` names the job function as 'module:function' (importable by workers);
        `on_result=None`: no collector thread, the owner collects (see the module doc);
        `time_limit`: seconds a job may run before its worker is killed (None: forever)."""
        self._runner = runner
        self._crash_result = crash_result
        self._on_result = on_result or (lambda: None)
        self._self_collecting = on_result is None
        self._lock = threading.Lock()
        self._size = workers or os.cpu_count() or 1
        self._workers: list[_Worker] = []
        # Jobs no worker was free for, oldest first; guarded by _lock, which `_queued`
        # (a condition on it) uses to wake the dispatcher.
        self._outbox: deque[tuple[int, J]] = deque()
        self._queued = threading.Condition(self._lock)
        self._time_limit = time_limit
        self._timing = threading.Condition(self._lock)   # a job started: the timer looks again
        self.timeouts = 0
        self._results: deque[tuple[int, R]] = deque()
        self._wake_recv: Connection | None = None
        self._wake_send: Connection | None = None
        self._started = False
        self._closed = False
        self._failed_starts = 0
        self.crashes = 0
        # Each worker that ended and why, until the owner takes them (restarts()): the
        # collector thread notes them, the CPU thread reports them to observers.
        self._restarts: deque[dict[str, object]] = deque(maxlen=1024)
        self._dispatcher = threading.Thread(target=self._dispatch, name="crypto-dispatch", daemon=True)
        self._collector = threading.Thread(target=self._collect_loop, name="crypto-collect", daemon=True)
        self._timer = threading.Thread(target=self._watch_time, name="crypto-timer", daemon=True)

    def start(self) -> WorkerPool[J, R]:
        """Start the worker processes and the pool's threads (once)."""
        with self._lock:
            if self._started or self._closed:
                return self
            self._started = True
            self._workers = [_Worker(self._runner) for _ in range(self._size)]
        wake_read, wake_write = os.pipe()
        self._wake_recv = Connection(wake_read, writable=False)
        self._wake_send = Connection(wake_write, readable=False)
        self._dispatcher.start()
        if not self._self_collecting:
            self._collector.start()
        if self._time_limit is not None:
            self._timer.start()
        return self

    def __enter__(self) -> WorkerPool[J, R]:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        return self._size if not self._started else len(self._workers)

    @property
    def ready(self) -> bool:
        """True once some worker has started and can take work at once."""
        if self._self_collecting and not any(w.ready for w in self._workers):
            self._collect_available()
        return any(w.ready for w in self._workers)

    @property
    def all_ready(self) -> bool:
        """True once every worker has started."""
        if self._self_collecting:
            self._collect_available()
        return bool(self._workers) and all(w.ready for w in self._workers)

    def result_fds(self) -> list[int]:
        """The pipes to watch when there is no collector thread: readable means a
        result, a READY, or a dead worker, and `take_results()` should run."""
        with self._lock:
            return [w.results.fileno() for w in self._workers]

    @property
    def broken(self) -> bool:
        """True once workers kept dying before answering anything (they cannot start)."""
        return not self._workers

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers]

    def submit(self, token: int, job: J) -> None:
        """Start a job (CPU thread); its result appears in take_results() later.

        Straight to an idle worker when there is one (one thread hop fewer, which is
        what a driver polling for the answer waits on), else through the dispatcher."""
        item = (token, job)
        with self._lock:
            # A started worker first: one still warming up would hold the job for tens
            # of milliseconds.
            idle = (next((w for w in self._workers if not w.jobs and w.ready), None)
                    or next((w for w in self._workers if not w.jobs and not w.doomed), None))
            if idle is not None and not self._closed:
                idle.jobs.append(item)
                self._mark_start(idle)
            elif idle is None:
                self._outbox.append(item)
                self._queued.notify()
        if idle is not None:
            self._send(idle, item)

    def queued(self) -> int:
        """Jobs waiting for a worker (not yet sent to one)."""
        with self._lock:
            return len(self._outbox)

    def cancel_all(self) -> int:
        """Forget every job (CPU thread): the queued ones are dropped, each worker
        running or holding one is killed (and replaced, without its jobs), and results
        not yet taken are discarded. No result for any of them comes back. Returns how
        many jobs were dropped."""
        with self._lock:
            dropped = len(self._outbox)
            self._outbox.clear()
            busy = [w for w in self._workers if w.jobs]
            for worker in busy:
                dropped += len(worker.jobs)
                worker.jobs.clear()
                worker.started = None
                worker.cancelled = True
                worker.ready = False      # takes no more work; its replacement will
                worker.process.kill()     # also ends a dispatcher send blocked on its pipe
            self._results.clear()
        return dropped

    def kill(self, token: int | None = None) -> bool:
        """Kill the worker holding job `token` (any live worker if None, or if no worker
        holds it yet), as a crash would: its job gets `crash_result`, the jobs behind
        it go to other workers, a new worker takes its place. For fault injection; the
        death is expected, so it is not logged as vmsim's error. False if no worker."""
        with self._lock:
            live = [w for w in self._workers if not w.doomed]
            holder = next((w for w in live if any(t == token for t, _ in w.jobs)), None)
            worker = holder or (live[0] if live else None)
            if worker is None:
                return False
            worker.killed = True
            worker.ready = False
            worker.started = None
            worker.process.kill()
            return True

    def restarts(self) -> list[dict[str, object]]:
        """Workers that ended since the last call: pid, reason (crashed, timed out,
        killed, cancelled), the jobs it held, and its replacement's pid (None once the
        pool gave up replacing)."""
        taken = []
        while self._restarts:
            taken.append(self._restarts.popleft())
        return taken

    def take_results(self) -> list[tuple[int, R]]:
        """Every result that arrived since the last call (CPU thread)."""
        if self._self_collecting:
            self._collect_available()
        out = []
        while self._results:
            out.append(self._results.popleft())
        return out

    # ---- dispatcher thread -----------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._outbox and not self._closed:
                    self._queued.wait()
                if self._closed:
                    return
                item = self._outbox.popleft()
                usable = [w for w in self._workers if not w.doomed]
                if self._workers and not usable:        # all being replaced: wait for one
                    self._outbox.appendleft(item)
                    self._queued.wait()
                    continue
                if not self._workers:
                    self._results.append((item[0], self._crash_result))
                    self._on_result()
                    continue
                worker = min(usable, key=lambda w: (len(w.jobs), not w.ready))
                worker.jobs.append(item)
                if len(worker.jobs) == 1:
                    self._mark_start(worker)
            self._send(worker, item)

    def _send(self, worker: _Worker, item: tuple[int, J]) -> None:
        """Write a job the worker's `jobs` already lists down its task pipe."""
        try:
            worker.tasks.send(item)
        except (OSError, ValueError):
            pass  # the worker died; the collector requeues what it held
        except Exception:  # noqa: BLE001 - e.g. a job that cannot be pickled
            with self._lock:
                if item in worker.jobs:
                    worker.jobs.remove(item)
            self._results.append((item[0], self._crash_result))
            self._on_result()

    # ---- timer thread ----------------------------------------------------------------

    def _mark_start(self, worker: _Worker) -> None:
        """Note when `worker`'s first job began to run (now, if it has one and is up;
        a worker still starting begins at READY). Call with the lock held."""
        worker.started = time.monotonic() if worker.jobs and worker.ready else None
        self._timing.notify()

    def _watch_time(self) -> None:
        """Kill each worker whose job has run longer than the time limit. Its death is
        then handled like any other (`_replace`): the job gets `crash_result`, the jobs
        queued behind it go to other workers, a new worker takes its place."""
        limit = self._time_limit
        assert limit is not None
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                for worker in self._workers:
                    if worker.started is not None and now - worker.started >= limit:
                        worker.started = None
                        worker.timed_out = True
                        worker.ready = False
                        worker.process.kill()
                starts = [w.started for w in self._workers if w.started is not None]
                self._timing.wait(min(starts) + limit - now if starts else None)

    # ---- collector thread ------------------------------------------------------------

    def _collect_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                watch = {w.results: w for w in self._workers}
            ready = wait([*watch, self._wake_recv])
            if self._wake_recv in ready:
                return
            if self._collect([watch[conn] for conn in ready]):  # type: ignore[index]
                self._on_result()

    def _collect_available(self) -> None:
        """Collect on the owner's thread, without blocking."""
        with self._lock:
            if self._closed:
                return
            workers = list(self._workers)
        self._collect([w for w in workers if w.results.poll()])

    def _collect(self, workers: list[_Worker]) -> bool:
        """Receive from workers whose pipe is readable; True if a result was delivered."""
        delivered = False
        for worker in workers:
            alive, got = self._receive(worker)
            delivered |= got
            if not alive:
                delivered |= self._replace(worker)
        return delivered

    def _receive(self, worker: _Worker) -> tuple[bool, bool]:
        """Drain a worker's results: (still alive, delivered anything)."""
        got = False
        try:
            while worker.results.poll():
                message = worker.results.recv()
                if message == READY:
                    with self._lock:
                        worker.ready = not worker.doomed
                        self._mark_start(worker)
                    continue
                if message[0] == CRASHED:
                    worker.crash_report = message[1]
                    continue
                token, result = message
                with self._lock:
                    if worker.jobs and worker.jobs[0][0] == token:
                        worker.jobs.popleft()
                    worker.answered += 1
                    self._mark_start(worker)      # the next job, if any, runs from now
                self._results.append((token, result))
                got = True
        except (EOFError, OSError):
            return False, got
        return True, got

    def _replace(self, dead: _Worker) -> bool:
        """A worker died: fail the job it was running, requeue the rest, start a new one.
        One that cancel_all() killed holds no jobs any more and is simply replaced."""
        with self._lock:
            if self._closed or dead not in self._workers:
                return False
            held = list(dead.jobs)
            dead.jobs.clear()
            if dead.timed_out:
                self.timeouts += 1
            elif not dead.cancelled and not dead.killed:
                self.crashes += 1
                # A worker that dies before answering anything may be unable to start at
                # all: after a few in a row, stop replacing rather than spin.
                self._failed_starts = 0 if dead.answered else self._failed_starts + 1
            replacement = None
            if self._failed_starts >= _MAX_FAILED_STARTS:
                self._workers.remove(dead)
            else:
                replacement = _Worker(self._runner)
                self._workers[self._workers.index(dead)] = replacement
            self._restarts.append({
                "pid": dead.process.pid, "reason": _end_reason(dead), "jobs": len(held),
                "new_pid": replacement.process.pid if replacement else None})
            if dead.cancelled:            # jobs it was given since: to another worker
                self._outbox.extend(held)
            self._queued.notify()         # the dispatcher may be waiting for a worker
        dead.stop(timeout=1.0)
        if dead.cancelled:
            return False
        if dead.timed_out:            # the guest's doing (a costly request), not vmsim's
            log.guest_error("worker pool", f"a job ran past its {self._time_limit:g} s limit; it "
                                           "gets ERR and a new worker takes its place")
        elif not dead.killed:         # (a kill() is a fault rule's doing, logged by the device)
            log.internal_error("worker pool", f"worker process {dead.process.pid} ended "
                               f"(exit status {dead.process.returncode}) holding {len(held)} job(s); "
                               "its job gets ERR and a new worker takes its place",
                               dead.crash_report)
        with self._lock:
            if held:
                self._results.append((held[0][0], self._crash_result))
            self._outbox.extend(held[1:])
            self._queued.notify()
        return bool(held)

    # ---- shutdown --------------------------------------------------------------------

    def close(self, timeout: float = 0.5) -> None:
        """Stop the threads and every worker; no process outlives this call.

        A worker holding jobs is killed at once: their answers are no longer wanted, and
        one job can take minutes (a raw RSA operation on a huge key). So is one still
        starting, which would read the request to stop only once its imports are done
        (a machine that powers off soon after its first public-key request waited for
        that). Idle ones get a None and `timeout` seconds, all together, to exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True           # from here on no worker is given a job
            started = self._started
            workers = list(self._workers)
            busy = [w for w in workers if w.jobs or not w.ready]
        if not started:
            return
        for worker in busy:
            worker.process.kill()         # also ends a dispatcher send blocked on its pipe
        with self._lock:
            self._outbox.clear()
            self._queued.notify_all()     # the dispatcher sees _closed and ends
            self._timing.notify_all()     # and so does the timer
        assert self._wake_send is not None and self._wake_recv is not None
        self._wake_send.send_bytes(b"x")
        self._dispatcher.join(timeout)
        for thread in (self._collector, self._timer):
            if thread.is_alive():
                thread.join(timeout)
        deadline = time.monotonic() + timeout
        for worker in workers:
            if worker not in busy:
                worker.ask_to_stop()
        for worker in workers:
            worker.reap(deadline)
        self._wake_recv.close()
        self._wake_send.close()
