"""The bare-metal poll-mode virtio-crypto driver (guests/baremetal) on the machine.

The program runs with every interrupt off and waits for each completion by reading
used->idx in RAM. An inline request (AES) is complete before the doorbell write
returns; a pooled one (RSA) is written back later, after another host thread woke
the machine, and must still reach a guest that never traps while it waits.
"""
from __future__ import annotations

import re
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.support.guest import require_tools
from vmsim.build import baremetal
from vmsim.cli.main import main
from vmsim.harness.results import parse_result_lines
from vmsim.core.machine import Machine, MachineConfig
from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO, find_crypto_device

MEMORY = 16 << 20
ROUNDS = 4            # the program's default VMSIM_ROUNDS
STEPS = (["init", "capabilities", "aes-session", "rsa-session"]
         + ["aes-cbc"] * ROUNDS + ["rsa-raw"] * ROUNDS + ["aes-destroy", "rsa-destroy"])
EXIT_NOT_READY = 4
EXIT_AES_MISMATCH = 9
EXIT_RSA_MISMATCH = 11


@pytest.fixture(scope="module")
def example():
    """Build (or find cached) the example ELF, optionally with C defines."""
    require_tools(*baremetal.REQUIREMENTS)
    return lambda **defines: baremetal.ensure_example({k: str(v) for k, v in defines.items()})


def run_on_machine(elf, workers: int | None):
    """Run the ELF with a crypto device in slot 0; return status, result lines, stats."""
    output = bytearray()
    machine = Machine(MachineConfig(kernel=elf, memory=MEMORY,
                                    virtio=[CRYPTO.configure(workers=workers)]),
                      output=output.extend)
    device = find_crypto_device(machine.virtio)
    try:
        if workers != 0:
            assert device.wait_for_workers()      # measure the pool warm, not its start-up
        status = machine.run()
        stats = device.stats[0]
    finally:
        machine.close()
    return status, parse_result_lines(output.decode()), stats


def results_by_test(lines: list[dict[str, str]], test: str) -> list[dict[str, str]]:
    return [line for line in lines if line.get("test") == test]


def test_every_step_passes_with_the_worker_pool(example) -> None:
    status, lines, stats = run_on_machine(example(), workers=None)
    assert status == 0
    assert [line["test"] for line in lines] == STEPS
    assert all(line["result"] == "pass" for line in lines)
    assert stats.pooled == ROUNDS                    # every RSA request went to a worker
    rsa = results_by_test(lines, "rsa-raw")
    # Pooled answers arrive while the driver spins: it read used->idx and saw no
    # change at least once, then saw the completion without any trap.
    assert sum(int(line["spins"]) for line in rsa) > 0


def test_every_step_passes_with_everything_inline(example) -> None:
    status, lines, stats = run_on_machine(example(), workers=0)
    assert status == 0
    assert [line["test"] for line in lines] == STEPS
    assert all(line["result"] == "pass" for line in lines)
    assert stats.pooled == 0
    # Inline work is finished inside the doorbell write: the first read already sees it.
    timed = [line for line in lines if "spins" in line]
    assert len(timed) == len(STEPS) - 2 and all(line["spins"] == "0" for line in timed)


def test_vmsim_run_boots_the_elf(example, capsys) -> None:
    assert main(["run", "--kernel", str(example()), "--mem", "16M"]) == 0
    lines = parse_result_lines(capsys.readouterr().out)
    assert [line["test"] for line in lines] == STEPS
    assert {line["result"] for line in lines} == {"pass"}


def test_a_device_that_is_not_ready_stops_the_driver_at_init(example, capsys) -> None:
    assert main(["run", "--kernel", str(example()), "--mem", "16M",
                 "--crypto-not-ready"]) == EXIT_NOT_READY
    (line,) = parse_result_lines(capsys.readouterr().out)
    assert line == {"test": "init", "result": "fail", "reason": "not-hw-ready"}


@pytest.mark.parametrize("define, test, code", [
    ("VMSIM_CORRUPT_AES_KEY", "aes-cbc", EXIT_AES_MISMATCH),
    ("VMSIM_CORRUPT_RSA_MESSAGE", "rsa-raw", EXIT_RSA_MISMATCH),
])
def test_a_wrong_known_answer_fails_with_its_step_code(example, define, test, code) -> None:
    status, lines, _ = run_on_machine(example(**{define: 1}), workers=0)
    assert status == code
    assert lines[-1]["test"] == test and lines[-1]["round"] == "0"
    assert lines[-1]["result"] == "fail" and lines[-1]["reason"] == "wrong-ciphertext"


def _c_array(text: str, name: str) -> bytes:
    body = re.search(rf"{name}\[\d+\] = \{{(.*?)\}};", text, re.DOTALL)
    assert body is not None, name
    return bytes(int(byte, 16) for byte in re.findall(r"0x([0-9a-f]{2})", body[1]))


def test_the_embedded_rsa_vector_is_a_true_known_answer() -> None:
    """The program's RSA expectation must come from the host, not from the device."""
    text = (baremetal.BAREMETAL_SOURCES / "rsa_vector.h").read_text()
    numbers = load_der_public_key(_c_array(text, "rsa_public_der")).public_numbers()
    message = int.from_bytes(_c_array(text, "rsa_message"), "big")
    expected = _c_array(text, "rsa_expected")
    assert numbers.n.bit_length() == 1024 and len(expected) == 128
    assert pow(message, numbers.e, numbers.n).to_bytes(128, "big") == expected


QEMU_SLOT = "0x10008000"         # QEMU virt puts the first -device in the top slot


def test_the_same_driver_runs_on_qemu_up_to_raw_rsa(example) -> None:
    """QEMU's device is an independent implementation of the same spec: the driver's
    init sequence, control queue and AES path must work there too. QEMU 7.2's builtin
    backend rejects raw RSA (tests/e2e/test_crypto_guest.py shows the same with the Linux
    driver), so that step is expected to fail there."""
    from vmsim.harness.qemu import OPENSBI_FIRMWARE, QEMU_REQUIREMENTS

    require_tools(*QEMU_REQUIREMENTS)
    elf = example(VIRTIO_CRYPTO_BASE=QEMU_SLOT)
    proc = subprocess.run(
        ["qemu-system-riscv64", "-M", "virt", "-m", "64M", "-nographic",
         "-bios", str(OPENSBI_FIRMWARE), "-kernel", str(elf),
         "-global", "virtio-mmio.force-legacy=false",
         "-object", "cryptodev-backend-builtin,id=c0",
         "-device", "virtio-crypto-device,cryptodev=c0"],
        check=False, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    lines = parse_result_lines(proc.stdout.decode(errors="replace"))
    passed = [line["test"] for line in lines if line["result"] == "pass"]
    assert passed == STEPS[:4 + ROUNDS]
    last = lines[-1]
    assert (last["test"], last["round"], last["result"], last["reason"]) == \
        ("rsa-raw", "0", "fail", "status-err")
