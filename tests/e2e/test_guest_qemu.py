"""The guests on the reference machine (QEMU virt): what vmsim must match.

Each guest boots on QEMU's `virt` of its architecture: the default riscv64 and arm64
guests, and Debian's own arm64 kernel, whose initramfs loads virtio_mmio and
virtio_crypto as modules first. They boot the cached guests, so they are marked
`linux`; without a guest or QEMU they skip in a quick local run and fail under
`make test` (tests/support/guest.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from tests.support.guest import built_default_guest, built_distro_guest, require_tools

from vmsim.build.guest import GuestPaths
from vmsim.harness import guest_crypto as gc
from vmsim.harness.qemu import QemuMachine, qemu_machine
from vmsim.harness.results import GuestRun
from vmsim.harness.runs import run_qemu

pytestmark = pytest.mark.linux

# A distribution kernel runs every self-test it has built in before init.
BOOT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Reference:
    arch: str
    built: Callable[[], GuestPaths]


REFERENCES = {
    "riscv64": Reference("riscv64", built_default_guest),
    "arm64": Reference("arm64", lambda: built_default_guest("arm64")),
    "arm64-debian": Reference("arm64", built_distro_guest),
}


@dataclass(frozen=True)
class Guest:
    paths: GuestPaths
    machine: QemuMachine

    def run(self, options: str) -> GuestRun:
        run = run_qemu(self.paths, f"console={self.machine.console} {options}",
                       timeout=BOOT_TIMEOUT, arch=self.machine.arch)
        assert not run.timed_out, run.tail()
        return run

    def host_status(self, init_exit: int) -> int:
        """What QEMU exits with when the init ends with `init_exit`."""
        return init_exit if self.machine.exit_code_from_guest else 0


@pytest.fixture(scope="module", params=list(REFERENCES))
def guest(request) -> Guest:
    reference = REFERENCES[request.param]
    paths = reference.built()
    machine = qemu_machine(reference.arch)
    require_tools(*machine.requirements)
    return Guest(paths, machine)


def test_programs_run_and_the_exit_code_reaches_the_host(guest):
    run = guest.run("vmsim.run=sanity,virtio-algs,busy vmsim.busy_ms=200")
    assert run.lines[0] == {"event": "init-start"}, run.tail()
    passed = {r["test"] for r in run.lines if r.get("result") == "pass"}
    assert passed == {"sanity", "virtio-algs", "busy"}, run.tail()
    assert "virtio_crypto_aes_cbc" in {e["driver"] for e in run.events("alg")}
    assert run.lines[-1] == {"event": "done", "exit": "0"}
    assert run.status == 0


def test_a_failing_program_sets_the_exit_code_and_later_ones_still_run(guest):
    run = guest.run("vmsim.run=no-such-program,idle vmsim.idle_ms=50")
    assert {"test": "idle", "result": "pass", "ms": "50"}.items() <= run.result("idle").items()
    assert run.lines[-1] == {"event": "done", "exit": "127"}
    assert run.status == guest.host_status(127)


def test_the_driver_registers_its_self_tests_pass_and_af_alg_answers_are_known(guest):
    """QEMU 7.2's builtin backend rejects raw RSA, so exactly that self-test fails."""
    run = guest.run("vmsim.run=crypto-reg,afalg-kat")
    problems = gc.check_registration(run, failing=("virtio-crypto-rsa",)) + gc.check_kat(run)
    assert not problems, "\n".join(problems) + "\n" + run.tail()
