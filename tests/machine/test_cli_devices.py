"""`vmsim run -device ...` and `-d/-D` end to end on bare-metal programs.

The programs read the virtio-mmio registers of the slots the command line populated,
so a device in the wrong slot, or a log line that is missing or repeated, fails here.
"""
from __future__ import annotations

import pytest

from vmsim.cli.main import main

SLOT0, SLOT1 = 0x1000_1000, 0x1000_2000
MAGIC, DEVICE_ID, STATUS = 0x000, 0x008, 0x070
VIRT_MAGIC = 0x7472_6976                         # "virt"

# Exit 0 when slot 0 holds virtio-crypto (ID 20) and slot 1 virtio-rng (ID 4);
# otherwise a code that says which check failed.
TWO_DEVICES = f"""
    li t3, {SLOT0:#x}
    lw t4, {MAGIC}(t3)
    li t5, {VIRT_MAGIC:#x}
    bne t4, t5, 1f
    lw t4, {DEVICE_ID}(t3)
    li t5, 20
    bne t4, t5, 2f
    li t3, {SLOT1:#x}
    lw t4, {DEVICE_ID}(t3)
    li t5, 4
    bne t4, t5, 3f
    exit 0
1:  exit 11
2:  exit 12
3:  exit 13
"""

# Two identical writes of a register virtio-mmio does not have, then a legal status
# write (ACKNOWLEDGE) that a trace shows.
BAD_REGISTER_WRITES = f"""
    li t3, {SLOT0:#x}
    li t4, 1
    sw t4, 0x0fc(t3)
    sw t4, 0x0fc(t3)
    sw t4, {STATUS}(t3)
    exit 0
"""


def test_device_help_lists_every_model(capsys) -> None:
    assert main(["run", "-device", "help"]) == 0
    out = capsys.readouterr().out
    assert "virtio-crypto" in out and "virtio-rng" in out


def test_a_model_lists_its_options(capsys) -> None:
    assert main(["run", "-device", "virtio-crypto,help"]) == 0
    out = capsys.readouterr().out
    for option in ("queues=", "workers=", "ready=", "stateless=", "max-inflight="):
        assert option in out


@pytest.mark.parametrize("argv, words", [
    (["-device", "virtio-nothing"], "unknown device 'virtio-nothing'"),
    (["-device", "virtio-crypto,colour=red"], "no option 'colour'"),
    (["-device", "virtio-crypto,queues=many"], "not a whole number"),
    (["-device", "virtio-crypto,queues=0"], "out of range"),
    (["-device", "virtio-crypto,ready=perhaps"], "use on or off"),
    (["-device", "virtio-crypto,queues=2,queues=3"], "given twice"),
    (["-device", ""], "needs a model name"),
    (["-device", "virtio-rng", "--crypto-queues", "2"], "shorthand"),
    (["-d", "everything"], "unknown -d category"),
    (["-d", "trace:"], "needs a pattern"),
    (["-D", "/nonexistent-dir/log"], "cannot write the log"),
])
def test_bad_device_and_log_options_are_one_line(capsys, build, argv, words) -> None:
    kernel = build("exit 0\n")
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", *argv]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("vmsim: error: ") and words in err[0], err


def test_each_device_takes_the_next_slot(build, tmp_path) -> None:
    kernel = build(TWO_DEVICES)
    dtb = tmp_path / "board.dtb"
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", "--dtb-out", str(dtb),
                 "-device", "virtio-crypto,workers=0", "--device", "virtio-rng"]) == 0
    blob = dtb.read_bytes()
    assert b"virtio_mmio@10001000" in blob and b"virtio_mmio@10002000" in blob
    assert b"virtio_mmio@10003000" not in blob


def test_the_crypto_shorthands_still_make_one_crypto_device(build, tmp_path) -> None:
    kernel = build(TWO_DEVICES.replace(f"li t3, {SLOT1:#x}", "exit 0\n    li t3, 0"))
    dtb = tmp_path / "board.dtb"
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", "--crypto-workers", "0",
                 "--dtb-out", str(dtb)]) == 0
    assert b"virtio_mmio@10002000" not in dtb.read_bytes()


def test_guest_errors_are_logged_once_to_the_log_file(build, capsys, tmp_path) -> None:
    kernel = build(BAD_REGISTER_WRITES)
    log = tmp_path / "vmsim.log"
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", "-d", "guest_errors",
                 "-D", str(log), "-device", "virtio-rng"]) == 0
    lines = [line for line in log.read_text().splitlines() if "register 0xfc" in line]
    assert len(lines) == 1 and "vmsim.guest_errors" in lines[0], log.read_text()
    assert capsys.readouterr().err == ""


def test_without_d_guest_errors_are_quiet(build, capsys) -> None:
    kernel = build(BAD_REGISTER_WRITES)
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", "-device", "virtio-rng"]) == 0
    assert capsys.readouterr().err == ""


def test_d_guest_errors_without_D_goes_to_stderr_as_one_line(build, capsys) -> None:
    kernel = build(BAD_REGISTER_WRITES)
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", "-d", "guest_errors",
                 "-device", "virtio-rng"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["vmsim: guest_errors: virtio-rng: write of 4 bytes to register 0xfc"]


def test_trace_patterns_select_events_by_name(build, tmp_path) -> None:
    kernel = build(BAD_REGISTER_WRITES)
    log = tmp_path / "trace.log"
    assert main(["run", "--kernel", str(kernel), "--mem", "16M", "-d", "trace:virtio_rng_st*",
                 "-D", str(log), "-device", "virtio-rng"]) == 0
    text = log.read_text()
    assert "virtio_rng_status" in text and "ACKNOWLEDGE" in text
    assert "virtio_rng_ignored" not in text          # not selected by the pattern
