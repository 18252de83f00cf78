"""`vmsim run --trace` on the default guest of every board (the `board` fixture,
tests/conftest.py): the Linux driver's negotiation, its sessions on the control queue
and its AF_ALG requests on the data queue are all in the file, in order, stamped with
the board's guest time, and `vmsim trace stats` reads it."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.guest import BoardGuest
from vmsim.harness.results import init_exit
from vmsim.harness.runs import run_vmsim
from vmsim.trace.model import TraceModel
from vmsim.trace.record import read_trace

BOOT_TIMEOUT = 180.0
# What guest time counts in: riscv64 `virt`'s timebase, arm64's generic counter.
TIMEBASE_HZ = {"riscv64": 10_000_000, "arm64": 62_500_000}


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory: pytest.TempPathFactory, board: BoardGuest):
    path = tmp_path_factory.mktemp("trace") / "boot.jsonl"
    run = run_vmsim(board.paths, board.append("quiet vmsim.run=crypto-reg,afalg-kat,rsa-keyctl"),
                    ("--trace", str(path)), timeout=BOOT_TIMEOUT)
    return run, path, board


@pytest.mark.linux
def test_the_trace_holds_the_whole_driver_conversation(traced_run) -> None:
    run, path, board = traced_run
    assert run.status == 0 and init_exit(run.lines) == 0, run.tail()
    trace = read_trace(path)
    assert trace.complete and trace.lost == 0
    assert trace.header["timebase_hz"] == TIMEBASE_HZ[board.arch]
    kinds = [r.kind for r in trace.records]
    # The driver negotiates before it sets up queues, and sets them up before any kick.
    assert kinds.index("features") < kinds.index("queue_setup") < kinds.index("notify")
    model = TraceModel(trace.devices)
    model.apply_all(trace.records)
    dataq, controlq = model.queue("virtio-crypto", 0), model.queue("virtio-crypto", 1)
    assert controlq.name == "controlq" and controlq.pops > 0 and controlq.fills == controlq.pops
    assert dataq.pops > 0 and dataq.fills == dataq.pops and dataq.in_flight == 0
    assert model.ops["CIPHER_ENCRYPT"].count > 0 and model.ops["AKCIPHER_CREATE_SESSION"].count > 0
    assert set(model.ops["CIPHER_ENCRYPT"].statuses) == {"OK"}
    assert model.devices["virtio-crypto"].config["max_dataqueues"] == 1
    assert "VERSION_1" in model.devices["virtio-crypto"].accepted
    assert all(r.t_irq is not None for r in model.requests if r.done), "every completion interrupted"
    guest_times = [r.g for r in trace.records]
    assert guest_times == sorted(guest_times) and guest_times[0] > 0
