"""The default guest on the reference machine (QEMU virt): what vmsim must match.

Boots the cached guest, so it is marked `linux` and skipped until `vmsim guest build`
(or `make guest`) has run, or when QEMU is not installed.
"""
import pytest

from tests.support.guest import built_default_guest

from vmsim import guest
from vmsim.errors import VmsimError

pytestmark = pytest.mark.linux


@pytest.fixture(scope="module")
def paths() -> guest.GuestPaths:
    paths = built_default_guest()
    try:
        guest.require(guest.QEMU_REQUIREMENTS)
    except VmsimError as missing:
        pytest.skip(str(missing))
    return paths


def test_programs_run_and_the_exit_code_reaches_the_host(paths):
    run = guest.run_in_qemu(paths, "console=ttyS0 vmsim.run=sanity,virtio-algs,busy "
                                   "vmsim.busy_ms=200")
    results = guest.parse_result_lines(run.output)
    assert results[0] == {"event": "init-start"}
    passed = {r["test"] for r in results if r.get("result") == "pass"}
    assert passed == {"sanity", "virtio-algs", "busy"}
    drivers = {r["driver"] for r in results if r.get("event") == "alg"}
    assert "virtio_crypto_aes_cbc" in drivers
    assert results[-1] == {"event": "done", "exit": "0"}
    assert run.exit_code == 0


def test_a_failing_program_sets_the_exit_code_and_later_ones_still_run(paths):
    run = guest.run_in_qemu(paths, "console=ttyS0 vmsim.run=no-such-program,idle "
                                   "vmsim.idle_ms=50")
    results = guest.parse_result_lines(run.output)
    assert {"test": "idle", "result": "pass", "ms": "50"}.items() <= \
        next(r for r in results if r.get("test") == "idle").items()
    assert results[-1] == {"event": "done", "exit": "127"}
    assert run.exit_code == 127
