"""What a kernel file is: which architecture it is for, and its gzip wrapping.

`vmsim run --kernel FILE` picks its board from the file alone, as the arm64 and riscv
`Image` headers carry different magic numbers at offset 0x38 ("ARM\\x64" and
"RSC\\x05") and an ELF names its machine. Like QEMU's arm loader, a gzip-compressed
Image is accepted; decompression is bounded, so a hostile file cannot make vmsim
allocate more than the guest's RAM.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

from vmsim.core.loader import ELF_MAGIC, IMAGE_MAGIC, IMAGE_MAGIC2, open_regular_file
from vmsim.errors import VmsimError

GZIP_MAGIC = b"\x1f\x8b"
ARM64_IMAGE_MAGIC = b"ARM\x64"
MAGIC_OFFSET = 0x38                     # the 4-byte magic of both Image headers
RISCV_MAGIC_OFFSET = 0x30               # the older 8-byte "RISCV\0\0\0"
HEADER_SIZE = 64
HEAD_READ = 64 << 10                    # enough compressed input for 64 bytes of header

ELF_MACHINES = {183: "arm64", 243: "riscv64"}     # EM_AARCH64, EM_RISCV
ARCHES = ("arm64", "riscv64")


def is_gzip(data: bytes) -> bool:
    return data.startswith(GZIP_MAGIC)


def gunzip(data: bytes, limit: int, path: Path, *, head_only: bool = False) -> bytes:
    """The content of a gzip stream, at most `limit` bytes of it; more is an error,
    unless `head_only` asks for just the first `limit` bytes of a stream that may be
    cut short."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + (0 if head_only else 1))
    except zlib.error as error:
        raise VmsimError(f"{path}: corrupt gzip data ({error})") from None
    if head_only:
        return out
    if len(out) > limit:
        raise VmsimError(f"{path}: decompresses to more than the guest's {limit} bytes of RAM")
    if not inflater.eof:
        raise VmsimError(f"{path}: truncated gzip data")
    return out


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
