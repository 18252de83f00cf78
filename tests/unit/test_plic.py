"""The PLIC through its MMIO registers, with devices' lines driven directly."""
from __future__ import annotations

import pytest

from vmsim.devices.bus import MmioDevice
from vmsim.devices.plic import Plic

M_CTX, S_CTX = 0, 1


def priority(src: int) -> int:
    return 4 * src


def enable(ctx: int, src: int = 0) -> int:
    return 0x2000 + 0x80 * ctx + 4 * (src // 32)


def threshold(ctx: int) -> int:
    return 0x20_0000 + 0x1000 * ctx


def claim(ctx: int) -> int:
    return threshold(ctx) + 4


class Outputs:
    """Records every on_context_irq call, and the current level per context."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []
        self.level = {M_CTX: False, S_CTX: False}

    def __call__(self, ctx: int, level: bool) -> None:
        self.calls.append((ctx, level))
        self.level[ctx] = level


@pytest.fixture
def out() -> Outputs:
    return Outputs()


@pytest.fixture
def plic(out: Outputs) -> Plic:
    return Plic(on_context_irq=out)


def setup_source(plic: Plic, src: int, prio: int, ctx: int = S_CTX) -> None:
    plic.write(priority(src), 4, prio)
    word = plic.read(enable(ctx, src), 4)
    plic.write(enable(ctx, src), 4, word | 1 << (src % 32))


def test_is_an_mmio_device(plic: Plic) -> None:
    assert isinstance(plic, MmioDevice)


def test_priority_registers_hold_three_bits_and_source_zero_is_reserved(plic: Plic) -> None:
    plic.write(priority(10), 4, 5)
    plic.write(priority(11), 4, 0xFF)
    plic.write(priority(0), 4, 7)
    assert plic.read(priority(10), 4) == 5
    assert plic.read(priority(11), 4) == 7
    assert plic.read(priority(0), 4) == 0
    assert plic.read(priority(96), 4) == 0  # beyond num_sources


def test_enable_bits_are_per_context_and_masked_to_valid_sources(plic: Plic) -> None:
    plic.write(enable(S_CTX, 0), 4, 0xFFFF_FFFF)
    plic.write(enable(S_CTX, 95), 4, 0xFFFF_FFFF)
    assert plic.read(enable(S_CTX, 0), 4) == 0xFFFF_FFFE  # source 0 does not exist
    assert plic.read(enable(S_CTX, 95), 4) == 0xFFFF_FFFF  # sources 64..95
    assert plic.read(enable(M_CTX, 0), 4) == 0
    plic.write(enable(S_CTX, 64) + 4, 4, 0xFFFF_FFFF)  # sources 96..127 do not exist
    assert plic.read(enable(S_CTX, 64) + 4, 4) == 0


def test_threshold_register(plic: Plic) -> None:
    plic.write(threshold(S_CTX), 4, 3)
    assert plic.read(threshold(S_CTX), 4) == 3
    assert plic.read(threshold(M_CTX), 4) == 0


def test_pending_bits_follow_the_line_and_are_read_only(plic: Plic) -> None:
    line = plic.line(33)
    line.set_level(True)
    assert plic.read(0x1000 + 4, 4) == 1 << 1
    plic.write(0x1000 + 4, 4, 0)
    assert plic.read(0x1000 + 4, 4) == 1 << 1
    line.set_level(False)
    assert plic.read(0x1000 + 4, 4) == 0


def test_output_rises_only_when_enabled_with_priority_above_threshold(plic: Plic, out: Outputs) -> None:
    plic.line(10).set_level(True)
    assert out.calls == []  # priority 0 and not enabled
    plic.write(priority(10), 4, 1)
    assert out.calls == []  # still not enabled
    plic.write(enable(S_CTX, 10), 4, 1 << 10)
    assert out.calls == [(S_CTX, True)]
    plic.write(threshold(S_CTX), 4, 1)
    assert out.calls[-1] == (S_CTX, False)  # priority must exceed the threshold
    plic.write(threshold(S_CTX), 4, 0)
    assert out.level == {M_CTX: False, S_CTX: True}


def test_claim_returns_the_highest_priority_pending_source(plic: Plic) -> None:
    setup_source(plic, 1, 1)
    setup_source(plic, 5, 3)
    setup_source(plic, 7, 3)
    setup_source(plic, 10, 2)
    for src in (1, 5, 7, 10):
        plic.line(src).set_level(True)
    claims = [plic.read(claim(S_CTX), 4) for _ in range(5)]
    assert claims == [5, 7, 10, 1, 0]  # equal priority: lowest ID first; then nothing


def test_claim_ignores_sources_enabled_only_for_the_other_context(plic: Plic, out: Outputs) -> None:
    setup_source(plic, 4, 1, ctx=M_CTX)
    plic.line(4).set_level(True)
    assert out.level == {M_CTX: True, S_CTX: False}
    assert plic.read(claim(S_CTX), 4) == 0
    assert plic.read(claim(M_CTX), 4) == 4


def test_claim_clears_pending_and_complete_repends_a_line_still_high(plic: Plic, out: Outputs) -> None:
    setup_source(plic, 10, 1)
    line = plic.line(10)
    line.set_level(True)
    assert plic.read(claim(S_CTX), 4) == 10
    assert not plic.pending(10) and not out.level[S_CTX]
    line.set_level(False)
    line.set_level(True)  # a claimed source does not pend again before completion
    assert not plic.pending(10) and not out.level[S_CTX]
    plic.write(claim(S_CTX), 4, 10)
    assert plic.pending(10) and out.level[S_CTX]
    assert plic.read(claim(S_CTX), 4) == 10


def test_complete_with_the_line_low_leaves_nothing_pending(plic: Plic, out: Outputs) -> None:
    setup_source(plic, 3, 1)
    line = plic.line(3)
    line.set_level(True)
    assert plic.read(claim(S_CTX), 4) == 3
    line.set_level(False)
    plic.write(claim(S_CTX), 4, 3)
    assert not plic.pending(3)
    assert out.calls == [(S_CTX, True), (S_CTX, False)]
    line.set_level(True)
    assert out.level[S_CTX]


def test_line_dropping_before_claim_withdraws_the_request(plic: Plic, out: Outputs) -> None:
    setup_source(plic, 2, 1)
    line = plic.line(2)
    line.set_level(True)
    line.set_level(False)
    assert out.calls == [(S_CTX, True), (S_CTX, False)]
    assert plic.read(claim(S_CTX), 4) == 0


def test_bogus_completions_are_ignored(plic: Plic) -> None:
    setup_source(plic, 6, 1)
    plic.line(6).set_level(True)
    assert plic.read(claim(S_CTX), 4) == 6
    for bogus in (0, 96, 0xFFFF_FFFF, 5):
        plic.write(claim(S_CTX), 4, bogus)
    plic.write(claim(M_CTX), 4, 6)  # source 6 is not enabled for the M context
    assert plic.read(claim(S_CTX), 4) == 0  # 6 is still claimed
    plic.write(claim(S_CTX), 4, 6)
    assert plic.read(claim(S_CTX), 4) == 6


def test_enable_change_moves_the_output(plic: Plic, out: Outputs) -> None:
    plic.write(priority(9), 4, 1)
    plic.line(9).set_level(True)
    plic.write(enable(S_CTX, 9), 4, 1 << 9)
    plic.write(enable(S_CTX, 9), 4, 0)
    assert out.calls == [(S_CTX, True), (S_CTX, False)]


def test_odd_accesses_and_unknown_offsets_never_raise(plic: Plic) -> None:
    offsets = [0, 2, 0x1000, 0x1FFC, 0x2000 + 0x80 * 2, 0x20_0000 + 0x1000 * 2 + 4,
               0x20_0008, 0x5F_FFFC, 0x60_0000]
    for offset in offsets:
        for size in (1, 2, 4, 8):
            plic.write(offset, size, 0xFFFF_FFFF_FFFF_FFFF)
            assert isinstance(plic.read(offset, size), int)


def test_line_rejects_sources_outside_the_controller(plic: Plic) -> None:
    with pytest.raises(ValueError):
        plic.line(0)
    with pytest.raises(ValueError):
        plic.line(96)
