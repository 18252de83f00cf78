"""Puts an arm64 kernel, its initrd and the device tree into guest RAM (the arm64 board).

The arm64 boot protocol (Linux's Documentation/arm64/booting.rst): the `Image` goes
`text_offset` bytes above a 2 MiB aligned base in RAM and runs from its first byte at
EL1 with the MMU off, x0 = the device tree's physical address and x1-x3 = 0. The
64-byte header gives text_offset, the image's effective size (bss included) and flags.
QEMU also takes a gzip-compressed Image (Debian's `vmlinuz` is plain, a kernel
build's `Image.gz` is not), and so does vmsim. A bare-metal program may be an
AArch64 ELF file instead, loaded at its physical addresses.

    RAM base (2 MiB aligned) + text_offset   kernel, then its bss (image_size)
    next 2 MiB boundary                      device tree (its own 2 MiB region)
    ...                                      free
    top of RAM                               initrd (page aligned)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vmsim.core.gzip_kernel import gunzip, is_gzip
from vmsim.core.kernel_format import ARM64_IMAGE_MAGIC
from vmsim.core.loader import (ARM64_ELF, ELF_MAGIC, BootImage, BootLayout, align_up, load_elf,
                               load_initrd, place, place_dtb, read_file, require_in_ram)
from vmsim.devices.memory import Ram
from vmsim.errors import VmsimError

KERNEL_ALIGN = 2 << 20
DTB_ALIGN = 2 << 20          # the DTB is mapped in 2 MiB blocks: give it a block of its own
LEGACY_TEXT_OFFSET = 0x8_0000  # kernels before 3.17 have image_size 0 and mean this
HEADER = struct.Struct("<IIQQQQQQ4sI")
# Flags bit 0; bits 1-2 (page size) need nothing here, and bit 3 (may go anywhere) is
# met by going as low as possible, which every kernel accepts.
FLAG_BIG_ENDIAN = 1 << 0


@dataclass(frozen=True)
class Arm64ImageHeader:
    """The fields of the 64-byte header vmsim uses."""

    text_offset: int
    image_size: int          # 0 in kernels before 3.17
    flags: int

    @property
    def load_offset(self) -> int:
        return self.text_offset if self.image_size else LEGACY_TEXT_OFFSET


def parse_header(data: bytes) -> Arm64ImageHeader | None:
    """The header of an arm64 Image, or None if `data` does not start with one."""
    if len(data) < HEADER.size:
        return None
    _code0, _code1, text_offset, image_size, flags, _r2, _r3, _r4, magic, _r5 = (
        HEADER.unpack_from(data))
    if magic != ARM64_IMAGE_MAGIC:
        return None
    return Arm64ImageHeader(text_offset, image_size, flags)


def _load_image(path: Path, data: bytes, header: Arm64ImageHeader, ram: Ram) -> BootImage:
    if header.flags & FLAG_BIG_ENDIAN:
        raise VmsimError(f"{path}: big-endian arm64 kernel Image; vmsim runs little-endian")
    load = align_up(ram.base, KERNEL_ALIGN) + header.load_offset
    size = max(header.image_size, len(data))
    require_in_ram(ram, load, size, f"{path}: kernel Image")
    place(ram, load, data, size)
    return BootImage(entry=load, kind="linux-image", end=load + size)


def load_arm64_kernel(path: Path, ram: Ram) -> BootImage:
    """Load an arm64 Linux Image (plain or gzip-compressed) or an AArch64 ELF into RAM."""
    data = read_file(path, "kernel", ram.size)
    if is_gzip(data):
        data = gunzip(data, ram.size, path)
    if data.startswith(ELF_MAGIC):
        return load_elf(path, data, ram, ARM64_ELF)
    header = parse_header(data)
    if header is None:
        raise VmsimError(f"{path}: not an arm64 Linux Image or ELF file")
    return _load_image(path, data, header, ram)


def load_arm64_boot(ram: Ram, kernel: Path, initrd: Path | None,
                    device_tree: Callable[[tuple[int, int] | None], bytes]) -> BootLayout:
    """Load everything in the right order; `device_tree(initrd_range)` builds the DTB
    once the initrd's place is known. The CPU then starts at `kernel.entry` with
    x0 = `dtb_addr` (`boot_registers`)."""
    image = load_arm64_kernel(kernel, ram)
    dtb_base = align_up(image.end, DTB_ALIGN)
    initrd_range = load_initrd(initrd, ram, dtb_base) if initrd is not None else None
    dtb_addr = place_dtb(device_tree(initrd_range), ram, dtb_base)
    return BootLayout(kernel=image, initrd=initrd_range, dtb_addr=dtb_addr)


def boot_registers(layout: BootLayout) -> dict[int, int]:
    """x-register index -> value at entry, as booting.rst asks: x0 = DTB, x1-x3 = 0."""
    return {0: layout.dtb_addr, 1: 0, 2: 0, 3: 0}
