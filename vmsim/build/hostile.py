"""The hostile driver in `guests/hostile/`, built into an ELF that `vmsim run --kernel`
(or QEMU's virt machine) boots: a bare-metal program that feeds the virtio-crypto
device every bad input of docs/virtio-crypto.md's cases and reports each on the console.

It shares the bare-metal example's board support (start.S, board.c, lib.c, link.ld and
their headers from `guests/baremetal/`) and is cached the same way (`vmsim.build.cache`).

    python -m vmsim.build.hostile [-D NAME[=VALUE]]...     # build if needed, print the path
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console

from vmsim.artifacts import cache_root, digest
from vmsim.build import baremetal
from vmsim.build.cache import Builder, build_atomically, cache_lock, require
from vmsim.build.guest import CROSS_GCC, GUEST_SOURCES, compiler_version
from vmsim.errors import VmsimError

CACHE_KIND = "hostile"
HOSTILE_SOURCES = GUEST_SOURCES / "hostile"
ELF_NAME = "virtio-crypto-hostile.elf"
# What the hostile driver takes from the bare-metal example: start-up, UART, power-off.
SHARED = ("start.S", "board.c", "lib.c", "board.h", "lib.h", "virtio_mmio.h", "virtqueue.h",
          baremetal.LINKER_SCRIPT)
RECIPE = 1
REQUIREMENTS = baremetal.REQUIREMENTS


def read_sources() -> dict[str, bytes]:
    """Every file the build reads: the hostile driver's own and the shared ones."""
    own = {f"hostile/{name}": data for name, data in baremetal.read_sources(HOSTILE_SOURCES).items()}
    shared = {f"baremetal/{name}": (baremetal.BAREMETAL_SOURCES / name).read_bytes() for name in SHARED}
    return {**own, **shared}


def compile_command(output: Path, defines: Mapping[str, str] | None = None) -> list[str]:
    """The one compiler call that builds the hostile driver."""
    shared = baremetal.BAREMETAL_SOURCES
    units = ([str(shared / name) for name in SHARED if name.endswith((".c", ".S"))]
             + [str(p) for p in sorted(HOSTILE_SOURCES.iterdir()) if p.suffix == ".c"])
    return [CROSS_GCC, *baremetal.CFLAGS, *baremetal.define_flags(defines or {}),
            f"-I{HOSTILE_SOURCES}", f"-I{shared}", "-T", str(shared / baremetal.LINKER_SCRIPT),
            "-o", str(output), *units]


def hostile_path(defines: Mapping[str, str] | None = None) -> Path:
    defines = defines or {}
    parts: dict[str, bytes | str] = {f"src/{name}": data for name, data in read_sources().items()}
    parts.update(recipe=str(RECIPE), compiler=compiler_version(), cflags=" ".join(baremetal.CFLAGS),
                 defines=" ".join(baremetal.define_flags(defines)))
    return cache_root(CACHE_KIND) / digest(parts) / ELF_NAME


def ensure_hostile(defines: Mapping[str, str] | None = None, console: Console | None = None) -> Path:
    """Build the hostile driver's ELF if the cache lacks it; return its path."""
    defines = defines or {}
    baremetal.check_defines(defines)
    elf = hostile_path(defines)
    if elf.exists():
        return elf
    require(REQUIREMENTS)
    console = console or Console(stderr=True)

    def build(b: Builder, work: Path, out: Path) -> None:
        b.run("compiling and linking", compile_command(out / ELF_NAME, defines), cwd=work)

    with cache_lock(cache_root(CACHE_KIND)):
        if not elf.exists():
            build_atomically(elf.parent, "hostile driver", console, build)
    return elf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmsim.build.hostile",
                                     description="Build the hostile virtio-crypto driver "
                                                 "(cached) and print the ELF's path.")
    parser.add_argument("-D", dest="defines", action="append", default=[],
                        type=baremetal.parse_define, metavar="NAME[=VALUE]",
                        help="a C define, e.g. -D VIRTIO_CRYPTO_BASE=0x10008000 for QEMU")
    args = parser.parse_args(argv)
    try:
        print(ensure_hostile(dict(args.defines)))
    except VmsimError as error:
        print(f"vmsim: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
