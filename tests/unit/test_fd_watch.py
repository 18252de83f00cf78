"""The run loop's wake-ups: the pipe-backed idle event and the native fd watcher."""
from __future__ import annotations

import os

import pytest

from vmsim.core.nativelib import FdWatch, function_address, native_library
from vmsim.core.wakeup import WakePipe


def test_wake_pipe_is_an_event_that_a_byte_on_its_fd_sets() -> None:
    event = WakePipe()
    try:
        assert not event.wait(0)
        event.set()
        event.set()                       # setting twice is still one event
        assert event.wait(0)
        assert event.clear() is True
        assert not event.wait(0.01)
        assert event.clear() is False     # nothing to empty
        os.write(event.fd, b"\0" * 5000)  # what native code does (more than one read)
        assert event.wait(1.0)
        assert event.clear() is True
        assert event.wait(-1.0) is False  # a deadline already past: no wait, no error
    finally:
        event.close()
    assert event.clear() is False         # closed: nothing, and no fd touched
    event.close()


@pytest.fixture
def watch():
    """A watcher whose 'stop' is the stop hook's request (a harmless C function of the
    right shape), waking a WakePipe; plus a pipe to watch."""
    lib = native_library()
    state = lib.vmsim_stop_new(0)
    wake = WakePipe()
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    fd_watch = FdWatch((function_address(lib.vmsim_stop_request), state), wake.fd)
    yield fd_watch, wake, read_end, write_end
    fd_watch.close()
    lib.vmsim_stop_free(state)
    wake.close()
    os.close(read_end)
    os.close(write_end)


def polled_once(fd_watch: FdWatch) -> None:
    """Return once the watcher has polled its current set and state for a whole round:
    whatever that round fires has then been written to the wake pipe. The first round
    takes up the latest set_fds and rearm, the second polls them (see next_round)."""
    assert fd_watch.next_round() and fd_watch.next_round(), "the watcher thread is stuck"


def test_a_readable_fd_wakes_the_run_loop_until_it_is_read(watch) -> None:
    fd_watch, wake, read_end, write_end = watch
    fd_watch.set_fds([read_end])
    polled_once(fd_watch)
    assert not wake.wait(0)               # nothing to read: no wake-up
    os.write(write_end, b"x")
    assert wake.wait(2.0)                 # readable: woken
    wake.clear()
    assert wake.wait(2.0)                 # not rearmed yet: it keeps retrying
    fd_watch.rearm()
    wake.clear()
    assert wake.wait(2.0)                 # rearmed but still unread: fires again
    os.read(read_end, 16)
    fd_watch.rearm()
    assert fd_watch.next_round()          # rearm taken up: a wake-up under way has landed
    wake.clear()
    assert fd_watch.next_round()          # a whole round polling the emptied fd
    assert not wake.wait(0)               # read and rearmed: quiet


def test_an_emptied_watch_set_is_quiet_and_close_is_idempotent(watch) -> None:
    fd_watch, wake, read_end, write_end = watch
    fd_watch.set_fds([read_end])
    fd_watch.set_fds([])
    assert fd_watch.next_round()          # the thread has taken up the empty set
    os.write(write_end, b"x")
    assert fd_watch.next_round()          # and polled it once the fd was readable
    assert not wake.wait(0)
    fd_watch.close()
    fd_watch.close()
    fd_watch.set_fds([read_end])          # after close: ignored, no crash
    assert not fd_watch.next_round()      # no thread left to wait for


def test_more_descriptors_than_the_watcher_holds_is_a_clear_error(watch) -> None:
    from vmsim.errors import VmsimError

    fd_watch, _, read_end, _ = watch
    with pytest.raises(VmsimError, match="cannot watch 257"):
        fd_watch.set_fds([read_end] * 257)
