"""The arm64 loader and the kernel-format detection: images and ELF files made by the
aarch64 cross binutils, gzip as QEMU accepts it, the real riscv64 guest kernel, and
synthetic headers for the odd cases."""
from __future__ import annotations

import gzip
import os
import struct
import subprocess
from pathlib import Path

import pytest

from tests.support.guest import (CROSS_AARCH64_AS, CROSS_AARCH64_LD, built_default_guest,
                                 built_distro_guest, require_tools)
from vmsim.boards.arm64_virt import BOARD, device_tree
from vmsim.boards.layout import BootInfo
from vmsim.build.cache import Requirement
from vmsim.core.arm64_loader import (boot_registers, load_arm64_boot, load_arm64_kernel,
                                     parse_header)
from vmsim.core.kernel_format import detect_arch
from vmsim.devices.memory import Ram
from vmsim.errors import VmsimError

RAM_BASE, RAM_SIZE = 0x4000_0000, 32 << 20
MiB = 1 << 20
CROSS = "aarch64-linux-gnu-"
CROSS_BINUTILS = (CROSS_AARCH64_AS, CROSS_AARCH64_LD,
                  Requirement(CROSS + "objcopy", "binutils-aarch64-linux-gnu"))

# A kernel-like program: the Image header as Linux's head.S lays it out, then code,
# then 0x3000 bytes of bss that image_size covers.
PROGRAM = """
    .section .text
    .globl _start
_start:
    b       entry
    .word   0
    .quad   %(text_offset)#x
    .quad   _end - _start
    .quad   0xa                 // little-endian, 4K pages, anywhere
    .quad   0, 0, 0
    .ascii  "ARM\\x64"
    .word   0
entry:
    movz    x1, #0x1234
    .section .data
    .word   0x33333333
    .section .bss
    .space  0x3000
    .globl _end
_end:
"""

LDS = """
ENTRY(_start)
SECTIONS {
  . = %(link)#x;
  .text : { *(.text) }
  .data : { *(.data) }
  .bss : { *(.bss) }
}
"""


@pytest.fixture
def ram() -> Ram:
    ram = Ram(RAM_BASE, RAM_SIZE)
    yield ram
    ram.close()


def build(tmp: Path, text_offset: int = 0, link: int = 0) -> tuple[Path, Path]:
    """(the ELF file, its flat Image) for PROGRAM."""
    require_tools(*CROSS_BINUTILS)
    (tmp / "prog.S").write_text(PROGRAM % {"text_offset": text_offset})
    (tmp / "prog.lds").write_text(LDS % {"link": link})
    subprocess.run([CROSS + "as", "-o", tmp / "prog.o", tmp / "prog.S"], check=True)
    subprocess.run([CROSS + "ld", "-T", tmp / "prog.lds", "-o", tmp / "prog.elf",
                    tmp / "prog.o"], check=True)
    subprocess.run([CROSS + "objcopy", "-O", "binary", tmp / "prog.elf", tmp / "Image"],
                   check=True)
    return tmp / "prog.elf", tmp / "Image"


def gzipped(path: Path) -> Path:
    out = path.with_name(path.name + ".gz")
    out.write_bytes(gzip.compress(path.read_bytes()))
    return out


def header(text_offset: int = 0, image_size: int = 0x10000, flags: int = 0xA,
           magic: bytes = b"ARM\x64") -> bytes:
    return struct.pack("<IIQQQQQQ4sI", 0x1400_0010, 0, text_offset, image_size, flags,
                       0, 0, 0, magic, 0)


def test_image_goes_to_the_2mib_aligned_ram_base_plus_text_offset(tmp_path: Path,
                                                                  ram: Ram) -> None:
    _, image = build(tmp_path, text_offset=0x8_0000)
    parsed = parse_header(image.read_bytes())
    assert parsed is not None and parsed.text_offset == 0x8_0000
    ram.write(RAM_BASE + 0x8_0000 + 0x48, b"\xAA" * 0x3010)     # stale bytes in the bss
    loaded = load_arm64_kernel(image, ram)
    assert loaded.entry == RAM_BASE + 0x8_0000 and loaded.kind == "linux-image"
    assert ram.read(loaded.entry + 0x38, 4) == b"ARM\x64"
    assert ram.read_u32(loaded.entry + 0x40) == 0xD282_4681         # movz x1, #0x1234
    assert loaded.end == loaded.entry + parsed.image_size
    assert ram.read(loaded.end - 0x3000, 0x3000) == bytes(0x3000)


def test_gzip_compressed_image_loads_the_same(tmp_path: Path, ram: Ram) -> None:
    _, image = build(tmp_path)
    plain = load_arm64_kernel(image, ram)
    first = ram.read(plain.entry, plain.end - plain.entry)
    ram.write(plain.entry, bytes(plain.end - plain.entry))
    assert load_arm64_kernel(gzipped(image), ram) == plain
    assert ram.read(plain.entry, plain.end - plain.entry) == first


def test_aarch64_elf_loads_at_its_physical_address(tmp_path: Path, ram: Ram) -> None:
    elf, _ = build(tmp_path, link=RAM_BASE + 4 * MiB)
    loaded = load_arm64_kernel(elf, ram)
    assert loaded.kind == "elf" and loaded.entry == RAM_BASE + 4 * MiB
    assert ram.read(RAM_BASE + 4 * MiB + 0x38, 4) == b"ARM\x64"


def test_riscv_elf_is_refused_by_name(tmp_path: Path, ram: Ram) -> None:
    elf, _ = build(tmp_path, link=RAM_BASE)
    data = bytearray(elf.read_bytes())
    data[18:20] = struct.pack("<H", 243)                       # EM_RISCV
    (tmp_path / "riscv.elf").write_bytes(data)
    with pytest.raises(VmsimError, match="ELF file for RISC-V, not arm64"):
        load_arm64_kernel(tmp_path / "riscv.elf", ram)


def test_boot_layout_dtb_in_its_own_2mib_block_and_initrd_on_top(tmp_path: Path,
                                                               ram: Ram) -> None:
    _, image = build(tmp_path)
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"07070100" * 1000)
    blobs = []

    def tree(initrd_range: tuple[int, int] | None) -> bytes:
        blob = device_tree(BOARD, BootInfo(RAM_SIZE, "console=ttyAMA0", initrd_range, (0,)))
        blobs.append(blob)
        return blob

    layout = load_arm64_boot(ram, image, initrd, tree)
    assert layout.dtb_addr == RAM_BASE + 2 * MiB                # the kernel ends below 2 MiB
    assert ram.read(layout.dtb_addr, len(blobs[0])) == blobs[0]
    start, end = layout.initrd
    assert start % 4096 == 0 and end == start + 8000 and end <= RAM_BASE + RAM_SIZE
    assert ram.read(start, 8) == b"07070100"
    assert boot_registers(layout) == {0: layout.dtb_addr, 1: 0, 2: 0, 3: 0}


@pytest.mark.parametrize("guest", ["debian", "default"])
def test_real_arm64_kernels_load_at_the_bottom_of_ram(guest: str) -> None:
    """Debian's own arm64 vmlinuz (an uncompressed EFI-stub Image) and the default
    arm64 guest's kernel: both say text_offset 0 and the kernel image size they need."""
    paths = built_distro_guest("arm64") if guest == "debian" else built_default_guest("arm64")
    assert detect_arch(paths.kernel) == "arm64"
    head = parse_header(paths.kernel.read_bytes()[:64])
    assert head is not None and head.text_offset == 0 and not head.flags & 1
    ram = Ram(RAM_BASE, 256 * MiB)
    try:
        layout = load_arm64_boot(ram, paths.kernel, paths.initrd, lambda initrd: device_tree(
            BOARD, BootInfo(256 * MiB, "console=ttyAMA0", initrd, (0,))))
        assert layout.kernel.entry == RAM_BASE
        assert layout.kernel.end == RAM_BASE + max(head.image_size,
                                                   paths.kernel.stat().st_size)
        assert ram.read(RAM_BASE, 64) == paths.kernel.read_bytes()[:64]
        assert layout.dtb_addr % (2 * MiB) == 0 and layout.dtb_addr >= layout.kernel.end
        assert layout.initrd is not None and layout.initrd[1] <= RAM_BASE + 256 * MiB
    finally:
        ram.close()


def test_header_cases(tmp_path: Path, ram: Ram) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(header(image_size=0) + bytes(64))       # before 3.17: 0x80000
    assert load_arm64_kernel(kernel, ram).entry == RAM_BASE + 0x8_0000
    kernel.write_bytes(header(flags=1))
    with pytest.raises(VmsimError, match="big-endian"):
        load_arm64_kernel(kernel, ram)
    kernel.write_bytes(header(image_size=RAM_SIZE + 4096))
    with pytest.raises(VmsimError, match="outside RAM"):
        load_arm64_kernel(kernel, ram)
    kernel.write_bytes(header(text_offset=1 << 62))
    with pytest.raises(VmsimError, match="outside RAM"):
        load_arm64_kernel(kernel, ram)
    kernel.write_bytes(header(magic=b"RSC\x05"))
    with pytest.raises(VmsimError, match="not an arm64 Linux Image or ELF file"):
        load_arm64_kernel(kernel, ram)
    assert parse_header(header()[:63]) is None


def test_bad_gzip_is_one_error(tmp_path: Path, ram: Ram) -> None:
    kernel = tmp_path / "Image.gz"
    whole = gzip.compress(header() + bytes(1000))
    kernel.write_bytes(whole[:-20])
    with pytest.raises(VmsimError, match="truncated gzip"):
        load_arm64_kernel(kernel, ram)
    kernel.write_bytes(whole[:12] + bytes(40))
    with pytest.raises(VmsimError, match="corrupt gzip"):
        load_arm64_kernel(kernel, ram)


def test_gzip_bomb_stops_at_the_size_of_ram(tmp_path: Path, ram: Ram) -> None:
    kernel = tmp_path / "bomb.gz"
    kernel.write_bytes(gzip.compress(header() + bytes(RAM_SIZE)))   # about 32 KiB on disk
    with pytest.raises(VmsimError, match="more than the guest's"):
        load_arm64_kernel(kernel, ram)


# -- detect_arch ----------------------------------------------------------------------------

def test_detect_arch_of_assembled_images_and_elf(tmp_path: Path) -> None:
    elf, image = build(tmp_path, link=RAM_BASE)
    assert detect_arch(image) == "arm64"
    assert detect_arch(gzipped(image)) == "arm64"
    assert detect_arch(elf) == "arm64"


def test_detect_arch_of_the_real_riscv_guest_kernel(tmp_path: Path) -> None:
    kernel = built_default_guest().kernel
    assert detect_arch(kernel) == "riscv64"
    copy = tmp_path / "Image.gz"
    copy.write_bytes(gzip.compress(kernel.read_bytes(), compresslevel=1))
    assert detect_arch(copy) == "riscv64"


def test_detect_arch_of_synthetic_riscv_headers(tmp_path: Path) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(bytes(0x38) + b"RSC\x05" + bytes(4))
    assert detect_arch(kernel) == "riscv64"
    kernel.write_bytes(bytes(0x30) + b"RISCV\0\0\0" + bytes(8))   # the older magic only
    assert detect_arch(kernel) == "riscv64"


@pytest.mark.parametrize("content, message", [
    (b"\x7fELF\x02\x01\x01" + bytes(11) + struct.pack("<H", 62) + bytes(40),
     "ELF file for machine 62, neither arm64 nor riscv64"),
    (b"\x7fELF\x02\x01", "truncated ELF header"),
    (b"MZ" + bytes(100), "not an arm64 or riscv64 Linux Image or ELF file"),
    (b"", "not an arm64 or riscv64 Linux Image or ELF file"),
    (gzip.compress(b"plain text, no kernel" * 10), "not an arm64 or riscv64"),
    (b"\x1f\x8b" + bytes(30), "corrupt gzip"),
])
def test_detect_arch_refuses_anything_else_in_one_line(tmp_path: Path, content: bytes,
                                                       message: str) -> None:
    kernel = tmp_path / "kernel"
    kernel.write_bytes(content)
    with pytest.raises(VmsimError, match=message) as raised:
        detect_arch(kernel)
    assert "\n" not in str(raised.value)


def test_detect_arch_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(VmsimError, match="must be a regular file, but .* is a FIFO"):
        detect_arch(fifo)
    with pytest.raises(VmsimError, match="kernel not found"):
        detect_arch(tmp_path / "absent")
