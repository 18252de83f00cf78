"""The unmodified Linux virtio_crypto driver drives the device inside vmsim, end to end,
on every board (the `board` fixture, tests/conftest.py: riscv64 and arm64).

The guest programs (guests/initramfs/programs/) report what the kernel registered and
what AF_ALG and keyctl computed through the device; vmsim/harness/guest_crypto.py checks
their lines against `cryptography`. One boot runs the whole suite, once with one data
queue and once with four; two more boots check that no virtio algorithm appears
without the device or when it withholds HW_READY. The same suite under QEMU 7.2 is the
reference (its raw RSA fails the kernel self-test by design).

Debian's own arm64 kernel (its virtio_crypto and AF_ALG are modules, loaded by the
initramfs's first program) runs the same boots on the arm64 board, as `[arm64-debian]`:
this module's `board` fixture adds it to the boards' default guests.

Results are read from the console on every board: the init's `@vmsim event=done exit=N`
line carries the programs' status, which only riscv64 also passes out as vmsim's exit
status (BoardGuest.host_status).

The first tests need no guest: they pin the host's copies of the guest's generator,
test tables and key to the C sources, and show that the checks can fail.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.guest import (ARM64_DEBIAN, BOARD_ARCHES, HOST_CC, BoardGuest, board_guest,
                                 require_tools)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from vmsim.harness import guest_crypto as gc
from vmsim.harness.results import GuestRun, check_result, init_exit, kernel_problems
from vmsim.harness.qemu import qemu_machine
from vmsim.harness.runs import run_qemu, run_vmsim
from vmsim.build.guest import INITRAMFS_SOURCES

PROGRAMS = INITRAMFS_SOURCES / "programs"
STRESS_PROCS, STRESS_OPS = 4, 128
BENCH_MS = 50          # just enough to show the benchmark program works; bench/ measures
# Kernel command-line options after the board's console= (BoardGuest.append).
SUITE = (f"vmsim.run=crypto-reg,afalg-kat,rsa-keyctl,afalg-stress,afalg-bench "
         f"vmsim.procs={STRESS_PROCS} vmsim.ops={STRESS_OPS} vmsim.bench_ms={BENCH_MS} "
         f"vmsim.bench_pattern=both")
NO_ALGS = "vmsim.run=crypto-reg vmsim.expect_algs=none"
BOOT_TIMEOUT = 180.0


# ------------------------------------------------------------ no guest needed


def test_host_generator_and_digest_match_the_guest_header(tmp_path: Path) -> None:
    """testgen.h compiled for the host prints what DataGen and fnv1a64 compute."""
    require_tools(HOST_CC)
    cc = HOST_CC.name
    harness = tmp_path / "gen.c"
    harness.write_text(
        '#include <stdio.h>\n#include "testgen.h"\n'
        "int main(void) {\n"
        "    static const uint64_t seeds[] = {0, 1, 0x7273612d32303438ULL, ~0ULL};\n"
        "    static const size_t lens[] = {0, 1, 7, 8, 9, 33};\n"
        "    for (int s = 0; s < 4; s++) {\n"
        "        struct testgen g; uint8_t buf[64];\n"
        "        testgen_seed(&g, seeds[s]);\n"
        "        for (int l = 0; l < 6; l++) {\n"
        "            testgen_fill(&g, buf, lens[l]);\n"
        "            for (size_t i = 0; i < lens[l]; i++) printf(\"%02x\", buf[i]);\n"
        "            printf(\" %016llx\\n\", (unsigned long long)fnv1a64(buf, lens[l]));\n"
        "        }\n"
        "    }\n"
        "    return 0;\n"
        "}\n")
    binary = tmp_path / "gen"
    subprocess.run([cc, "-O1", "-Wall", f"-I{INITRAMFS_SOURCES}", "-o", str(binary),
                    str(harness)], check=True)
    got = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout

    want = []
    for seed in (0, 1, 0x7273612D32303438, gc.MASK64):
        gen = gc.DataGen(seed)
        for length in (0, 1, 7, 8, 9, 33):
            data = gen.fill(length)
            want.append(f"{data.hex()} {gc.digest_hex(data)}")
    assert got.splitlines() == want


def _c_array(source: str, name: str) -> list[str]:
    """The initialiser items of `static const ... name[] = {...};` in a C source."""
    body = re.search(rf"{re.escape(name)}\[[^\]]*\]\s*=\s*\{{(.*?)\}};", source, re.S)
    assert body, f"{name} not found"
    return [item.strip() for item in body.group(1).split(",") if item.strip()]


def test_guest_embeds_the_host_rsa_key() -> None:
    source = (PROGRAMS / "rsa-keyctl.c").read_text()
    der = bytes(int(item, 16) for item in _c_array(source, "test_key_pkcs8"))
    assert der == gc.rsa_key_der()
    assert gc.rsa_test_key().key_size == 2048


def test_host_kat_table_is_the_guest_table() -> None:
    source = (PROGRAMS / "afalg-kat.c").read_text()
    assert tuple(map(int, _c_array(source, "key_sizes"))) == gc.KAT_KEY_SIZES
    assert tuple(map(int, _c_array(source, "lengths"))) == gc.KAT_LENGTHS
    modes = _c_array((INITRAMFS_SOURCES / "afalg.h").read_text(), "afalg_mode_names")
    assert tuple(m.strip('"') for m in modes) == gc.KAT_MODES


def _kat_console(table: dict[tuple[str, str, str], tuple[str, str]]) -> str:
    lines = [f"@vmsim event=kat key={k} len={n} mode={m} ct={ct} pt={pt} err=0 ok=1"
             for (k, n, m), (ct, pt) in table.items()]
    return "\n".join(lines + ["@vmsim test=afalg-kat result=pass"]) + "\n"


def test_kat_check_accepts_right_lines_and_names_wrong_or_missing_ones() -> None:
    table = dict(gc.expected_kat())
    assert len(table) == 132
    assert gc.check_kat(GuestRun(0, _kat_console(table))) == []

    wrong = dict(table)
    case = ("192", "4112", "splice")
    wrong[case] = ("0" * 16, table[case][1])
    del wrong[("128", "0", "single")]
    problems = gc.check_kat(GuestRun(0, _kat_console(wrong)))
    assert len(problems) == 2
    assert "key=192 len=4112 mode=splice" in problems[0]
    assert "key=128 len=0 mode=single: missing" in problems[1]


def test_rsa_check_recomputes_every_output() -> None:
    """A run made of the host's own RSA results passes; a wrong signature does not."""
    key, inputs = gc.rsa_test_key(), gc.rsa_inputs()
    public = key.public_key()
    outputs = {
        "ct-pkcs1": public.encrypt(inputs.message, padding.PKCS1v15()),
        "sig-pkcs1-sha1": key.sign(inputs.digest, padding.PKCS1v15(),
                                   utils.Prehashed(hashes.SHA1())),
        "ct-raw": pow(int.from_bytes(inputs.raw, "big"), public.public_numbers().e,
                      public.public_numbers().n).to_bytes(256, "big"),
    }
    digests = {"encrypt-pkcs1": outputs["ct-pkcs1"], "sign-pkcs1-sha1": outputs["sig-pkcs1-sha1"],
               "encrypt-raw": outputs["ct-raw"], "decrypt-pkcs1": inputs.message}

    def console(sig: bytes) -> str:
        lines = [f"@vmsim event=rsa op={op} ok=1 digest="
                 f"{gc.digest_hex(digests[op]) if op in digests else '0' * 16}"
                 for op in gc.RSA_OPS]
        for what, data in {**outputs, "sig-pkcs1-sha1": sig}.items():
            lines += [f"@vmsim event=rsa-hex what={what} part={i // 64} hex={data[i:i + 64].hex()}"
                      for i in range(0, len(data), 64)]
        return "\n".join(lines + ["@vmsim test=rsa-keyctl result=pass"])

    assert gc.check_rsa(GuestRun(0, console(outputs["sig-pkcs1-sha1"]))) == []
    bad = bytearray(outputs["sig-pkcs1-sha1"])
    bad[7] ^= 1
    problems = gc.check_rsa(GuestRun(0, console(bytes(bad))))
    assert any("signature" in p for p in problems)


# ------------------------------------------------------------------ real boots


@pytest.fixture(scope="module", params=[*BOARD_ARCHES, ARM64_DEBIAN])
def board(request: pytest.FixtureRequest) -> BoardGuest:
    """tests/conftest.py's boards, and Debian's own arm64 kernel on the arm64 board."""
    return board_guest(request.param)


def _require_run_flags(*flags: str) -> None:
    """Fail (naming them) if `vmsim run` does not offer these options: a renamed or
    removed flag is a bug to fix here or in the CLI, never a reason to skip."""
    vmsim = Path(sys.executable).parent / "vmsim"
    text = subprocess.run([str(vmsim), "run", "--help"], capture_output=True,
                          text=True).stdout
    missing = [flag for flag in flags if flag not in text]
    if missing:
        pytest.fail(f"`vmsim run --help` lacks {', '.join(missing)}", pytrace=False)


def test_the_run_options_the_boots_use_exist() -> None:
    """Checked without a guest, so a renamed option fails even a quick run."""
    _require_run_flags("--crypto-queues", "--no-crypto", "--crypto-not-ready")


def _explain(run: GuestRun, problems: list[str]) -> str:
    return "\n".join(problems) + "\n--- console tail ---\n" + run.tail()


@pytest.fixture(scope="module", params=[1, 4], ids=["1-queue", "4-queues"])
def suite_run(request: pytest.FixtureRequest, board: BoardGuest) -> GuestRun:
    queues = request.param
    extra = () if queues == 1 else ("--crypto-queues", str(queues))
    if extra:
        _require_run_flags(extra[0])
    return run_vmsim(board.paths, board.append(SUITE), extra, timeout=BOOT_TIMEOUT)


@pytest.mark.linux
def test_vmsim_registers_every_algorithm_with_passing_self_tests(suite_run: GuestRun) -> None:
    problems = gc.check_registration(suite_run)
    assert not problems, _explain(suite_run, problems)


@pytest.mark.linux
def test_vmsim_aes_cbc_known_answers_through_af_alg(suite_run: GuestRun) -> None:
    problems = gc.check_kat(suite_run)
    assert not problems, _explain(suite_run, problems)


@pytest.mark.linux
def test_vmsim_rsa_through_keyctl_on_the_device(suite_run: GuestRun) -> None:
    problems = gc.check_rsa(suite_run) + gc.check_rsa_on_device(suite_run)
    assert not problems, _explain(suite_run, problems)


@pytest.mark.linux
def test_vmsim_concurrent_requests_match_software_and_log_stays_clean(
        suite_run: GuestRun) -> None:
    problems = gc.check_stress(suite_run, STRESS_PROCS, STRESS_OPS)
    problems += kernel_problems(suite_run.console)
    assert not problems, _explain(suite_run, problems)


@pytest.mark.linux
def test_vmsim_benchmark_program_measures_every_point(suite_run: GuestRun) -> None:
    points = gc.bench_points(suite_run)
    problems = check_result(suite_run, "afalg-bench")
    assert not problems, _explain(suite_run, problems)
    # Both patterns: a persistent operation socket, and a new one for every request.
    assert sorted((p.pattern, p.size, p.procs) for p in points) == sorted(
        (pattern, size, procs) for pattern in ("persistent", "oneshot")
        for size in (16, 256, 4096, 65536) for procs in (1, STRESS_PROCS))
    assert all(p.ok and p.ops > 0 for p in points), points


@pytest.mark.linux
def test_vmsim_suite_powers_off_with_success(suite_run: GuestRun) -> None:
    assert not suite_run.timed_out, suite_run.tail()
    assert init_exit(suite_run.lines) == 0, suite_run.tail()
    assert suite_run.status == 0, suite_run.tail()


@pytest.mark.linux
@pytest.mark.parametrize("flag", ["--no-crypto", "--crypto-not-ready"])
def test_vmsim_without_a_ready_device_registers_nothing(board: BoardGuest, flag: str) -> None:
    _require_run_flags(flag)
    run = run_vmsim(board.paths, board.append(NO_ALGS), (flag,), timeout=BOOT_TIMEOUT)
    problems = gc.check_no_algorithms(run) + kernel_problems(run.console)
    assert not problems, _explain(run, problems)
    assert init_exit(run.lines) == 0, run.tail()
    assert run.status == 0


@pytest.mark.linux
def test_a_request_the_device_refuses_gets_an_error_not_a_hang(board: BoardGuest,
                                                               tmp_path: Path) -> None:
    """A 1 MiB AF_ALG request spliced in 16-byte pieces makes Linux 6.1 build an
    indirect table of more than 65536 descriptors, which the device refuses. It answers
    the chain with ERR in its status byte (Linux ignores DEVICE_NEEDS_RESET, and would
    wait forever): the program gets EINVAL, then sets a new key and round-trips data on
    the same device. The device logs the refusal once."""
    log = tmp_path / "vmsim.log"
    run = run_vmsim(board.paths, board.append("vmsim.run=afalg-huge"),
                    ("-d", "guest_errors", "-D", str(log)), timeout=BOOT_TIMEOUT)
    problems = check_result(run, "afalg-huge") + kernel_problems(run.console)
    assert not problems, _explain(run, problems)
    (huge,) = run.events("huge")
    assert huge["err"] == "22", run.tail()                       # EINVAL: the device said ERR
    assert [e["ok"] for e in run.events("after")] == ["1", "1"], run.tail()
    refusals = [line for line in log.read_text().splitlines() if "answered ERR" in line]
    assert len(refusals) == 1 and "65536 entries" in refusals[0], log.read_text()
    assert init_exit(run.lines) == 0, run.tail()
    assert run.status == 0


@pytest.mark.linux
def test_stress_program_reports_processes_that_outlive_its_deadline(board: BoardGuest) -> None:
    """With a zero timeout every stress process is still running at the deadline: the
    program must say so and fail, which is what a request that never completes shows."""
    run = run_vmsim(board.paths, board.append("vmsim.run=afalg-stress vmsim.stress_timeout_s=0"),
                    timeout=BOOT_TIMEOUT)
    assert check_result(run, "afalg-stress", "fail") == [], run.tail()
    assert run.events("stress-hang") and run.result("afalg-stress")["hung"] == "4", run.tail()
    code = init_exit(run.lines)
    assert code is not None and code != 0, run.tail()
    # vmsim's exit status is that code only on riscv64; arm64 powers off through PSCI,
    # which carries no code (BoardGuest.host_status).
    assert run.status == board.host_status(code), run.tail()


@pytest.mark.linux
def test_qemu_reference_passes_everything_but_its_raw_rsa_self_test(
        board: BoardGuest) -> None:
    """The programs and checks agree with QEMU 7.2 (`virt` of the same board), whose
    builtin backend rejects raw RSA: exactly virtio-crypto-rsa fails its self-test, and
    the kernel warns about it at boot (before the stress test's log window)."""
    require_tools(*qemu_machine(board.arch).requirements)
    run = run_qemu(board.paths, board.append(SUITE), timeout=BOOT_TIMEOUT, arch=board.arch)
    problems = gc.check_registration(run, failing=("virtio-crypto-rsa",))
    problems += gc.check_kat(run) + gc.check_rsa(run)
    assert gc.check_rsa_on_device(run) != []        # its raw RSA cannot serve keyctl
    problems += gc.check_stress(run, STRESS_PROCS, STRESS_OPS)
    assert not problems, _explain(run, problems)
