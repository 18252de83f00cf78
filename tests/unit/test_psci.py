"""PSCI 1.0 as arm64 Linux's psci driver uses it, and NOT_SUPPORTED for the rest."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsim.devices.power import PowerRequest
from vmsim.firmware.psci import PsciResult, psci_call

MASK64 = (1 << 64) - 1
NOT_SUPPORTED, INVALID_PARAMETERS, DENIED, ALREADY_ON = (
    -1 & MASK64, -2 & MASK64, -3 & MASK64, -4 & MASK64)


def x0(function_id: int, *args: int) -> int:
    return psci_call(function_id, (*args, 0, 0, 0)[:3]).x0


def test_version_is_1_0() -> None:
    assert psci_call(0x8400_0000) == PsciResult(0x0001_0000)


def test_migrate_info_type_says_no_trusted_os() -> None:
    assert x0(0x8400_0006) == 2


@pytest.mark.parametrize("queried", [
    0x8400_0000, 0x8400_0001, 0xC400_0001, 0x8400_0002, 0x8400_0003, 0xC400_0003,
    0x8400_0004, 0xC400_0004, 0x8400_0006, 0x8400_0008, 0x8400_0009, 0x8400_000A])
def test_features_of_what_is_implemented(queried: int) -> None:
    assert x0(0x8400_000A, queried) == 0


@pytest.mark.parametrize("queried", [
    0x8000_0000,              # SMCCC_VERSION: SMCCC 1.0, as on QEMU 7.2
    0x8400_0005, 0x8400_0007, 0x8400_000E, 0xC400_000E, 0x8400_0012,
    0xC400_0000,              # PSCI_VERSION has no SMC64 ID
    0xC400_0008, 0x1234_5678, 0])
def test_features_of_the_rest(queried: int) -> None:
    assert x0(0x8400_000A, queried) == NOT_SUPPORTED


def test_system_off_and_reset_are_power_requests() -> None:
    assert psci_call(0x8400_0008).power == PowerRequest("poweroff", 0)
    assert psci_call(0x8400_0009).power == PowerRequest("reset", 0)
    assert psci_call(0x8400_0000).power is None


def test_cpu_on_and_off_for_the_one_cpu() -> None:
    assert x0(0xC400_0003, 0, 0x4008_0000, 0) == ALREADY_ON
    assert x0(0x8400_0003, 0) == ALREADY_ON
    assert x0(0xC400_0003, 1, 0x4008_0000, 0) == INVALID_PARAMETERS     # no CPU 1
    assert x0(0xC400_0003, 1 << 32) == INVALID_PARAMETERS                # Aff3 = 1
    assert x0(0x8400_0003, 1 << 32) == ALREADY_ON                        # SMC32: w1 only
    assert x0(0x8400_0002) == DENIED


def test_affinity_info() -> None:
    assert x0(0xC400_0004, 0, 0) == 0                                     # ON
    assert x0(0xC400_0004, 0x101, 0) == INVALID_PARAMETERS
    assert x0(0xC400_0004, 0x101, 2) == 0                                 # levels 0-1 ignored
    assert x0(0xC400_0004, 0, 4) == INVALID_PARAMETERS


def test_cpu_suspend_is_a_standby() -> None:
    assert psci_call(0xC400_0001, (0, 0x4008_0000, 0)) == PsciResult(0, standby=True)
    assert psci_call(0x8400_0001, (1 << 16 | 1 << 24, 0, 0)).standby
    reserved = psci_call(0xC400_0001, (1 << 17, 0, 0))
    assert reserved == PsciResult(INVALID_PARAMETERS)


@pytest.mark.parametrize("function_id", [
    0x8400_0005, 0xC400_0005, 0x8400_0007, 0x8400_000B, 0x8400_000E, 0x8400_0012,
    0x8400_001F, 0x8400_0020, 0x8000_0000, 0xC200_0000, 0xC400_0008, 0xC400_0000, 0])
def test_everything_else_is_not_supported(function_id: int) -> None:
    assert psci_call(function_id, (0, 0, 0)) == PsciResult(NOT_SUPPORTED)


@given(st.integers(0, MASK64), st.tuples(*[st.integers(0, MASK64)] * 3))
def test_any_call_answers_a_64_bit_x0(function_id: int, args: tuple[int, int, int]) -> None:
    result = psci_call(function_id, args)
    assert 0 <= result.x0 <= MASK64
