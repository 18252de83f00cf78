"""The unmodified Linux 6.1 guest drives the device: every algorithm its virtio_crypto
driver registers (cbc(aes), rsa, pkcs1pad(rsa)) must pass the kernel's own self-tests
(CRYPTO_MANAGER_DISABLE_TESTS=n in the guest config), on every board. QEMU 7.2 fails
the raw RSA one.

Boots each board's cached default guest on the vmsim machine (tests/support/guest.py).
"""
from __future__ import annotations

import pytest

from tests.support.guest import BoardGuest
from vmsim.harness.results import init_exit

from vmsim.devices.virtio.crypto import CryptoDevice
from vmsim.devices.virtio.mmio import MmioTransport

pytestmark = pytest.mark.linux


def test_linux_registers_every_algorithm_and_its_self_tests_pass(board: BoardGuest):
    from vmsim.harness.results import parse_result_lines
    from vmsim.core.machine import MachineConfig, create_machine

    devices: list[CryptoDevice] = []

    def crypto(ctx):
        device = CryptoDevice(waker=ctx.waker)
        devices.append(device)
        return MmioTransport(device, ctx.memory, ctx.irq)

    output: list[bytes] = []
    machine = create_machine(MachineConfig(kernel=board.paths.kernel, initrd=board.paths.initrd,
                                           append=board.append("vmsim.run=virtio-algs"),
                                           virtio=[crypto], board=board.board),
                             output=output.append)
    try:
        status = machine.run()
    finally:
        machine.close()
        for device in devices:
            device.close()
    text = b"".join(output).decode(errors="replace")
    lines = parse_result_lines(text)
    algs = {r["driver"]: r["selftest"] for r in lines if r.get("event") == "alg"}
    assert algs == {"virtio_crypto_aes_cbc": "passed", "virtio-crypto-rsa": "passed",
                    "virtio-pkcs1-rsa": "passed"}, text[-3000:]
    assert init_exit(lines) == 0, text[-3000:]
    assert status == 0
    control, data = devices[0].stats[1], devices[0].stats[0]
    assert control.requests and data.requests
    assert set(control.statuses) == {"OK"} and set(data.statuses) == {"OK"}
