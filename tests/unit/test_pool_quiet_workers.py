"""A worker that fails says so to the pool, whose log gets the traceback; the user's
terminal (the worker's inherited stderr, before) gets nothing."""
from __future__ import annotations

import time

from vmsim.devices.virtio.crypto import pool as pool_module
from vmsim.devices.virtio.crypto.pool import WorkerPool

CRASH = "crash"


def explode(job: str) -> str:
    raise RuntimeError(f"the runner failed on {job!r}")


def test_a_failing_worker_reports_to_the_log_and_prints_nothing(capfd, monkeypatch) -> None:
    logged: list[tuple[str, str, str]] = []
    monkeypatch.setattr(pool_module.log, "internal_error",
                        lambda source, what, details="": logged.append((source, what, details)))
    pool = WorkerPool("tests.unit.test_pool_quiet_workers:explode", CRASH, workers=1,
                      on_result=None).start()
    try:
        pool.submit(7, "job-7")
        deadline = time.monotonic() + 30
        results: list = []
        while not results:
            assert time.monotonic() < deadline, "the failed job never completed"
            results = pool.take_results()
            time.sleep(0.01)
    finally:
        pool.close()
    assert results == [(7, CRASH)]
    (_, what, details), = logged[:1]
    assert "exit status 70" in what
    assert "RuntimeError: the runner failed on 'job-7'" in details
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out
