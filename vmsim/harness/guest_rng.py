"""Host side of the guest's hwrng program (guests/initramfs/programs/hwrng.c): the same
statistics computed in Python, and the checks of its result line.

The guest reads /dev/hwrng and prints how many bytes it got, their FNV-1a 64 digest,
how many distinct byte values it saw, the longest run of one value, the count of the
most frequent value, and the first 32 bytes. The host decides from those whether the
bytes look random (`check_random`) or are exactly a known device's (`check_pattern`).
Every `check_*` returns a list of problems, empty when the run is right.
"""
from __future__ import annotations

import math
from collections import Counter

from vmsim.harness.guest_crypto import digest_hex
from vmsim.harness.results import GuestRun, check_result

TEST = "hwrng"
DEFAULT_BYTES = 65536
HEAD_BYTES = 32
VIRTIO_PREFIX = "virtio_rng"


def hwrng_stats(data: bytes) -> dict[str, str]:
    """What hwrng.c prints about `data`, as the strings it prints."""
    counts = Counter(data)
    longest = run = 0
    for i, byte in enumerate(data):
        run = run + 1 if i and byte == data[i - 1] else 1
        longest = max(longest, run)
    return {"bytes": str(len(data)), "digest": digest_hex(data), "distinct": str(len(counts)),
            "longest_run": str(longest), "max_count": str(max(counts.values(), default=0)),
            "head": data[:HEAD_BYTES].hex() or "-"}


def check_hwrng(run: GuestRun, want_bytes: int = DEFAULT_BYTES) -> list[str]:
    """hwrng passed: rng_current names a virtio_rng device and all bytes were read."""
    problems = check_result(run, TEST)
    result = run.result(TEST) or {}
    current = result.get("current", "")
    if not current.startswith(VIRTIO_PREFIX):
        problems.append(f"hwrng: rng_current is {current!r}, not a {VIRTIO_PREFIX} device")
    if result.get("bytes") != str(want_bytes):
        problems.append(f"hwrng: read {result.get('bytes')} bytes, want {want_bytes} "
                        f"(err={result.get('err')})")
    return problems


def random_limits(size: int) -> tuple[int, int, int]:
    """(least distinct values, longest run, largest count of one value) that uniform
    random bytes stay within except with negligible probability, for `size` bytes.

    A run of k equal bytes starts at a given place with probability 256**-(k-1), so
    over 64 KiB one of 7 is about 2**-40 likely. A value's count is binomial with mean
    size/256; ten standard deviations above it is never reached in practice. Every
    value appears once size is 16 KiB or more (a missing one: 256 * e**-64)."""
    mean = size / 256
    distinct = 256 if size >= 16384 else 1 if size else 0
    return distinct, 6, int(mean + 10 * math.sqrt(mean) + 8)


def check_random(run: GuestRun) -> list[str]:
    """The bytes hwrng read are not constant, nor anything else visibly non-random."""
    result = run.result(TEST) or {}
    try:
        size, distinct = int(result["bytes"]), int(result["distinct"])
        longest, max_count = int(result["longest_run"]), int(result["max_count"])
    except (KeyError, ValueError):
        return [f"hwrng: no statistics in {result}"]
    least, longest_limit, count_limit = random_limits(size)
    problems = []
    if distinct < least:
        problems.append(f"hwrng: only {distinct} distinct byte values in {size} bytes")
    if longest > longest_limit:
        problems.append(f"hwrng: a run of {longest} equal bytes")
    if max_count > count_limit:
        problems.append(f"hwrng: one byte value {max_count} times in {size} bytes "
                        f"(limit {count_limit})")
    return problems


def pattern_stream(pattern: bytes, size: int) -> bytes:
    """`size` bytes of `pattern` repeated: what a device that fills every buffer with
    the pattern from its start gives, as long as the guest's reads start at multiples
    of the pattern's length (Linux's virtio_rng uses 64-byte buffers and the hwrng core
    takes 32 or 64 bytes at a time, so a pattern length dividing 32 stays in phase)."""
    return (pattern * (size // len(pattern) + 1))[:size]


def check_pattern(run: GuestRun, pattern: bytes, size: int = DEFAULT_BYTES) -> list[str]:
    """hwrng read exactly the pattern-filled stream: a device whose bytes are known."""
    result = run.result(TEST) or {}
    want = hwrng_stats(pattern_stream(pattern, size))
    return [f"hwrng: {key}={result.get(key)}, want {value} (the pattern {pattern!r})"
            for key, value in want.items() if result.get(key) != value]


def check_no_device(run: GuestRun) -> list[str]:
    """hwrng found no rng at all: it failed with what=no-device and rng_current none."""
    problems = check_result(run, TEST, "fail")
    result = run.result(TEST) or {}
    if result.get("what") != "no-device" or result.get("current") != "none":
        problems.append(f"hwrng: want what=no-device current=none, got {result}")
    if result.get("bytes") != "0":
        problems.append(f"hwrng: read {result.get('bytes')} bytes with no device")
    return problems
