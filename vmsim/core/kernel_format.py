"""Which architecture a kernel file is for.

`vmsim run --kernel FILE` picks its board from the file alone, as the arm64 and riscv
`Image` headers carry different magic numbers at offset 0x38 ("ARM\\x64" and
"RSC\\x05") and an ELF names its machine; a gzip-compressed kernel is looked into.
"""
from __future__ import annotations

import struct
from pathlib import Path

from vmsim.core.gzip_kernel import gunzip, is_gzip
from vmsim.core.loader import ELF_MAGIC, IMAGE_MAGIC, IMAGE_MAGIC2, open_regular_file
from vmsim.errors import VmsimError

ARM64_IMAGE_MAGIC = b"ARM\x64"
MAGIC_OFFSET = 0x38                     # the 4-byte magic of both Image headers
RISCV_MAGIC_OFFSET = 0x30               # the older 8-byte "RISCV\0\0\0"
HEADER_SIZE = 64
HEAD_READ = 64 << 10                    # enough compressed input for 64 bytes of header

ELF_MACHINES = {183: "arm64", 243: "riscv64"}     # EM_AARCH64, EM_RISCV
ARCHES = ("arm64", "riscv64")


def arch_of(header: bytes, path: Path) -> str:
    """"arm64" or "riscv64" from a kernel's first bytes (already decompressed)."""
    if header.startswith(ELF_MAGIC):
        return _elf_arch(header, path)
    magic = header[MAGIC_OFFSET:MAGIC_OFFSET + 4]
    if magic == ARM64_IMAGE_MAGIC:
        return "arm64"
    if magic == IMAGE_MAGIC2 or header[RISCV_MAGIC_OFFSET:MAGIC_OFFSET] == IMAGE_MAGIC:
        return "riscv64"
    raise VmsimError(f"{path}: not an arm64 or riscv64 Linux Image or ELF file")


def _elf_arch(header: bytes, path: Path) -> str:
    if len(header) < 20:
        raise VmsimError(f"{path}: truncated ELF header")
    order = "<" if header[5] == 1 else ">"            # EI_DATA: 1 little, 2 big endian
    (machine,) = struct.unpack_from(order + "H", header, 18)
    arch = ELF_MACHINES.get(machine)
    if arch is None:
        raise VmsimError(f"{path}: ELF file for machine {machine}, neither arm64 nor riscv64")
    return arch


def detect_arch(path: Path) -> str:
    """"arm64" or "riscv64": what the kernel file at `path` is for (plain or gzipped
    Image, or ELF). Reads only its head; the file must be a regular file."""
    with open_regular_file(path, "kernel") as (fd, _size):
        with open(fd, "rb", closefd=False) as file:
            head = file.read(HEAD_READ)
    if is_gzip(head):
        head = gunzip(head, HEADER_SIZE, path, head_only=True)
    return arch_of(head, path)
