"""The boot loader: real ELF files built with the cross binutils, and a fake Linux Image."""
from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.guest import CROSS_AS, CROSS_LD, require_tools
from vmsim.devices.memory import Ram
from vmsim.errors import VmsimError
from vmsim.boards.layout import BootInfo
from vmsim.boards.riscv64_virt import BOARD, device_tree
from vmsim.core.loader import DTB_SLOT_SIZE, load_boot, load_initrd, load_kernel, place_dtb

RAM_BASE, RAM_SIZE = 0x8000_0000, 16 << 20
MiB = 1 << 20


@pytest.fixture
def cross_binutils() -> None:
    """Skip locally, fail under `make test` (tests/support/guest.py)."""
    require_tools(CROSS_AS, CROSS_LD)


needs_binutils = pytest.mark.usefixtures("cross_binutils")


PROGRAM = """
    .section .text
    .word 0x11111111
    .globl _start
_start:
    .word 0x22222222
    .section .data
    .word 0x33333333
    .section .bss
    .space 0x3000
"""

BARE_METAL_LDS = """
ENTRY(_start)
SECTIONS {
  . = %(text)#x;
  .text : { *(.text) }
  . = %(text)#x + 0x10000;
  .data : { *(.data) }
  .bss : { *(.bss) }
}
"""

# How Linux links vmlinux: virtual addresses in the top 2 GiB, load addresses from 0.
VMLINUX_LDS = """
ENTRY(_start)
SECTIONS {
  . = 0xffffffff80000000;
  .text : AT(ADDR(.text) - 0xffffffff80000000) { *(.text) }
  . = 0xffffffff80010000;
  .data : AT(ADDR(.data) - 0xffffffff80000000) { *(.data) }
  .bss : AT(ADDR(.bss) - 0xffffffff80000000) { *(.bss) }
}
"""


@pytest.fixture
def ram() -> Ram:
    ram = Ram(RAM_BASE, RAM_SIZE)
    yield ram
    ram.close()


def build_elf(tmp: Path, script: str, as_flags: tuple[str, ...] = (),
              ld_flags: tuple[str, ...] = ()) -> Path:
    (tmp / "prog.S").write_text(PROGRAM)
    (tmp / "prog.lds").write_text(script)
    subprocess.run(["riscv64-linux-gnu-as", *as_flags, "-o", tmp / "prog.o", tmp / "prog.S"],
                   check=True)
    subprocess.run(["riscv64-linux-gnu-ld", *ld_flags, "-T", tmp / "prog.lds", "-o",
                    tmp / "prog.elf", tmp / "prog.o"], check=True)
    return tmp / "prog.elf"


def fake_image(text_offset: int = 2 * MiB, image_size: int = 0x5000, body: bytes = b"") -> bytes:
    """A riscv64 Linux Image header (64 bytes) followed by `body`."""
    header = struct.pack("<IIQQQIIQ8s4sI", 0x5A4D_0001, 0, text_offset, image_size, 0,
                         0x0000_0002, 0, 0, b"RISCV\0\0\0", b"RSC\x05", 0)
    return header + body


def fill(ram: Ram, addr: int, size: int, byte: int = 0xAA) -> None:
    ram.write(addr, bytes([byte]) * size)


def word(ram: Ram, addr: int) -> int:
    return ram.read_u32(addr)


# -- ELF -------------------------------------------------------------------------------------

@needs_binutils
def test_bare_metal_elf_loads_by_physical_address_and_zeroes_bss(tmp_path: Path, ram: Ram) -> None:
    text = 0x8040_0000
    elf = build_elf(tmp_path, BARE_METAL_LDS % {"text": text})
    fill(ram, text + 0x10000, 0x4000)  # stale bytes where .data and .bss go
    image = load_kernel(elf, ram)
    assert image.kind == "elf"
    assert image.entry == text + 4
    assert (word(ram, text), word(ram, text + 4)) == (0x11111111, 0x22222222)
    assert word(ram, text + 0x10000) == 0x33333333
    assert ram.read(text + 0x10004, 0x3000) == bytes(0x3000)
    assert image.end == text + 0x10004 + 0x3000


@needs_binutils
def test_vmlinux_goes_where_its_image_would(tmp_path: Path, ram: Ram) -> None:
    image = load_kernel(build_elf(tmp_path, VMLINUX_LDS), ram)
    base = RAM_BASE + 2 * MiB
    assert image.entry == base + 4
    assert word(ram, base + 4) == 0x22222222
    assert word(ram, base + 0x10000) == 0x33333333
    assert image.end == base + 0x10004 + 0x3000


@needs_binutils
def test_elf_segment_outside_ram_is_refused(tmp_path: Path, ram: Ram) -> None:
    elf = build_elf(tmp_path, BARE_METAL_LDS % {"text": 0x4000_0000})
    with pytest.raises(VmsimError, match=r"ELF segment at 0x40000000\.\.0x40000008 is outside RAM"):
        load_kernel(elf, ram)


@needs_binutils
def test_elf_segment_running_past_the_end_of_ram_is_refused(tmp_path: Path, ram: Ram) -> None:
    elf = build_elf(tmp_path, BARE_METAL_LDS % {"text": RAM_BASE + RAM_SIZE - 0x8000})
    with pytest.raises(VmsimError, match="outside RAM"):
        load_kernel(elf, ram)


@needs_binutils
def test_x86_elf_is_refused(tmp_path: Path, ram: Ram) -> None:
    elf = build_elf(tmp_path, BARE_METAL_LDS % {"text": 0x8040_0000})
    data = bytearray(elf.read_bytes())
    data[18:20] = struct.pack("<H", 62)  # e_machine = EM_X86_64
    x86 = tmp_path / "x86.elf"
    x86.write_bytes(data)
    with pytest.raises(VmsimError, match=r"ELF file for .*X86-64, not riscv64"):
        load_kernel(x86, ram)


@needs_binutils
def test_32_bit_riscv_elf_is_refused(tmp_path: Path, ram: Ram) -> None:
    elf = build_elf(tmp_path, BARE_METAL_LDS % {"text": 0x8040_0000},
                    as_flags=("-march=rv32i", "-mabi=ilp32"), ld_flags=("-m", "elf32lriscv"))
    with pytest.raises(VmsimError, match="32-bit RISC-V ELF file, not riscv64"):
        load_kernel(elf, ram)


@needs_binutils
def test_relocatable_object_is_refused(tmp_path: Path, ram: Ram) -> None:
    build_elf(tmp_path, BARE_METAL_LDS % {"text": 0x8040_0000})
    with pytest.raises(VmsimError, match="not an executable"):
        load_kernel(tmp_path / "prog.o", ram)


@needs_binutils
@pytest.mark.parametrize("keep", [20, 64, 200, 4200])
def test_truncated_elf_is_refused(tmp_path: Path, ram: Ram, keep: int) -> None:
    elf = build_elf(tmp_path, BARE_METAL_LDS % {"text": 0x8040_0000})
    cut = tmp_path / "cut.elf"
    cut.write_bytes(elf.read_bytes()[:keep])
    with pytest.raises(VmsimError, match=str(cut)):
        load_kernel(cut, ram)


@needs_binutils
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=6),
       near_header=st.booleans())
def test_corrupted_elf_loads_or_fails_with_a_vmsim_error(tmp_path: Path, ram: Ram,
                                                         edits: list[tuple[int, int]],
                                                         near_header: bool) -> None:
    elf = tmp_path / "prog.elf"
    if not elf.exists():
        build_elf(tmp_path, BARE_METAL_LDS % {"text": 0x8040_0000})
    data = bytearray(elf.read_bytes())
    span = 64 if near_header else len(data)
    for position, value in edits:
        data[position * span // 256] = value
    bad = tmp_path / "bad.elf"
    bad.write_bytes(data)
    try:
        load_kernel(bad, ram)
    except VmsimError as error:
        assert "\n" not in str(error)


# -- Linux Image -----------------------------------------------------------------------------

def test_linux_image_goes_2_mib_into_ram_and_its_bss_is_cleared(tmp_path: Path, ram: Ram) -> None:
    path = tmp_path / "Image"
    path.write_bytes(fake_image(image_size=0x5000, body=b"\x13\x00\x00\x00" * 4))
    base = RAM_BASE + 2 * MiB
    fill(ram, base, 0x6000)
    image = load_kernel(path, ram)
    assert image == type(image)(entry=base, kind="linux-image", end=base + 0x5000)
    assert ram.read(base, 80) == path.read_bytes()
    assert ram.read(base + 80, 0x5000 - 80) == bytes(0x5000 - 80)
    assert ram.read(base + 0x5000, 1) == b"\xaa"


def test_gzip_compressed_image_loads_as_the_plain_one(tmp_path: Path, ram: Ram) -> None:
    """The same as QEMU's arm loader takes, so `detect_arch` and the loader agree."""
    plain = fake_image(image_size=0x5000, body=b"\x13\x00\x00\x00" * 4)
    path = tmp_path / "Image.gz"
    path.write_bytes(gzip.compress(plain))
    image = load_kernel(path, ram)
    assert image.entry == RAM_BASE + 2 * MiB
    assert ram.read(image.entry, len(plain)) == plain


def test_linux_image_text_offset_is_honoured(tmp_path: Path, ram: Ram) -> None:
    path = tmp_path / "Image"
    path.write_bytes(fake_image(text_offset=4 * MiB))
    assert load_kernel(path, ram).entry == RAM_BASE + 4 * MiB


def test_linux_image_without_image_size_uses_the_file_size(tmp_path: Path, ram: Ram) -> None:
    path = tmp_path / "Image"
    path.write_bytes(fake_image(image_size=0, body=bytes(100)))
    assert load_kernel(path, ram).end == RAM_BASE + 2 * MiB + 164


def test_linux_image_too_big_for_ram_is_refused(tmp_path: Path, ram: Ram) -> None:
    path = tmp_path / "Image"
    path.write_bytes(fake_image(image_size=RAM_SIZE))
    with pytest.raises(VmsimError, match="kernel Image at 0x80200000..0x81200000 is outside RAM"):
        load_kernel(path, ram)


# -- bad kernel files ------------------------------------------------------------------------

def test_missing_kernel(tmp_path: Path, ram: Ram) -> None:
    with pytest.raises(VmsimError, match="kernel not found: .*nope"):
        load_kernel(tmp_path / "nope", ram)


def test_directory_as_kernel(tmp_path: Path, ram: Ram) -> None:
    with pytest.raises(VmsimError, match="is a directory"):
        load_kernel(tmp_path, ram)


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, bytes(range(256)) * 40,
                                     fake_image()[:0x38] + b"XXXX" + bytes(8)])
def test_random_bytes_are_neither_image_nor_elf(tmp_path: Path, ram: Ram, content: bytes) -> None:
    path = tmp_path / "junk"
    path.write_bytes(content.replace(b"RISCV", b"XXXXX"))
    with pytest.raises(VmsimError, match="not a riscv64 Linux Image or ELF file"):
        load_kernel(path, ram)


def test_errors_are_one_line(tmp_path: Path, ram: Ram) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"hello")
    with pytest.raises(VmsimError) as caught:
        load_kernel(path, ram)
    assert "\n" not in str(caught.value)


# -- initrd and device tree ------------------------------------------------------------------

def test_initrd_goes_to_the_top_of_ram_page_aligned(tmp_path: Path, ram: Ram) -> None:
    path = tmp_path / "initrd"
    path.write_bytes(b"070701" + bytes(5000))
    start, end = load_initrd(path, ram, kernel_end=RAM_BASE + 3 * MiB)
    assert start % 4096 == 0
    assert end == start + 5006 <= RAM_BASE + RAM_SIZE
    assert RAM_BASE + RAM_SIZE - end < 4096
    assert ram.read(start, 5006) == path.read_bytes()


def test_initrd_that_does_not_fit_is_refused(tmp_path: Path, ram: Ram) -> None:
    path = tmp_path / "initrd"
    path.write_bytes(bytes(RAM_SIZE - 4 * MiB))
    with pytest.raises(VmsimError, match=r"initrd .* is \d+ bytes, but only \d+ bytes of RAM"):
        load_initrd(path, ram, kernel_end=RAM_BASE + 5 * MiB)


def test_initrd_leaves_the_device_tree_slot_free(tmp_path: Path, ram: Ram) -> None:
    kernel_end = RAM_BASE + 8 * MiB
    path = tmp_path / "initrd"
    path.write_bytes(bytes(RAM_BASE + RAM_SIZE - kernel_end - DTB_SLOT_SIZE + 1))
    with pytest.raises(VmsimError, match="initrd"):
        load_initrd(path, ram, kernel_end)


def test_missing_and_empty_initrd(tmp_path: Path, ram: Ram) -> None:
    with pytest.raises(VmsimError, match="initrd not found"):
        load_initrd(tmp_path / "absent", ram, RAM_BASE)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(VmsimError, match="initrd is empty"):
        load_initrd(tmp_path / "empty", ram, RAM_BASE)


def test_dtb_goes_right_above_the_kernel_8_byte_aligned(ram: Ram) -> None:
    blob = b"\xd0\x0d\xfe\xed" + bytes(100)
    addr = place_dtb(blob, ram, avoid_end=RAM_BASE + 0x12345)
    assert addr == RAM_BASE + 0x12348
    assert ram.read(addr, len(blob)) == blob


def test_dtb_without_room_or_too_big_is_refused(ram: Ram) -> None:
    with pytest.raises(VmsimError, match="no room in RAM"):
        place_dtb(bytes(64), ram, avoid_end=RAM_BASE + RAM_SIZE - 8)
    with pytest.raises(VmsimError, match="device tree is"):
        place_dtb(bytes(DTB_SLOT_SIZE + 1), ram, avoid_end=RAM_BASE)


def test_load_boot_lays_out_kernel_dtb_and_initrd_without_overlap(tmp_path: Path, ram: Ram) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(fake_image(image_size=3 * MiB))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(bytes(range(256)) * 4096)
    blobs: list[bytes] = []

    def make_tree(initrd_range: tuple[int, int] | None) -> bytes:
        blobs.append(device_tree(BOARD, BootInfo(RAM_SIZE, "console=ttyS0", initrd_range)))
        return blobs[-1]

    layout = load_boot(ram, kernel, initrd, make_tree)
    assert layout.kernel.entry == RAM_BASE + 2 * MiB
    assert layout.kernel.end <= layout.dtb_addr
    assert layout.dtb_addr + len(blobs[0]) <= layout.initrd[0]
    assert layout.dtb_addr % 8 == 0
    assert ram.read(layout.dtb_addr, len(blobs[0])) == blobs[0]
    assert ram.read(layout.initrd[0], 1 << 20) == initrd.read_bytes()

    no_initrd = load_boot(ram, kernel, None, make_tree)
    assert no_initrd.initrd is None
