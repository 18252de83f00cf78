"""Guest time: the timebase conversion, the SBI timer's deadline, and the watchdog that
gets the CPU thread's attention when the deadline passes.

Conversions run against a clock whose host time the test sets. The watchdog runs its
real thread; the tests wait for its callbacks on Events with generous timeouts and
never assert how long anything took.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from vmsim.core import clock as clock_module
from vmsim.core.clock import NEVER, GuestClock, SbiTimer, Watchdog

GENEROUS = 10.0          # seconds; only a broken watchdog ever waits this long


class HostTime:
    """Stands in for the `time` module inside vmsim.core.clock: monotonic_ns is ours."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def monotonic_ns(self) -> int:
        return self.ns


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> HostTime:
    fake = HostTime(5_000_000_000)
    monkeypatch.setattr(clock_module, "time", SimpleNamespace(monotonic_ns=fake.monotonic_ns))
    return fake


# -- GuestClock ---------------------------------------------------------------------

def test_ticks_are_host_nanoseconds_at_the_timebase(host: HostTime) -> None:
    assert GuestClock().ticks() == 50_000_000                 # 5 s at 10 MHz
    assert GuestClock(timebase_hz=1_000_000).ticks() == 5_000_000
    host.ns += 99                                             # under one 10 MHz tick
    assert GuestClock().ticks() == 50_000_000
    host.ns += 1
    assert GuestClock().ticks() == 50_000_001


def test_seconds_until_a_tick_is_signed(host: HostTime) -> None:
    clock = GuestClock()
    now = clock.ticks()
    assert clock.seconds_until(now + 25_000_000) == pytest.approx(2.5)
    assert clock.seconds_until(now) == 0
    assert clock.seconds_until(now - 10_000_000) == pytest.approx(-1.0)


def test_the_real_clock_follows_the_host_monotonic_clock() -> None:
    clock = GuestClock()
    first = clock.ticks()
    assert clock.ticks() >= first


# -- SbiTimer -----------------------------------------------------------------------

def test_a_fresh_timer_has_no_deadline(host: HostTime) -> None:
    timer = SbiTimer(GuestClock())
    assert timer.deadline == NEVER
    assert not timer.due() and timer.seconds_left() is None


@pytest.mark.parametrize("hz", [10_000_000, 62_500_000, 24_000_000, 3])
def test_due_agrees_with_the_tick_count_to_the_nanosecond(host: HostTime, hz: int) -> None:
    """due() compares host nanoseconds with a bound computed once per deadline: it must
    turn true at exactly the nanosecond ticks() reaches the deadline, at any timebase
    (62.5 MHz is the arm64 board's, 24 MHz one where a tick is not whole nanoseconds)."""
    clock = GuestClock(hz)
    timer = SbiTimer(clock)
    for ahead in (1, 7, 1000):
        timer.set(clock.ticks() + ahead)
        while clock.ticks() < timer.deadline:
            assert not timer.due()
            host.ns += 1 if hz > 1000 else 1_000_000
        assert timer.due()
        host.ns -= 1
        assert timer.due() == (clock.ticks() >= timer.deadline)


def test_a_deadline_is_due_from_its_tick_on(host: HostTime) -> None:
    clock = GuestClock()
    timer = SbiTimer(clock)
    timer.set(clock.ticks() + 10)
    assert not timer.due()
    assert timer.seconds_left() == pytest.approx(10 / clock.timebase_hz)
    host.ns += 900                                            # 9 ticks
    assert not timer.due()
    host.ns += 100
    assert timer.due() and timer.seconds_left() == 0
    host.ns += 10_000_000_000
    assert timer.due() and timer.seconds_left() == pytest.approx(-10.0, abs=1e-6)


def test_setting_a_deadline_rearms_it_and_tells_the_watcher(host: HostTime) -> None:
    timer = SbiTimer(GuestClock())
    changes: list[int] = []
    timer.on_change = lambda: changes.append(timer.deadline)
    timer.fired = True
    timer.set(123)
    assert timer.fired is False and changes == [123]
    timer.set(-1)                                # the guest's "never": all 64 bits set
    assert timer.deadline == NEVER and not timer.due() and timer.seconds_left() is None
    timer.set(1 << 64 | 7)                       # a register holds 64 bits
    assert timer.deadline == 7 and changes == [123, NEVER, 7]


# -- Watchdog -----------------------------------------------------------------------

class Interrupts:
    """Counts the watchdog's interrupt() calls; `reached(n)` is set at the n-th."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self._waiters: dict[int, threading.Event] = {}

    def __call__(self) -> None:
        with self._lock:
            self.count += 1
            for n, event in self._waiters.items():
                if self.count >= n:
                    event.set()

    def reached(self, n: int) -> threading.Event:
        with self._lock:
            event = self._waiters.setdefault(n, threading.Event())
            if self.count >= n:
                event.set()
            return event


@pytest.fixture
def watched():
    """A real clock and timer, and a Watchdog wired to them as the machine wires it."""
    timer = SbiTimer(GuestClock())
    interrupts = Interrupts()
    watchdog = Watchdog(timer, interrupts)
    timer.on_change = watchdog.deadline_changed
    yield timer, interrupts, watchdog
    watchdog.close()


def test_with_no_deadline_the_watchdog_sleeps_until_told(watched) -> None:
    timer, interrupts, watchdog = watched
    assert watchdog._wait_time() is None and not watchdog.pending


def test_the_watchdog_interrupts_once_the_deadline_passes(watched) -> None:
    timer, interrupts, watchdog = watched
    timer.set(timer.clock.ticks() + timer.clock.timebase_hz // 20)    # 50 ms from now
    assert interrupts.reached(1).wait(GENEROUS)
    assert timer.due() and watchdog.pending


def test_a_deadline_moved_closer_is_taken_up_at_once(watched) -> None:
    """The thread is asleep until a far deadline; a nearer one must wake it."""
    timer, interrupts, watchdog = watched
    timer.set(timer.clock.ticks() + 3600 * timer.clock.timebase_hz)
    assert watchdog._wait_time() > 3000
    timer.set(timer.clock.ticks())
    assert interrupts.reached(1).wait(GENEROUS)


def test_only_a_nearer_deadline_wakes_the_sleeping_watchdog(watched) -> None:
    """A later deadline waits for the thread's own wake-up; an earlier one, or a
    deadline after one that fired, wakes it at once."""
    timer, interrupts, watchdog = watched
    notified = []
    real_notify = watchdog._cond.notify
    watchdog._cond.notify = lambda *a: (notified.append(timer.deadline), real_notify(*a))
    hour = 3600 * timer.clock.timebase_hz
    assert _asleep_for(watchdog, NEVER)
    timer.set(timer.clock.ticks() + hour)
    assert notified == [timer.deadline]               # it slept with no deadline
    assert _asleep_for(watchdog, timer.deadline)
    timer.set(timer.deadline + hour)                   # later: no wake
    timer.set(NEVER)
    assert len(notified) == 1
    timer.set(timer.clock.ticks() + hour // 2)         # earlier than its wake-up
    assert len(notified) == 2
    assert _asleep_for(watchdog, timer.deadline)
    timer.set(timer.clock.ticks())
    assert interrupts.reached(1).wait(GENEROUS) and len(notified) == 3


def _asleep_for(watchdog: Watchdog, deadline: int) -> bool:
    """Whether the thread goes to sleep until about `deadline` (NEVER: until told),
    within a bounded wait."""
    clock = watchdog._timer.clock
    end = time.monotonic() + GENEROUS
    while time.monotonic() < end:
        with watchdog._cond:
            asleep = watchdog._asleep_until
        if deadline == NEVER and asleep == clock_module.NEVER_NS:
            return True
        if deadline != NEVER and asleep and abs(
                asleep - time.monotonic_ns() - clock.seconds_until(deadline) * 1e9) < 1e9:
            return True
        time.sleep(0.001)
    return False


def test_the_watchdog_retries_until_acknowledged(watched) -> None:
    """A stop request can be dropped, so it repeats; the run loop's acknowledge() with
    the timer marked fired ends it."""
    timer, interrupts, watchdog = watched
    timer.set(timer.clock.ticks())
    assert interrupts.reached(3).wait(GENEROUS)
    timer.fired = True                           # the machine raised STIP for it
    watchdog.acknowledge()
    assert not watchdog.pending and watchdog._wait_time() is None


def test_wake_interrupts_at_once_and_keeps_retrying(watched) -> None:
    timer, interrupts, watchdog = watched
    watchdog.wake()
    assert interrupts.count >= 1                 # from the caller's thread, before returning
    assert interrupts.reached(interrupts.count + 2).wait(GENEROUS)
    watchdog.acknowledge()
    assert watchdog._wait_time() is None


def test_close_joins_the_thread_even_while_it_retries() -> None:
    timer = SbiTimer(GuestClock())
    interrupts = Interrupts()
    watchdog = Watchdog(timer, interrupts)
    watchdog.wake()
    assert interrupts.reached(2).wait(GENEROUS)
    watchdog.close()
    assert not watchdog._thread.is_alive()
    after = interrupts.count
    watchdog.deadline_changed()                  # harmless once closed
    assert interrupts.count == after             # a joined thread calls nothing
