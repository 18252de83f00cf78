"""The unmodified Linux 6.1 guest drives the device: every algorithm its virtio_crypto
driver registers (cbc(aes), rsa, pkcs1pad(rsa)) must pass the kernel's own self-tests
(CRYPTO_MANAGER_DISABLE_TESTS=n in the guest config). QEMU 7.2 fails the raw RSA one.

Boots the cached default guest on the vmsim machine; skipped when it is not built yet.
"""
from __future__ import annotations

import pytest

from tests.support.guest import built_default_guest

from vmsim.devices.virtio.crypto import CryptoDevice
from vmsim.devices.virtio.mmio import MmioTransport

pytestmark = pytest.mark.linux


def test_linux_registers_every_algorithm_and_its_self_tests_pass():
    from vmsim.harness.results import parse_result_lines
    from vmsim.core.machine import Machine, MachineConfig

    paths = built_default_guest()
    devices: list[CryptoDevice] = []

    def crypto(ctx):
        device = CryptoDevice(waker=ctx.waker)
        devices.append(device)
        return MmioTransport(device, ctx.memory, ctx.irq)

    output: list[bytes] = []
    machine = Machine(MachineConfig(kernel=paths.kernel, initrd=paths.initrd,
                                    append="console=ttyS0 vmsim.run=virtio-algs", virtio=[crypto]),
                      output=output.append)
    try:
        status = machine.run()
    finally:
        machine.close()
        for device in devices:
            device.close()
    text = b"".join(output).decode(errors="replace")
    algs = {r["driver"]: r["selftest"] for r in parse_result_lines(text) if r.get("event") == "alg"}
    assert algs == {"virtio_crypto_aes_cbc": "passed", "virtio-crypto-rsa": "passed",
                    "virtio-pkcs1-rsa": "passed"}, text[-3000:]
    assert status == 0
    control, data = devices[0].stats[1], devices[0].stats[0]
    assert control.requests and data.requests
    assert set(control.statuses) == {"OK"} and set(data.statuses) == {"OK"}
