"""The run loop's wake-ups: the pipe-backed idle event and the native fd watcher."""
from __future__ import annotations

import os
import time

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
        event.clear()
        assert not event.wait(0.01)
        os.write(event.fd, b"\0")         # what native code does
        assert event.wait(1.0)
        event.clear()
        assert event.wait(-1.0) is False  # a deadline already past: no wait, no error
    finally:
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


def test_a_readable_fd_wakes_the_run_loop_until_it_is_read(watch) -> None:
    fd_watch, wake, read_end, write_end = watch
    fd_watch.set_fds([read_end])
    assert not wake.wait(0.05)            # nothing to read: no wake-up
    os.write(write_end, b"x")
    assert wake.wait(2.0)                 # readable: woken
    wake.clear()
    assert wake.wait(2.0)                 # not rearmed yet: it keeps retrying
    fd_watch.rearm()
    wake.clear()
    assert wake.wait(2.0)                 # rearmed but still unread: fires again
    os.read(read_end, 16)
    fd_watch.rearm()
    time.sleep(0.05)                      # let a wake-up already under way land first
    wake.clear()
    assert not wake.wait(0.05)            # read and rearmed: quiet


def test_an_emptied_watch_set_is_quiet_and_close_is_idempotent(watch) -> None:
    fd_watch, wake, read_end, write_end = watch
    fd_watch.set_fds([read_end])
    fd_watch.set_fds([])
    time.sleep(0.05)                      # the thread takes up a new set asynchronously
    os.write(write_end, b"x")
    assert not wake.wait(0.05)
    fd_watch.close()
    fd_watch.close()
    fd_watch.set_fds([read_end])          # after close: ignored, no crash


def test_more_descriptors_than_the_watcher_holds_is_a_clear_error(watch) -> None:
    from vmsim.errors import VmsimError

    fd_watch, _, read_end, _ = watch
    with pytest.raises(VmsimError, match="cannot watch 257"):
        fd_watch.set_fds([read_end] * 257)
