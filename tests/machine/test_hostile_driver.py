"""The hostile bare-metal driver (guests/hostile) against vmsim's device, and the same
ELF against QEMU 7.2's, which records where the reference implementation differs.

The driver runs one case per item of the device's conformance review ("a" cases,
numbered as docs/virtio-crypto.md's sections follow it) and per bad input ("b"
cases, numbered as the list in tests/unit/test_crypto_bad_input.py's docstring), each
from a freshly reset device, and prints `@vmsim test=hostile-<case> result=...`.
On vmsim every case passes. On QEMU the cases that fail are exactly those recorded in
QEMU_DIFFERENCES, with their reasons (and one that is a race on QEMU's side may go
either way, QEMU_RACES): a change on either side shows up here.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.guest import require_tools
from vmsim.build import hostile
from vmsim.core.machine import Machine, MachineConfig
from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO, find_crypto_device
from vmsim.harness.results import parse_result_lines

MEMORY = 16 << 20
QEMU_SLOT = "0x10008000"         # QEMU virt puts the first -device in the top slot
STATELESS_CASE = "a6-stateless-op-contradicts-the-opcode"
# Part A items and bad-input numbers with a case of their own. (b5, a consistent state
# after every failure, is every case's closing check; b13 is covered by b7 and b12.)
A_ITEMS = set(range(1, 11))
B_ITEMS = set(range(1, 27)) - {5, 13}

# Where QEMU 7.2.x (Debian bookworm, the builtin cryptodev backend) differs, and why.
QEMU_DIFFERENCES = {
    "a1-modulus-over-16384-bits": "fail status-0",           # takes any RSA key
    "a1-exponent-over-64-bits": "fail status-0",
    "a2-used-len-claims-only-written-bytes": "fail used-len-counts-unwritten-slack",
    "a3-akcipher-status-within-used-len": "fail status-not-within-used-len",
    "a6-decrypt-on-an-encrypt-session": "fail status-0",     # the session's direction wins
    "a6-op-type-contradicts-the-session": "fail status-3",   # NOTSUPP: no chaining at all
    STATELESS_CASE: "skip no-stateless-cipher",              # no REVISION_1
    "a7-gcm-16-byte-iv-is-j0": "fail status-3",              # no AEAD service
    "a7-tag-len-differs-from-the-session": "fail no-gcm-session",
    "a7-ccm-nonce-from-iv-1": "fail status-3",
    "a9-refused-chain-is-answered-err": "fail status-or-broken",
    "a9-linux-wrapped-indirect-table-is-answered-err": "fail no-answer",  # Linux would hang
    "b1-summed-lengths-overflow": "fail no-answer",          # virtio_error: NEEDS_RESET only
    "b2-src-len-differs-from-dst-len": "fail no-answer",
    "b6-no-writable-buffer-is-returned": "fail no-answer",
    "b6-header-under-72-bytes": "fail no-answer",
    "b6-create-reply-under-16-bytes": "fail no-answer",
    "b7-key-shorter-than-key-len": "fail no-answer",
    "b7-src-shorter-than-src-len": "fail no-answer",
    "b12-header-lengths-past-the-buffers": "fail no-answer",
    "b14-dst-len-over-the-writable-room": "fail no-answer",
    "b8-reply-sized-from-the-buffer": "fail no-answer",
    "b10-advertised-services-work": "fail advertised-but-notsupp",   # HASH, MAC, AEAD bits
    "b11-input-rewritten-after-the-doorbell": "fail status-1",  # no RSA key without CRT values
    "b19-queue-num-not-a-power-of-two-is-refused": "fail ring-size-taken",
    "b22-control-request-always-completes": "fail no-answer",
    "b25-completions-in-any-order": "fail wrong-answers",    # the same key, ERR
    "b23-hw-ready-and-config-never-change": "fail changed",
}
# Where QEMU's outcome depends on timing, every outcome seen. QEMU 7.2's virtio-mmio only
# notes QueueReady = 0 and goes on with the queue: whether the slow job it is running
# lands before the driver looks (pass) or after (fail) depends on when its main loop,
# not the vCPU, handles the doorbell.
QEMU_RACES = {
    "a5-no-write-after-queue-ready-0": {"pass", "fail written-after-stop"},
}


@pytest.fixture(scope="module")
def build():
    require_tools(*hostile.REQUIREMENTS)
    return lambda **defines: hostile.ensure_hostile({k: str(v) for k, v in defines.items()})


def outcomes(lines: list[dict[str, str]]) -> dict[str, str]:
    """case -> "pass", or "fail <reason>" / "skip <reason>", in the program's order."""
    found = {}
    for line in lines:
        name = line.get("test", "")
        if name.startswith("hostile-"):
            result = line["result"]
            found[name.removeprefix("hostile-")] = result if result == "pass" else \
                f"{result} {line.get('reason', '')}"
    return found


def run_on_vmsim(elf, **device) -> tuple[int, dict[str, str], list[dict[str, str]]]:
    output = bytearray()
    machine = Machine(MachineConfig(kernel=elf, memory=MEMORY, virtio=[CRYPTO.configure(**device)]),
                      output=output.extend)
    try:
        # Warm workers: then a costly request is pooled, and answered after the doorbell.
        assert find_crypto_device(machine.virtio).wait_for_workers()
        status = machine.run()
    finally:
        machine.close()
    lines = parse_result_lines(output.decode(errors="replace"))
    return status, outcomes(lines), lines


@pytest.fixture(scope="module")
def vmsim_run(build):
    return run_on_vmsim(build(), stateless=True)


def test_every_case_passes_on_vmsim(vmsim_run) -> None:
    status, found, lines = vmsim_run
    failed = {case: outcome for case, outcome in found.items() if outcome != "pass"}
    assert not failed, failed
    summary = next(line for line in lines if line.get("test") == "hostile")
    assert summary["result"] == "pass" and summary["failed"] == "0" and summary["skipped"] == "0"
    assert status == 0


def test_the_cases_cover_the_review_and_the_bad_input_list(vmsim_run) -> None:
    _, found, _ = vmsim_run
    numbers = {(m[1], int(m[2])) for case in found if (m := re.match(r"([ab])(\d+)-", case))}
    assert {n for kind, n in numbers if kind == "a"} == A_ITEMS
    assert {n for kind, n in numbers if kind == "b"} == B_ITEMS
    assert len(found) == len(set(found)) >= 50


def test_without_stateless_mode_only_the_stateless_case_is_skipped(build) -> None:
    status, found, _ = run_on_vmsim(build())
    assert found.pop(STATELESS_CASE) == "skip no-stateless-cipher"
    assert set(found.values()) == {"pass"} and status == 0


def test_qemu_differs_exactly_where_recorded(build, vmsim_run) -> None:
    """The same program on QEMU 7.2's virtio-crypto: the cases it fails, and why."""
    from vmsim.harness.qemu import OPENSBI_FIRMWARE, QEMU_REQUIREMENTS

    require_tools(*QEMU_REQUIREMENTS)
    elf = build(VIRTIO_CRYPTO_BASE=QEMU_SLOT)
    proc = subprocess.run(
        ["qemu-system-riscv64", "-M", "virt", "-m", "64M", "-nographic",
         "-bios", str(OPENSBI_FIRMWARE), "-kernel", str(elf),
         "-global", "virtio-mmio.force-legacy=false",
         "-object", "cryptodev-backend-builtin,id=c0",
         "-device", "virtio-crypto-device,cryptodev=c0"],
        check=False, capture_output=True, stdin=subprocess.DEVNULL, timeout=600)
    found = outcomes(parse_result_lines(proc.stdout.decode(errors="replace")))
    assert found.keys() == vmsim_run[1].keys(), "QEMU did not run every case"
    for case, seen in QEMU_RACES.items():
        assert found.pop(case) in seen, f"{case}: QEMU gave a new outcome"
    differences = {case: outcome for case, outcome in found.items() if outcome != "pass"}
    assert differences == QEMU_DIFFERENCES
