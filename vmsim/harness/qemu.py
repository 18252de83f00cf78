"""QEMU 7.2 as the reference machine: the same guest on `virt` with its virtio-crypto device."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmsim.build.cache import Requirement, require
from vmsim.build.guest import GuestPaths
from vmsim.errors import VmsimError

OPENSBI_FIRMWARE = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin")
QEMU_REQUIREMENTS = (
    Requirement("qemu-system-riscv64", "qemu-system-misc"),
    Requirement(str(OPENSBI_FIRMWARE), "opensbi"),
)


def qemu_command(paths: GuestPaths, append: str, memory: str = "256M") -> list[str]:
    """QEMU virt booting the guest with a virtio-crypto device: the reference machine.

    `force-legacy=false` matters: the Linux driver needs VIRTIO_F_VERSION_1.
    """
    return ["qemu-system-riscv64", "-M", "virt", "-m", memory, "-nographic",
            "-bios", str(OPENSBI_FIRMWARE), "-kernel", str(paths.kernel),
            "-initrd", str(paths.initrd), "-append", append,
            "-global", "virtio-mmio.force-legacy=false",
            "-object", "cryptodev-backend-builtin,id=c0",
            "-device", "virtio-crypto-device,cryptodev=c0"]


@dataclass(frozen=True)
class QemuRun:
    exit_code: int
    output: str


def run_in_qemu(paths: GuestPaths, append: str = "console=ttyS0",
                timeout: float = 120.0) -> QemuRun:
    """Boot the guest under QEMU to poweroff; the exit code is the init's."""
    require(QEMU_REQUIREMENTS)
    try:
        proc = subprocess.run(qemu_command(paths, append), capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VmsimError(f"QEMU did not power off within {timeout:.0f} s") from None
    return QemuRun(proc.returncode, proc.stdout.decode(errors="replace"))
