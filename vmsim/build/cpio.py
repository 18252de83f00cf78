"""An initramfs layout as data, written either as a `gen_init_cpio` list or as a "newc"
cpio archive directly.

The default guests pack their archive with the `gen_init_cpio` of the kernel they were
built with. A distribution kernel comes without one, so its initramfs is written here
(the format is in the kernel's Documentation/driver-api/early-userspace/buffer-format.rst);
both come from the same entries, so the layouts cannot drift apart. Every entry belongs
to root with mtime 0, so the same inputs give the same bytes.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union


@dataclass(frozen=True)
class Dir:
    path: str
    mode: int = 0o755

    def list_line(self) -> str:
        return f"dir {self.path} {self.mode:04o} 0 0"


@dataclass(frozen=True)
class CharDevice:
    path: str
    mode: int
    major: int
    minor: int

    def list_line(self) -> str:
        return f"nod {self.path} {self.mode:04o} 0 0 c {self.major} {self.minor}"


@dataclass(frozen=True)
class File:
    path: str
    source: Path
    mode: int = 0o755

    def list_line(self) -> str:
        return f"file {self.path} {self.source} {self.mode:04o} 0 0"


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str

    def list_line(self) -> str:
        return f"slink {self.path} {self.target} 0777 0 0"


Entry = Union[Dir, CharDevice, File, Symlink]


def gen_init_cpio_list(entries: Iterable[Entry]) -> str:
    """The entries in the list format of the kernel's usr/gen_init_cpio."""
    return "".join(entry.list_line() + "\n" for entry in entries)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _record(ino: int, name: str, mode: int, data: bytes = b"", nlink: int = 1,
            rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.lstrip("/").encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    return _pad4(header + encoded) + _pad4(data)


def newc_archive(entries: Iterable[Entry]) -> bytes:
    """The entries as one uncompressed newc archive, ending with its trailer."""
    out = bytearray()
    ino = 0
    for ino, entry in enumerate(entries, start=1):
        if isinstance(entry, Dir):
            out += _record(ino, entry.path, stat.S_IFDIR | entry.mode, nlink=2)
        elif isinstance(entry, CharDevice):
            out += _record(ino, entry.path, stat.S_IFCHR | entry.mode,
                           rdev=(entry.major, entry.minor))
        elif isinstance(entry, File):
            out += _record(ino, entry.path, stat.S_IFREG | entry.mode,
                           entry.source.read_bytes())
        else:
            out += _record(ino, entry.path, stat.S_IFLNK | 0o777, entry.target.encode())
    out += _record(ino + 1, "TRAILER!!!", 0)
    return bytes(out)
