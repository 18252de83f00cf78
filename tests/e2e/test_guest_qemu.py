"""The default guest on the reference machine (QEMU virt): what vmsim must match.

Boots the cached guest, so it is marked `linux`; without the guest or QEMU it skips in
a quick local run and fails under `make test` (tests/support/guest.py).
"""
import pytest

from tests.support.guest import built_default_guest, require_tools

from vmsim.build.guest import GuestPaths
from vmsim.harness.qemu import QEMU_REQUIREMENTS, run_in_qemu
from vmsim.harness.results import parse_result_lines

pytestmark = pytest.mark.linux


@pytest.fixture(scope="module")
def paths() -> GuestPaths:
    paths = built_default_guest()
    require_tools(*QEMU_REQUIREMENTS)
    return paths


def test_programs_run_and_the_exit_code_reaches_the_host(paths):
    run = run_in_qemu(paths, "console=ttyS0 vmsim.run=sanity,virtio-algs,busy "
                                   "vmsim.busy_ms=200")
    results = parse_result_lines(run.output)
    assert results[0] == {"event": "init-start"}
    passed = {r["test"] for r in results if r.get("result") == "pass"}
    assert passed == {"sanity", "virtio-algs", "busy"}
    drivers = {r["driver"] for r in results if r.get("event") == "alg"}
    assert "virtio_crypto_aes_cbc" in drivers
    assert results[-1] == {"event": "done", "exit": "0"}
    assert run.exit_code == 0


def test_a_failing_program_sets_the_exit_code_and_later_ones_still_run(paths):
    run = run_in_qemu(paths, "console=ttyS0 vmsim.run=no-such-program,idle "
                                   "vmsim.idle_ms=50")
    results = parse_result_lines(run.output)
    assert {"test": "idle", "result": "pass", "ms": "50"}.items() <= \
        next(r for r in results if r.get("test") == "idle").items()
    assert results[-1] == {"event": "done", "exit": "127"}
    assert run.exit_code == 127
