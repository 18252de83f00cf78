"""Which kernel modules to load, and in what order, read from the modules themselves.

A distribution's kernel package ships its modules without modules.dep (depmod writes it
when the package is installed), so the order comes from each module's `.modinfo`
section: its `depends=` names the modules it needs. A module compressed as `.ko.xz`
is decompressed, since the guest's loader hands plain ELF files to finit_module.
"""
from __future__ import annotations

import io
import lzma
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from vmsim.errors import VmsimError

SUFFIXES = (".ko", ".ko.xz")


def module_name(path: Path) -> str:
    """The kernel's name for a module file: `virtio-rng.ko.xz` is `virtio_rng`."""
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return name.replace("-", "_")


def module_bytes(path: Path) -> bytes:
    """The module as the kernel loads it: plain ELF."""
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def module_depends(data: bytes) -> list[str]:
    """The `depends=` of a module's .modinfo: the modules it needs loaded first."""
    try:
        section = ELFFile(io.BytesIO(data)).get_section_by_name(".modinfo")
    except ELFError as error:
        raise VmsimError(f"not a kernel module: {error}") from None
    if section is None:
        return []
    for entry in section.data().split(b"\0"):
        key, _, value = entry.decode(errors="replace").partition("=")
        if key == "depends":
            return [name for name in value.split(",") if name]
    return []


def index_modules(tree: Path) -> dict[str, Path]:
    """Every module under `tree` by its kernel name."""
    return {module_name(p): p for suffix in SUFFIXES for p in sorted(tree.rglob(f"*{suffix}"))}


def load_order(tree: Path, wanted: list[str]) -> list[Path]:
    """`wanted` and everything they need, each after its dependencies; a module the tree
    lacks is one error naming it (a name the kernel has built in is not asked for)."""
    modules = index_modules(tree)
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, needed_by: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = modules.get(name)
        if path is None:
            raise VmsimError(f"no module {name} (needed by {needed_by}) under {tree}")
        for dependency in module_depends(module_bytes(path)):
            visit(dependency, name)
        order.append(path)

    for name in wanted:
        visit(name, "the guest")
    return order
