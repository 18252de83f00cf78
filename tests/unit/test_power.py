"""The sifive-test power device: each value the guest may write."""
from __future__ import annotations

import pytest

from vmsim.devices.bus import MmioDevice
from vmsim.devices.power import PowerControl, PowerRequest


@pytest.fixture
def requests() -> list[PowerRequest]:
    return []


@pytest.fixture
def power(requests: list[PowerRequest]) -> PowerControl:
    return PowerControl(requests.append)


def test_is_an_mmio_device(power: PowerControl) -> None:
    assert isinstance(power, MmioDevice)


@pytest.mark.parametrize("value, expected", [
    (0x5555, PowerRequest("poweroff", 0)),
    (0x7777, PowerRequest("reset", 0)),
    (0x3333, PowerRequest("fail", 0)),
    (1 << 16 | 0x3333, PowerRequest("fail", 1)),
    (0xFFFF << 16 | 0x3333, PowerRequest("fail", 0xFFFF)),
    (0x0042_5555, PowerRequest("poweroff", 0)),  # QEMU ignores the upper half here
])
def test_finisher_values(power: PowerControl, requests: list[PowerRequest],
                         value: int, expected: PowerRequest) -> None:
    power.write(0, 4, value)
    assert requests == [expected]


@pytest.mark.parametrize("value", [0, 1, 0x5554, 0x4444, 0x3334, 0xFFFF])
def test_other_values_are_ignored(power: PowerControl, requests: list[PowerRequest], value: int) -> None:
    power.write(0, 4, value)
    assert requests == []


def test_other_offsets_and_sizes_are_ignored(power: PowerControl, requests: list[PowerRequest]) -> None:
    power.write(4, 4, 0x5555)
    power.write(0xFFC, 4, 0x5555)
    power.write(0, 1, 0x55)
    power.write(0, 8, 0x5555)
    assert requests == []
    assert power.read(0, 4) == 0
