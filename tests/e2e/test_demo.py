"""`vmsim demo`, the README's main command, passes every check on the default guest."""
from __future__ import annotations

import pytest

from tests.support.guest import built_default_guest
from vmsim.cli.main import main

pytestmark = pytest.mark.linux


def test_demo_boots_checks_and_summarises(capsys) -> None:
    built_default_guest()
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out[-3000:]
    assert "Every check passed." in out
    for driver in ("virtio_crypto_aes_cbc", "virtio-crypto-rsa", "virtio-pkcs1-rsa"):
        assert driver in out
    assert "dataq.0" in out and "controlq" in out


def test_demo_rejects_a_bad_queue_count(capsys) -> None:
    assert main(["demo", "--crypto-queues", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vmsim: error: --crypto-queues")
