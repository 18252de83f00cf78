"""The unmodified Linux 6.1 guest under `--strict`: its virtio-mmio and virtio_crypto
drivers keep every rule through registration, the self-tests, AF_ALG known answers,
RSA through keyctl and a multi-process stress run on two data queues.

One breach is Linux's own and is asserted, not hidden: for afalg-huge's 1 MiB request
the driver builds an indirect table of 65795 descriptors for a queue of 1024, and
virtio 2.7.5.3.1 says "A driver MUST NOT create a descriptor chain longer than the
Queue Size of the device" (docs/strict.md, "What Linux 6.1 breaks").
"""
from __future__ import annotations

import pytest

from tests.support.guest import built_default_guest
from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO
from vmsim.devices.virtio.strict.rules import Finding
from vmsim.harness.results import parse_result_lines

pytestmark = pytest.mark.linux

PROGRAMS = ["virtio-algs", "crypto-reg", "afalg-kat", "rsa-keyctl", "afalg-stress", "afalg-huge"]


def test_linux_keeps_every_rule_except_its_chain_longer_than_the_queue() -> None:
    from vmsim.core.machine import Machine, MachineConfig

    paths = built_default_guest()
    output: list[bytes] = []
    seen_at: list[tuple[Finding, int]] = []
    machine = Machine(MachineConfig(
        kernel=paths.kernel, initrd=paths.initrd, strict=True,
        append="console=ttyS0 vmsim.run=" + ",".join(PROGRAMS),
        virtio=[CRYPTO.configure(queues=2, workers=1)]), output=output.append)
    assert machine.strict is not None
    machine.strict.on_finding = lambda finding: seen_at.append(
        (finding, sum(map(len, output))))
    try:
        status = machine.run()
    finally:
        machine.close()
    text = b"".join(output).decode(errors="replace")
    assert status == 0, text[-3000:]
    lines = parse_result_lines(text)
    ran = {line["prog"]: line["exit"] for line in lines if line.get("event") == "program"}
    assert ran == {program: "0" for program in PROGRAMS}, text[-3000:]
    assert not [line for line in lines if line.get("result") == "fail"], text[-3000:]

    assert [finding.rule.id for finding, _ in seen_at] == ["indirect-table-size"], [
        finding.describe() for finding, _ in seen_at]
    finding, offset = seen_at[0]
    before = text.encode()[:offset].decode(errors="replace")
    assert "prog=afalg-stress exit=0" in before and "prog=afalg-huge exit" not in before
    assert finding.values["entries"] > finding.values["size"] == 1024
    assert finding.pc is not None and finding.pc >= 0xFFFF_FFFF_8000_0000   # the kernel's notify
