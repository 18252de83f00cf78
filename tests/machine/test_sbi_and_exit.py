"""The SBI firmware as a guest sees it, and every way a run ends."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from vmsim.errors import GuestError

SBI_BASE, SBI_SRST, SBI_DBCN, SBI_HSM = 0x10, 0x53525354, 0x4442434E, 0x48534D
SBI_ERR_NOT_SUPPORTED = -2


@pytest.mark.parametrize("reason, status", [(0, 0), (1, 1)])
def test_sbi_system_reset_shutdown_ends_the_run(boot, reason: int, status: int) -> None:
    run = boot(rf"""
        li a0, 0                  # shutdown
        li a1, {reason}           # NONE or SYSTEM_FAILURE
        sbi {SBI_SRST}, 0
        exit 99                   # not reached
    """)
    assert run.status == status


def test_power_device_failure_code_is_the_exit_status(boot) -> None:
    assert boot("exit 42\n").status == 42


def test_reset_request_stops_with_status_0(boot, capsys) -> None:
    run = boot(r"""
        li t0, POWER
        li t1, 0x7777
        sw t1, 0(t0)
    1:  j 1b
    """)
    assert run.status == 0
    assert "reset" in capsys.readouterr().err


def test_unknown_sbi_call_returns_not_supported(boot) -> None:
    run = boot(rf"""
        li a0, 5
        li a1, 7
        sbi 0x0abcdef1, 3
        fail_unless_eq a0, {SBI_ERR_NOT_SUPPORTED}, 2
        sbi {SBI_BASE}, 99        # unknown function of a known extension
        fail_unless_eq a0, {SBI_ERR_NOT_SUPPORTED}, 3
        li a0, {SBI_HSM}
        sbi {SBI_BASE}, 3         # probe_extension(HSM)
        fail_unless_eq a0, 0, 4
        fail_unless_eq a1, 1, 5
        li a0, 0x0abcdef1
        sbi {SBI_BASE}, 3         # probe_extension(unknown)
        fail_unless_eq a1, 0, 6
        sbi {SBI_BASE}, 0         # spec version 2.0
        fail_unless_eq a1, 0x2000000, 7
        exit 0
    """)
    assert run.status == 0


def test_console_calls_reach_the_output(boot) -> None:
    run = boot(rf"""
        li a0, 'A'
        sbi 1, 0                  # legacy putchar
        sbi 2, 0                  # legacy getchar: nothing typed
        fail_unless_eq a0, -1, 2
        li a0, 5
        la a1, message
        li a2, 0
        sbi {SBI_DBCN}, 0         # console_write(5, message)
        fail_unless_eq a0, 0, 3
        fail_unless_eq a1, 5, 4
        li a0, '!'
        sbi {SBI_DBCN}, 2         # console_write_byte
        li a0, 8
        li a1, 0x1000             # not RAM
        li a2, 0
        sbi {SBI_DBCN}, 0
        fail_unless_eq a0, -3, 5  # INVALID_PARAM
        exit 0
    message: .ascii "hello"
    """)
    assert run.status == 0
    assert run.output == b"Ahello!"


def test_kernel_panic_on_the_console_is_a_guest_death(boot) -> None:
    with pytest.raises(GuestError) as caught:
        boot(r"""
            la s1, message
        1:  lbu a0, 0(s1)
            beqz a0, 2f
            sbi 1, 0
            addi s1, s1, 1
            j 1b
        2:  wfi
            j 2b
        message: .asciz "[ 1.0] Kernel panic - not syncing: Attempted to kill init!\n"
        """)
    assert "Kernel panic - not syncing: Attempted to kill init!" in str(caught.value)


SPIN = "1:  j 1b\n"      # never traps: only an asynchronous stop can end it


def test_quit_request_stops_a_spinning_guest(boot) -> None:
    def quit_later(machine) -> None:
        threading.Timer(0.2, machine.request_quit, args=(0,)).start()

    assert boot(SPIN, before_run=quit_later).status == 0


def test_ctrl_c_stops_cleanly_with_status_130(boot) -> None:
    def interrupt_later(machine) -> None:
        threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT)).start()

    assert boot(SPIN, before_run=interrupt_later).status == 130
