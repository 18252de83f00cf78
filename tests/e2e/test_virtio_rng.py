"""Linux's own virtio_rng driver reads vmsim's virtio-rng device, next to virtio-crypto.

The default guest boots with `-device virtio-crypto -device virtio-rng` (slots 0 and 1)
and runs crypto-reg and hwrng (guests/initramfs/programs/hwrng.c): the crypto driver
still registers with passing self-tests, the kernel's current hwrng is a virtio_rng
device, 64 KiB come out of /dev/hwrng, and their statistics, judged on the host by
vmsim.harness.guest_rng, are those of random bytes. The device's own trace shows it
served them. Without `-device virtio-rng` the same program reports no device.

The first tests need no guest: they run hwrng.c's statistics on the host against the
Python copy, and show that the checks reject constant or known bytes.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.guest import HOST_CC, built_default_guest, require_tools
from vmsim.build.guest import INITRAMFS_SOURCES, GuestPaths
from vmsim.harness import guest_crypto as gc
from vmsim.harness import guest_rng as gr
from vmsim.harness.results import GuestRun, kernel_problems
from vmsim.harness.runs import run_vmsim

PROGRAM = INITRAMFS_SOURCES / "programs" / "hwrng.c"
BOTH = ("-device", "virtio-crypto", "-device", "virtio-rng")
CRYPTO_ONLY = ("-device", "virtio-crypto")
BOOT_TIMEOUT = 180.0


def _result_line(what: str, current: str, data: bytes, want: int = gr.DEFAULT_BYTES) -> str:
    stats = gr.hwrng_stats(data)
    result = "pass" if what == "none" else "fail"
    words = " ".join(f"{key}={value}" for key, value in stats.items())
    return (f"@vmsim event=hwrng-current name={current}\n"
            f"@vmsim test=hwrng result={result} what={what} current={current} want={want} "
            f"err=0 ms=1 {words}\n")


def _explain(run: GuestRun, problems: list[str]) -> str:
    return "\n".join(problems) + "\n--- console tail ---\n" + run.tail()


# ------------------------------------------------------------ no guest needed


@pytest.mark.parametrize("kind", ["random", "constant", "pattern", "short", "empty"])
def test_host_statistics_are_the_guest_programs(tmp_path: Path, kind: str) -> None:
    """hwrng.c compiled for the host, reading a file instead of /dev/hwrng, prints what
    hwrng_stats computes for the same bytes."""
    require_tools(HOST_CC)
    cc = HOST_CC.name
    data = {"random": os.urandom(gr.DEFAULT_BYTES), "constant": b"\xa5" * gr.DEFAULT_BYTES,
            "pattern": gr.pattern_stream(b"0123456789abcdef", gr.DEFAULT_BYTES),
            "short": b"\x00\x00\x01\x01\x01\x02" * 100, "empty": b""}[kind]
    source, current = tmp_path / "rng.bin", tmp_path / "current"
    source.write_bytes(data)
    current.write_text("virtio_rng.0\n")
    binary = tmp_path / "hwrng"
    subprocess.run([cc, "-O1", "-Wall", "-Wextra", "-Werror", f"-I{INITRAMFS_SOURCES}",
                    f'-DDEVICE_PATH="{source}"', f'-DCURRENT_PATH="{current}"', "-o",
                    str(binary), str(PROGRAM), str(INITRAMFS_SOURCES / "vmsim.c")], check=True)
    out = subprocess.run([str(binary)], capture_output=True, text=True)
    run = GuestRun(out.returncode, out.stdout)
    result = run.result(gr.TEST)
    assert result is not None, out.stdout
    assert {key: result.get(key) for key in gr.hwrng_stats(data)} == gr.hwrng_stats(data)
    assert result["current"] == "virtio_rng.0"
    # a full read passes in the guest; only the host judges the bytes
    assert (result["result"], out.returncode) == (("pass", 0) if len(data) == gr.DEFAULT_BYTES
                                                  else ("fail", 1))


def test_random_check_accepts_random_bytes_and_rejects_constant_or_patterned() -> None:
    good = GuestRun(0, _result_line("none", "virtio_rng.0", os.urandom(gr.DEFAULT_BYTES)))
    assert gr.check_hwrng(good) == [] and gr.check_random(good) == []

    constant = GuestRun(0, _result_line("none", "virtio_rng.0", bytes(gr.DEFAULT_BYTES)))
    problems = gr.check_random(constant)
    assert any("only 1 distinct" in p for p in problems), problems
    assert any("a run of 65536" in p for p in problems), problems

    pattern = gr.pattern_stream(bytes(range(16)), gr.DEFAULT_BYTES)
    assert gr.check_random(GuestRun(0, _result_line("none", "virtio_rng.0", pattern)))
    # the statistics catch a source that favours one value, too
    skewed = bytearray(os.urandom(gr.DEFAULT_BYTES))
    skewed[::64] = b"\x00" * len(skewed[::64])
    assert gr.check_random(GuestRun(0, _result_line("none", "virtio_rng.0", bytes(skewed))))


def test_pattern_check_accepts_only_the_known_stream() -> None:
    pattern = b"vmsim-plugin-rng"
    exact = GuestRun(0, _result_line("none", "virtio_rng.0",
                                     gr.pattern_stream(pattern, gr.DEFAULT_BYTES)))
    assert gr.check_pattern(exact, pattern) == []
    assert gr.check_pattern(exact, b"vmsim-plugin-rnG")
    random = GuestRun(0, _result_line("none", "virtio_rng.0", os.urandom(gr.DEFAULT_BYTES)))
    assert gr.check_pattern(random, pattern)


def test_hwrng_checks_name_a_missing_or_foreign_rng() -> None:
    data = os.urandom(gr.DEFAULT_BYTES)
    none = GuestRun(1, _result_line("no-device", "none", b""))
    assert gr.check_no_device(none) == []
    problems = gr.check_hwrng(none)
    assert any("result=fail" in p for p in problems) and any("'none'" in p for p in problems)
    foreign = GuestRun(1, _result_line("not-virtio", "timeriomem_rng", data))
    assert any("not a virtio_rng" in p for p in gr.check_hwrng(foreign))
    assert gr.check_no_device(GuestRun(0, _result_line("none", "virtio_rng.0", data)))
    short = GuestRun(1, _result_line("short-read", "virtio_rng.0", data[:100]))
    assert any("read 100 bytes" in p for p in gr.check_hwrng(short))


# ------------------------------------------------------------------ real boots


@pytest.fixture(scope="module")
def guest() -> GuestPaths:
    return built_default_guest()


@pytest.fixture(scope="module")
def rng_run(guest: GuestPaths, tmp_path_factory: pytest.TempPathFactory) -> tuple[GuestRun, str]:
    """One boot with crypto in slot 0 and rng in slot 1; the device's trace goes to a file."""
    log = tmp_path_factory.mktemp("rng") / "trace.log"
    run = run_vmsim(guest, "console=ttyS0 vmsim.run=crypto-reg,hwrng",
                    BOTH + ("-d", "trace:virtio_rng_request", "-D", str(log)),
                    timeout=BOOT_TIMEOUT)
    return run, log.read_text() if log.exists() else ""


@pytest.mark.linux
def test_crypto_driver_still_registers_with_passing_self_tests(rng_run) -> None:
    run, _ = rng_run
    problems = gc.check_registration(run)
    assert not problems, _explain(run, problems)


@pytest.mark.linux
def test_kernel_reads_64_kib_from_the_virtio_rng(rng_run) -> None:
    run, _ = rng_run
    problems = gr.check_hwrng(run) + kernel_problems(run.console)
    assert not problems, _explain(run, problems)
    assert run.events("hwrng-current")[0]["name"].startswith("virtio_rng"), run.tail()


@pytest.mark.linux
def test_bytes_from_the_device_are_not_constant(rng_run) -> None:
    run, _ = rng_run
    problems = gr.check_random(run)
    assert not problems, _explain(run, problems)


@pytest.mark.linux
def test_device_trace_shows_it_served_what_the_guest_read(rng_run) -> None:
    """Every byte the guest read went through vmsim's device: the requests the device
    traced add up to at least the 64 KiB (the kernel's hwrng thread reads some more)."""
    run, trace = rng_run
    served = [int(m) for m in re.findall(r"virtio_rng_request .*\bused=(\d+)", trace)]
    assert sum(served) >= gr.DEFAULT_BYTES, (len(served), trace[-2000:], run.tail())
    assert set(served) == {64}, "Linux's virtio_rng asks for 64 bytes at a time"


@pytest.mark.linux
def test_run_powers_off_with_success(rng_run) -> None:
    run, _ = rng_run
    assert not run.timed_out and run.status == 0, run.tail()


@pytest.mark.linux
def test_without_the_rng_device_hwrng_reports_no_device(guest: GuestPaths) -> None:
    run = run_vmsim(guest, "console=ttyS0 vmsim.run=hwrng", CRYPTO_ONLY, timeout=BOOT_TIMEOUT)
    problems = gr.check_no_device(run) + kernel_problems(run.console)
    assert not problems, _explain(run, problems)
    assert gr.check_hwrng(run), "the rng check must fail without the device"
    assert run.status != 0 and not run.timed_out, run.tail()
