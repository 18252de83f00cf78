"""`vmsim demo`, the README's main command, passes every check on the default guest of
each board; on arm64 the verdict comes from the init's done line, since PSCI's
SYSTEM_OFF leaves vmsim's exit status at 0 whatever the programs did."""
from __future__ import annotations

import pytest

from tests.support.guest import board_guest, built_default_guest
from vmsim.cli.main import main
from vmsim.harness.results import GuestRun

DRIVERS = ("virtio_crypto_aes_cbc", "virtio-crypto-rsa", "virtio-pkcs1-rsa")


@pytest.mark.linux
def test_demo_boots_checks_and_summarises(capsys) -> None:
    built_default_guest()
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out[-3000:]
    assert "Every check passed." in out
    for driver in DRIVERS:
        assert driver in out
    assert "dataq.0" in out and "controlq" in out


@pytest.mark.linux
def test_demo_on_arm64_boots_the_arm64_guest_and_shows_the_same_tables(capsys) -> None:
    board_guest("arm64")
    status = main(["demo", "--arch", "arm64"])
    out = capsys.readouterr().out
    assert status == 0, out[-3000:]
    assert "vmsim demo (arm64): Linux 6.1 booted" in out
    assert "the programs' exit status 0" in out
    assert "Every check passed." in out
    for title in ("Algorithms the guest's virtio_crypto driver registered", "Checks",
                  "AF_ALG cbc(aes) through the device", "Requests the device saw, per virtqueue"):
        assert title in out
    for driver in DRIVERS:
        assert driver in out
    assert "dataq.0" in out and "controlq" in out


def test_demo_rejects_a_bad_queue_count(capsys) -> None:
    assert main(["demo", "--crypto-queues", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vmsim: error: --crypto-queues")


@pytest.mark.parametrize("status, done, problem", [
    (0, "@vmsim event=done exit=1", "the guest's programs ended with status 1"),
    (0, "", "the guest's init never printed its done line (vmsim exit status 0)"),
    (1, "@vmsim event=done exit=1", "the guest powered off with status 1"),
])
def test_the_verdict_reads_the_init_done_line_not_only_the_exit_status(status, done,
                                                                        problem) -> None:
    """On arm64 vmsim exits 0 after SYSTEM_OFF even when a program failed: the done
    line's status fails the demo there."""
    from vmsim.cli.demo import _problems

    run = GuestRun(status, f"@vmsim event=init-start\n{done}\n")
    assert problem in _problems(run, [])


def test_the_demo_console_is_the_board_uart() -> None:
    from vmsim.cli.demo import demo_append

    assert demo_append("arm64").startswith("console=ttyAMA0 quiet vmsim.run=crypto-reg,")
    assert demo_append("riscv64").startswith("console=ttyS0 quiet vmsim.run=crypto-reg,")
