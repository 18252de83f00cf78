"""vmsim.log: QEMU-style categories, once-only guest errors, and internal errors that
reach the log with their traceback but never the console as one."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from vmsim import log
from vmsim.devices.virtio.crypto import execute
from vmsim.devices.virtio.crypto.constants import CipherAlgo, Status
from vmsim.testing.crypto_rig import ServiceRig


@pytest.fixture(autouse=True)
def _reset_log() -> Iterator[None]:
    yield
    log.close()


def test_categories_and_trace_patterns_parse() -> None:
    assert log.parse_categories("guest_errors,unimp,trace:virtio*") == (
        {"guest_errors", "unimp"}, ("virtio*",))
    assert log.parse_categories("") == (set(), ())
    with pytest.raises(log.LogSetupError, match="unknown -d category 'exec'"):
        log.parse_categories("exec")


def test_a_guest_error_is_logged_once_per_reason(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log.configure({log.GUEST_ERRORS}, (), path)
    for _ in range(3):
        log.guest_error("dev", "bad chain")
    log.guest_error("dev", "bad register")
    log.unimplemented("dev", "SHM regions")          # unimp is not enabled
    log.close()
    lines = path.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["dev: bad chain", "dev: bad register"]


def test_distinct_reasons_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log.configure({log.GUEST_ERRORS}, (), path)
    for n in range(log.MAX_DISTINCT + 50):
        log.guest_error("dev", f"length {n}")
    log.close()
    assert len(path.read_text().splitlines()) == log.MAX_DISTINCT


def test_nothing_is_logged_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log.configure((), (), path)
    log.guest_error("dev", "bad chain")
    log.close()
    assert path.read_text() == ""


def _broken_compute(job: execute.Job) -> bytes:
    raise RuntimeError("a bug in vmsim")


def test_an_internal_error_becomes_err_for_the_guest_and_a_traceback_in_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "log"
    log.configure((), (), path)
    monkeypatch.setattr(execute, "_compute", _broken_compute)
    rig = ServiceRig()
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        assert rig.cipher(sid, bytes(16), bytes(32)).status == Status.ERR
    finally:
        rig.close()
    log.close()
    text = path.read_text()
    assert "vmsim.internal" in text and "Traceback" in text and "a bug in vmsim" in text
    assert capsys.readouterr().err == ""


def test_without_a_log_file_an_internal_error_is_one_console_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    log.configure()
    monkeypatch.setattr(execute, "_compute", _broken_compute)
    rig = ServiceRig()
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        assert rig.cipher(sid, bytes(16), bytes(32)).status == Status.ERR
    finally:
        rig.close()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("vmsim: internal: virtio-crypto:"), err
    assert "-D FILE keeps the traceback" in err[0]
