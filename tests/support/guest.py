"""What the tests need from the machine they run on: the built default guests and host tools.

A quick local run skips a test whose guest or tool is missing. `make test` installs
everything first and sets VMSIM_REQUIRE_GUEST=1, and then a missing piece fails the test
with a clear message instead: a silent skip there would hide whole suites.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from vmsim.boards import Board, default_append, for_arch
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


# ------------------------------------------------------------ one test, every board

# The boards the Linux end-to-end tests run on, each with its default guest (built by
# `make guest`, which `make test` runs first). A test that takes the `board` fixture
# (tests/conftest.py) runs once per board, with the board's name as its id.
BOARD_ARCHES = ("riscv64", "arm64")
# Debian's own arm64 kernel (`vmsim guest build --arch arm64 --distro`) on the arm64
# board: a guest a test may add to the boards' default ones, named as in
# tests/e2e/test_guest_qemu.py.
ARM64_DEBIAN = "arm64-debian"


@dataclass(frozen=True)
class BoardGuest:
    """A board and its guest, as the tests that run on every board see it."""

    arch: str
    paths: GuestPaths
    distro: bool = False          # Debian's own kernel instead of the default guest

    @property
    def board(self) -> Board:
        return for_arch(self.arch)

    def append(self, options: str = "") -> str:
        """A kernel command line with the console on this board's UART (ttyS0 on
        riscv64, ttyAMA0 on arm64), then `options`."""
        return f"{default_append(self.board)} {options}".strip()

    @property
    def exit_code_from_guest(self) -> bool:
        """Whether vmsim's exit status carries the init's exit code. riscv64 `virt` has
        the sifive-test finisher the init writes its code to; arm64 `virt` powers off
        through PSCI SYSTEM_OFF, which carries none, so vmsim exits 0 and the code is
        only in the init's `@vmsim event=done exit=N` line."""
        return self.arch == "riscv64"

    def host_status(self, init_exit: int) -> int:
        """What vmsim exits with when the guest's init ends with `init_exit`."""
        return init_exit if self.exit_code_from_guest else 0


def board_guest(name: str) -> BoardGuest:
    """The default guest of the board of arch `name`, or ARM64_DEBIAN; arm64 also needs
    the patched engine (its aarch64 target is vmsim's own, vmsim.core.arm64_cpu)."""
    distro = name == ARM64_DEBIAN
    arch = "arm64" if distro else name
    if arch != DEFAULT_ARCH:
        require_patched_engine()
    paths = built_distro_guest(arch) if distro else built_default_guest(arch)
    return BoardGuest(arch, paths, distro)


