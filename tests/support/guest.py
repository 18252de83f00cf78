"""What the tests need from the machine they run on: the built default guest and host tools.

A quick local run skips a test whose guest or tool is missing. `make test` installs
everything first and sets VMSIM_REQUIRE_GUEST=1, and then a missing piece fails the test
with a clear message instead: a silent skip there would hide whole suites.
"""
from __future__ import annotations

import os

import pytest

from vmsim.build.cache import Requirement, require
from vmsim.build.guest import DEFAULT_ARCH, GuestPaths, guest_paths
from vmsim.errors import VmsimError

REQUIRE_ENV = "VMSIM_REQUIRE_GUEST"

# The host tools tests drive, each named with its Debian package so that a missing one
# says what to install (scripts/install-system-deps.sh installs them all).
CROSS_AS = Requirement("riscv64-linux-gnu-as", "binutils-riscv64-linux-gnu")
CROSS_LD = Requirement("riscv64-linux-gnu-ld", "binutils-riscv64-linux-gnu")
CROSS_OBJCOPY = Requirement("riscv64-linux-gnu-objcopy", "binutils-riscv64-linux-gnu")
CROSS_AARCH64_AS = Requirement("aarch64-linux-gnu-as", "binutils-aarch64-linux-gnu")
CROSS_AARCH64_LD = Requirement("aarch64-linux-gnu-ld", "binutils-aarch64-linux-gnu")
HOST_CC = Requirement("gcc", "gcc")
DTC = Requirement("dtc", "device-tree-compiler")
QEMU_AARCH64 = Requirement("qemu-system-aarch64", "qemu-system-arm")


def missing(message: str) -> None:
    """Fail under `make test`, skip otherwise."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def built_default_guest(arch: str = DEFAULT_ARCH) -> GuestPaths:
    """The cached default guest of `arch`."""
    paths = guest_paths(arch)
    if not (paths.kernel.exists() and paths.initrd.exists()):
        option = "" if arch == DEFAULT_ARCH else f" --arch {arch}"
        missing(f"the default {arch} guest is not built (run `vmsim guest build{option}`)")
    return paths


def built_distro_guest(arch: str = "arm64") -> GuestPaths:
    """The cached guest of the distribution's own kernel (vmsim/build/distro.py)."""
    from vmsim.build.distro import distro_guest_paths

    try:
        paths = distro_guest_paths(arch)
    except VmsimError as error:
        missing(str(error))
    if not (paths.kernel.exists() and paths.initrd.exists()):
        missing(f"the Debian {arch} kernel's guest is not built "
                f"(run `vmsim guest build --arch {arch} --distro`)")
    return paths


def require_tools(*requirements: Requirement) -> None:
    """Host programs or files a test drives (QEMU, cross binutils, dtc)."""
    try:
        require(tuple(requirements))
    except VmsimError as error:
        missing(str(error))


def require_patched_engine() -> None:
    """The patched libunicorn, which `make test` builds first (`make unicorn`)."""
    from vmsim.build.unicorn import cached_patched_unicorn

    if cached_patched_unicorn() is None:
        missing("the patched libunicorn is not built (run `make unicorn`)")
