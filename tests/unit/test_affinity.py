"""CoreSplit: the CPU thread gets a core of its own, every other thread and child process
of ours the remaining ones, and release gives every thread its cores back.

The split is real: each test reads the masks with os.sched_getaffinity on the thread
ids in /proc/self/task. The CPU thread is a thread of the test's own, and a fixture
puts every thread's original mask back afterwards, so pytest's threads are unharmed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Callable, TypeVar

import pytest

from tests.support.guest import missing
from vmsim.core.affinity import CoreSplit

T = TypeVar("T")
GENEROUS = 10.0          # seconds for the splitter's refresh to reach a newcomer


def thread_ids() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/task")}


def on_a_new_thread(body: Callable[[], T]) -> T:
    """Run `body` on a thread of its own (the CPU thread); return or raise what it did."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = body()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, name="test-cpu-thread")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def wait_for_mask(task: int, cpus: set[int]) -> bool:
    """Until the splitter's thread has given `task` this mask, or GENEROUS passes."""
    deadline = time.monotonic() + GENEROUS
    while os.sched_getaffinity(task) != cpus:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def allowed() -> set[int]:
    """The CPUs this process may use; every thread's mask is restored afterwards."""
    before = {tid: os.sched_getaffinity(tid) for tid in thread_ids()}
    yield set(os.sched_getaffinity(0))
    for tid, cpus in before.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass                            # that thread has ended


def test_the_cpu_thread_gets_one_core_and_everything_else_the_others(allowed) -> None:
    if len(allowed) < 2:
        missing(f"CoreSplit needs a host with 2 or more usable CPUs; this one allows {allowed}")
    cpu_core = {max(allowed)}
    others = allowed - cpu_core
    main_thread = threading.get_native_id()

    def body() -> dict[str, object]:
        me = threading.get_native_id()
        split = CoreSplit()
        split.apply()
        try:
            seen: dict[str, object] = {"cpu": os.sched_getaffinity(me),
                                       "main": os.sched_getaffinity(main_thread)}
            # Started by the CPU thread after apply(): both inherit its single core, and
            # the splitter's own thread must move them away.
            stop = threading.Event()
            late = threading.Thread(target=stop.wait, name="late-thread")
            late.start()
            child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                     stdin=subprocess.PIPE)
            try:
                seen["late moved"] = wait_for_mask(late.native_id, others)
                seen["child moved"] = wait_for_mask(child.pid, others)
            finally:
                stop.set()
                late.join()
                child.communicate(timeout=GENEROUS)
            seen["cpu after"] = os.sched_getaffinity(me)
        finally:
            split.release()
        seen["released"] = os.sched_getaffinity(me)
        seen["main released"] = os.sched_getaffinity(main_thread)
        seen["splitter left"] = [t.name for t in threading.enumerate() if t.name == "vmsim-cores"]
        return seen

    seen = on_a_new_thread(body)
    assert seen["cpu"] == cpu_core and seen["main"] == others
    assert seen["late moved"] and seen["child moved"]
    assert seen["cpu after"] == cpu_core                 # the splitter never moves it
    assert seen["released"] == allowed and seen["splitter left"] == []
    assert seen["main released"] == allowed              # the whole process, as it was


def test_with_one_allowed_cpu_the_split_does_nothing(allowed) -> None:
    only = {min(allowed)}
    main_thread = threading.get_native_id()
    main_before = os.sched_getaffinity(main_thread)

    def body() -> tuple[set[int], set[int], list[str]]:
        os.sched_setaffinity(0, only)                    # this thread alone
        split = CoreSplit()
        split.apply()
        try:
            splitters = [t.name for t in threading.enumerate() if t.name == "vmsim-cores"]
            return os.sched_getaffinity(0), os.sched_getaffinity(main_thread), splitters
        finally:
            split.release()

    mine, main_after, splitters = on_a_new_thread(body)
    assert mine == only and main_after == main_before and splitters == []
