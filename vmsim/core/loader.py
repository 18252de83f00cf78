"""Puts the kernel, the initrd and the device tree into guest RAM before the first instruction.

RAM layout after a Linux boot is prepared:

    RAM base + 2 MiB   kernel (Image text_offset, or ELF segments), then its bss
    kernel end         device tree (8-byte aligned, in a slot of DTB_SLOT_SIZE bytes)
    ...                free
    top of RAM         initrd (page aligned)

The device tree sits right above the kernel, so it is inside the first GiB of the
kernel's linear map and never overlaps the initrd, whose placement keeps the slot free.
Every failure is a VmsimError with one line that names the file and the problem.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vmsim.core.gzip_kernel import gunzip, is_gzip
from vmsim.devices.memory import Ram
from vmsim.errors import VmsimError

if TYPE_CHECKING:   # pyelftools is imported for ELF kernels only: a Linux Image needs none
    from elftools.elf.elffile import ELFFile

KERNEL_ALIGN = 2 << 20        # RV64 kernels run from a 2 MiB aligned base
DEFAULT_TEXT_OFFSET = 2 << 20  # what an RV64 S-mode Image asks for
PAGE_SIZE = 4096
DTB_ALIGN = 8
DTB_SLOT_SIZE = 64 << 10

# Linux links RV64 kernels in the top 2 GiB and records load addresses from 0.
LINUX_LINK_ADDR = 0xFFFF_FFFF_8000_0000

ELF_MAGIC = b"\x7fELF"
IMAGE_HEADER = struct.Struct("<IIQQQIIQ8s4sI")
IMAGE_MAGIC = b"RISCV\0\0\0"
IMAGE_MAGIC2 = b"RSC\x05"
IMAGE_FLAG_BIG_ENDIAN = 1


@dataclass(frozen=True)
class BootImage:
    entry: int                 # guest-physical entry point (S-mode)
    kind: str                  # "linux-image" | "elf"
    end: int                   # first byte after everything loaded


@dataclass(frozen=True)
class BootLayout:
    kernel: BootImage
    initrd: tuple[int, int] | None
    dtb_addr: int


def align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _align_down(value: int, align: int) -> int:
    return value // align * align


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, for a message: 'a FIFO', 'a character device', ..."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


@contextlib.contextmanager
def open_regular_file(path: Path, what: str) -> Iterator[tuple[int, int]]:
    """An fd open for reading on `path`, which must be a regular file, and its size.

    Checked before a byte is read, on the descriptor that is then read (no race): a
    FIFO would block forever (O_NONBLOCK keeps even the open from waiting for a
    writer) and a device such as /dev/zero never ends. Read errors inside the block
    become VmsimErrors too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise VmsimError(f"{what} not found: {path}") from None
    except OSError as error:
        raise VmsimError(f"cannot read {what} {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise VmsimError(f"{what} is a directory, not a file: {path}")
        if not stat.S_ISREG(info.st_mode):
            raise VmsimError(f"{what} must be a regular file, but {path} is "
                             f"{file_kind(info.st_mode)}")
        yield fd, info.st_size
    except OSError as error:
        raise VmsimError(f"cannot read {what} {path}: {error.strerror}") from None
    finally:
        os.close(fd)


def read_file(path: Path, what: str, limit: int) -> bytes:
    """The whole of `path`, a regular file (see `open_regular_file`) of at most `limit`
    bytes: a file larger than guest RAM cannot be loaded anyway."""
    with open_regular_file(path, what) as (fd, size):
        if size > limit:
            raise VmsimError(f"{what} {path} is {size} bytes, more than the "
                             f"guest's {limit} bytes of RAM")
        with open(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    if len(data) > limit:                      # it grew while being read
        raise VmsimError(f"{what} {path} is more than the guest's {limit} bytes of RAM")
    return data


def write_file(path: Path, data: bytes, what: str) -> None:
    """Write `data` to `path` (such as --dtb-out), a regular file or a new one.

    Anything else is refused before a byte is written: a FIFO would block (or, opened
    without blocking and with no reader, fail with an odd error), and a device such as
    /dev/full is not where a device tree is kept.
    """
    where = f"cannot write {what} to {path}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ENXIO:           # a FIFO without a reader
            raise VmsimError(f"{where}: it is a FIFO, not a regular file") from None
        raise VmsimError(f"{where}: {error.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise VmsimError(f"{where}: it is {file_kind(mode)}, not a regular file")
        os.ftruncate(fd, 0)
        with open(fd, "wb", closefd=False) as file:
            file.write(data)
    except OSError as error:
        raise VmsimError(f"{where}: {error.strerror}") from None
    finally:
        os.close(fd)


def _range(start: int, end: int) -> str:
    return f"{start:#x}..{end:#x}"


def _outside_ram(ram: Ram, addr: int, size: int, what: str) -> VmsimError:
    return VmsimError(f"{what} at {_range(addr, addr + size)} is outside RAM "
                      f"{_range(ram.base, ram.end)}")


def require_in_ram(ram: Ram, addr: int, size: int, what: str) -> None:
    if not ram.contains(addr, size):
        raise _outside_ram(ram, addr, size, what)


def place(ram: Ram, addr: int, data: bytes, total_size: int) -> None:
    """Copy `data` to `addr` and zero the rest of `total_size` (bss)."""
    ram.write(addr, data)
    if total_size > len(data):
        ram.write(addr + len(data), bytes(total_size - len(data)))


# -- kernel ---------------------------------------------------------------------------------

def kernel_load_base(ram: Ram) -> int:
    """Where the 2 MiB aligned kernel area starts, before the image's text_offset."""
    return align_up(ram.base, KERNEL_ALIGN)


def _is_linux_image(data: bytes) -> bool:
    if len(data) < IMAGE_HEADER.size:
        return False
    *_, magic, magic2, _res3 = IMAGE_HEADER.unpack_from(data)
    return magic2 == IMAGE_MAGIC2 or magic == IMAGE_MAGIC


def _load_linux_image(path: Path, data: bytes, ram: Ram) -> BootImage:
    _code0, _code1, text_offset, image_size, flags, *_ = IMAGE_HEADER.unpack_from(data)
    if flags & IMAGE_FLAG_BIG_ENDIAN:
        raise VmsimError(f"{path}: big-endian kernel Image; vmsim runs little-endian riscv64")
    load = kernel_load_base(ram) + text_offset
    size = max(image_size, len(data))
    require_in_ram(ram, load, size, f"{path}: kernel Image")
    place(ram, load, data, size)
    return BootImage(entry=load, kind="linux-image", end=load + size)


@dataclass(frozen=True)
class _Segment:
    paddr: int
    vaddr: int
    memsz: int
    data: bytes


@contextlib.contextmanager
def _malformed_elf_is_an_error(path: Path) -> Iterator[None]:
    """pyelftools reports malformed input as many exception types (ELFError, struct and
    seek errors, ...); whatever it raises means the file is not a usable ELF."""
    try:
        yield
    except VmsimError:
        raise
    except Exception as error:  # noqa: BLE001 - see the docstring
        detail = " ".join(str(error).split())
        raise VmsimError(f"{path}: corrupt ELF file ({type(error).__name__}: {detail})") from None


@dataclass(frozen=True)
class ElfArch:
    """What an ELF file must be built for: its e_machine name, and how messages call it."""

    machine: str
    name: str
    family: str


RISCV64_ELF = ElfArch("EM_RISCV", "riscv64", "RISC-V")
ARM64_ELF = ElfArch("EM_AARCH64", "arm64", "AArch64")


def _open_elf(path: Path, data: bytes, arch: ElfArch) -> ELFFile:
    from elftools.elf.descriptions import describe_e_machine
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    if elf.header["e_machine"] != arch.machine:
        machine = elf.header["e_machine"]
        description = describe_e_machine(machine)
        if description.startswith("<unknown"):
            description = f"machine {machine}"
        raise VmsimError(f"{path}: ELF file for {description}, not {arch.name}")
    if elf.elfclass != 64 or not elf.little_endian:
        raise VmsimError(f"{path}: {elf.elfclass}-bit {arch.family} ELF file, not {arch.name}")
    if elf.header["e_type"] not in ("ET_EXEC", "ET_DYN"):
        raise VmsimError(f"{path}: ELF file is not an executable (link it first)")
    return elf


def _elf_segments(path: Path, elf: ELFFile) -> list[_Segment]:
    segments = []
    for segment in elf.iter_segments("PT_LOAD"):
        filesz, memsz = segment["p_filesz"], segment["p_memsz"]
        if memsz == 0:
            continue
        data = segment.data()
        if filesz > memsz or len(data) != filesz:
            raise VmsimError(f"{path}: truncated or corrupt ELF segment at "
                             f"{segment['p_paddr']:#x}")
        segments.append(_Segment(segment["p_paddr"], segment["p_vaddr"], memsz, data))
    if not segments:
        raise VmsimError(f"{path}: ELF file has nothing to load")
    return segments


def _elf_relocation(path: Path, segments: list[_Segment], ram: Ram) -> int:
    """What to add to each p_paddr: 0 for a program linked for RAM.

    A Linux vmlinux is linked in the top 2 GiB with load addresses from 0; it is
    position independent at entry, so it goes where its Image would.
    """
    if all(ram.contains(s.paddr, s.memsz) for s in segments):
        return 0
    if all(s.vaddr >= LINUX_LINK_ADDR for s in segments):
        return kernel_load_base(ram) + DEFAULT_TEXT_OFFSET - min(s.paddr for s in segments)
    outside = next(s for s in segments if not ram.contains(s.paddr, s.memsz))
    raise _outside_ram(ram, outside.paddr, outside.memsz, f"{path}: ELF segment")


def _elf_entry(path: Path, elf: ELFFile, segments: list[_Segment], offset: int, ram: Ram) -> int:
    entry = elf.header["e_entry"]
    for s in segments:
        if s.vaddr <= entry < s.vaddr + s.memsz:
            return entry - s.vaddr + s.paddr + offset
    if offset == 0 and ram.contains(entry, 1):
        return entry
    raise VmsimError(f"{path}: ELF entry point {entry:#x} is not in any loaded segment")


def load_elf(path: Path, data: bytes, ram: Ram, arch: ElfArch = RISCV64_ELF) -> BootImage:
    """Load the PT_LOAD segments of an executable ELF file for `arch` into RAM."""
    with _malformed_elf_is_an_error(path):
        elf = _open_elf(path, data, arch)
        segments = _elf_segments(path, elf)
    offset = _elf_relocation(path, segments, ram)
    for s in segments:
        require_in_ram(ram, s.paddr + offset, s.memsz, f"{path}: ELF segment")
    entry = _elf_entry(path, elf, segments, offset, ram)
    for s in segments:
        place(ram, s.paddr + offset, s.data, s.memsz)
    end = max(s.paddr + offset + s.memsz for s in segments)
    return BootImage(entry=entry, kind="elf", end=end)


def load_kernel(path: Path, ram: Ram) -> BootImage:
    """Load a riscv64 Linux Image (plain or gzip-compressed) or a 64-bit RISC-V ELF into RAM."""
    data = read_file(path, "kernel", ram.size)
    if is_gzip(data):
        data = gunzip(data, ram.size, path)
    if data.startswith(ELF_MAGIC):
        return load_elf(path, data, ram)
    if _is_linux_image(data):
        return _load_linux_image(path, data, ram)
    raise VmsimError(f"{path}: not a riscv64 Linux Image or ELF file")


# -- initrd and device tree -----------------------------------------------------------------

def load_initrd(path: Path, ram: Ram, kernel_end: int) -> tuple[int, int]:
    """Copy the initrd to the top of RAM, page aligned; return its (start, end)."""
    data = read_file(path, "initrd", ram.size)
    if not data:
        raise VmsimError(f"initrd is empty: {path}")
    start = _align_down(ram.end - len(data), PAGE_SIZE)
    lowest = align_up(kernel_end, DTB_ALIGN) + DTB_SLOT_SIZE
    if start < lowest:
        free = max(0, ram.end - lowest)
        raise VmsimError(f"initrd {path} is {len(data)} bytes, but only {free} bytes of RAM "
                         f"are free above the kernel; give the machine more memory")
    ram.write(start, data)
    return start, start + len(data)


def place_dtb(blob: bytes, ram: Ram, avoid_end: int) -> int:
    """Copy the DTB to the first 8-byte aligned address at or above `avoid_end` (the
    kernel's end); return that address."""
    if len(blob) > DTB_SLOT_SIZE:
        raise VmsimError(f"device tree is {len(blob)} bytes, more than the "
                         f"{DTB_SLOT_SIZE} bytes reserved for it (is the command line huge?)")
    addr = align_up(avoid_end, DTB_ALIGN)
    if not ram.contains(addr, len(blob)):
        raise VmsimError(f"no room in RAM {_range(ram.base, ram.end)} for the device tree "
                         f"above {avoid_end:#x}")
    ram.write(addr, blob)
    return addr


def load_boot(ram: Ram, kernel: Path, initrd: Path | None,
              device_tree: Callable[[tuple[int, int] | None], bytes]) -> BootLayout:
    """Load everything in the right order. `device_tree(initrd_range)` builds the DTB
    once the initrd's place is known (for /chosen)."""
    image = load_kernel(kernel, ram)
    initrd_range = load_initrd(initrd, ram, image.end) if initrd is not None else None
    dtb_addr = place_dtb(device_tree(initrd_range), ram, image.end)
    return BootLayout(kernel=image, initrd=initrd_range, dtb_addr=dtb_addr)
