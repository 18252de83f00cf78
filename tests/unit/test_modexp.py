"""Raw RSA's modular exponentiation (vmsim.devices.virtio.crypto.modexp): OpenSSL's when
the host has libcrypto, Python's pow otherwise, and always the same result."""
from __future__ import annotations

import random

import pytest

from vmsim.devices.virtio.crypto import modexp as module
from vmsim.devices.virtio.crypto.modexp import modexp

CASES = [(0, 0, 7), (5, 0, 7), (0, 5, 7), (1, 1, 2), (10 ** 40, 3, 97),     # base > modulus
         (3, 10 ** 30, 2 ** 127 - 1), (7, 65537, 2 ** 64), (2, 5, 1 << 4096)]  # even moduli


def _random_cases(count: int) -> list[tuple[int, int, int]]:
    rng = random.Random(20240613)
    cases = []
    for bits in (64, 512, 1024, 2048, 4096):
        for _ in range(count):
            modulus = rng.getrandbits(bits) | 1 | (1 << (bits - 1))
            cases.append((rng.getrandbits(bits + 8), rng.getrandbits(bits), modulus))
    return cases


@pytest.mark.parametrize("base, exponent, modulus", CASES + _random_cases(3))
def test_matches_python_pow(base: int, exponent: int, modulus: int) -> None:
    assert modexp(base, exponent, modulus) == pow(base, exponent, modulus)


def test_the_host_library_is_used_where_there_is_one() -> None:
    """Debian's Python links libcrypto for ssl, so the fast path is the one that runs
    here; without it cost() must not assume the speed-up."""
    assert module.has_openssl()
    assert module.UNIT_SPEEDUP > 1


def test_without_libcrypto_it_is_pow(monkeypatch) -> None:
    monkeypatch.setattr(module, "_lib", None)
    assert modexp(4, 13, 497) == 445 == pow(4, 13, 497)
