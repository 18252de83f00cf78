"""QEMU 7.2 as the reference machine: the same guest on `virt` with its virtio-crypto device."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmsim.build.cache import Requirement, require
from vmsim.build.guest import GuestPaths
from vmsim.errors import VmsimError

OPENSBI_FIRMWARE = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin")


@dataclass(frozen=True)
class QemuMachine:
    """QEMU's `virt` for one architecture, as the reference for that architecture."""

    arch: str                       # as `vmsim guest build --arch` spells it
    program: str
    machine_args: tuple[str, ...]
    console: str                    # the guest's console= on this machine
    requirements: tuple[Requirement, ...]
    # riscv64 `virt` has the sifive-test finisher, so the init's exit code becomes
    # QEMU's; arm64 `virt` powers off through PSCI SYSTEM_OFF, which always gives 0.
    exit_code_from_guest: bool


RISCV64 = QemuMachine(
    "riscv64", "qemu-system-riscv64", ("-M", "virt", "-bios", str(OPENSBI_FIRMWARE)),
    "ttyS0", (Requirement("qemu-system-riscv64", "qemu-system-misc"),
              Requirement(str(OPENSBI_FIRMWARE), "opensbi")), exit_code_from_guest=True)
# No firmware: QEMU starts the kernel at EL1 and answers PSCI calls (hvc) itself. No NIC:
# the default one wants an option ROM the guest never uses.
AARCH64 = QemuMachine(
    "arm64", "qemu-system-aarch64", ("-M", "virt", "-cpu", "cortex-a72", "-nic", "none"),
    "ttyAMA0", (Requirement("qemu-system-aarch64", "qemu-system-arm"),),
    exit_code_from_guest=False)
QEMU_MACHINES = {machine.arch: machine for machine in (RISCV64, AARCH64)}
QEMU_REQUIREMENTS = RISCV64.requirements


def qemu_machine(arch: str) -> QemuMachine:
    try:
        return QEMU_MACHINES[arch]
    except KeyError:
        raise VmsimError(f"no QEMU reference machine for {arch!r} "
                         f"(choose from {', '.join(QEMU_MACHINES)})") from None


def qemu_command(paths: GuestPaths, append: str, memory: str = "256M",
                 arch: str = "riscv64") -> list[str]:
    """QEMU virt booting the guest with a virtio-crypto device: the reference machine.

    `force-legacy=false` matters: the Linux driver needs VIRTIO_F_VERSION_1.
    """
    machine = qemu_machine(arch)
    return [machine.program, *machine.machine_args, "-m", memory, "-nographic",
            "-kernel", str(paths.kernel), "-initrd", str(paths.initrd), "-append", append,
            "-global", "virtio-mmio.force-legacy=false",
            "-object", "cryptodev-backend-builtin,id=c0",
            "-device", "virtio-crypto-device,cryptodev=c0"]


@dataclass(frozen=True)
class QemuRun:
    exit_code: int
    output: str


def run_in_qemu(paths: GuestPaths, append: str = "console=ttyS0",
                timeout: float = 120.0, arch: str = "riscv64") -> QemuRun:
    """Boot the guest under QEMU to poweroff; on riscv64 the exit code is the init's."""
    require(qemu_machine(arch).requirements)
    try:
        proc = subprocess.run(qemu_command(paths, append, arch=arch), capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VmsimError(f"QEMU did not power off within {timeout:.0f} s") from None
    return QemuRun(proc.returncode, proc.stdout.decode(errors="replace"))
