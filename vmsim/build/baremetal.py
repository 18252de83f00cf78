"""The bare-metal example in `guests/baremetal/`, built into an ELF that `vmsim run
--kernel` boots: a poll-mode virtio-crypto driver that checks known answers.

The ELF is cached like the default guest (`vmsim.build.cache`): one directory per hash of
the sources, the compiler, the flags and the build-time defines, built in a temporary
directory and renamed into place, one build at a time per cache. A test that needs a
variant (a spoiled known answer, more rounds) passes defines and gets its own entry.

    python -m vmsim.build.baremetal [-D NAME[=VALUE]]...     # build if needed, print the path
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console

from vmsim.artifacts import cache_root, digest
from vmsim.build.cache import Builder, Requirement, build_atomically, cache_lock, require
from vmsim.build.guest import CROSS_GCC, GUEST_SOURCES, compiler_version
from vmsim.errors import VmsimError

CACHE_KIND = "baremetal"
BAREMETAL_SOURCES = GUEST_SOURCES / "baremetal"
LINKER_SCRIPT = "link.ld"
ELF_NAME = "virtio-crypto-poll.elf"
SOURCE_SUFFIXES = (".c", ".h", ".S", ".ld")
COMPILED_SUFFIXES = (".S", ".c")

# Bump when the build step changes in a way that changes its output.
RECIPE = 1

# rv64imac is the smallest ISA every RISC-V Linux-class core has; binutils 2.40 wants
# the CSR instructions (csrw, rdtime) named as their own extension, zicsr.
CFLAGS = ("-ffreestanding", "-nostdlib", "-static", "-fno-pie", "-no-pie",
          "-march=rv64imac_zicsr", "-mabi=lp64", "-mcmodel=medany",
          "-O2", "-Wall", "-Wextra", "-Wl,--build-id=none")

REQUIREMENTS = (Requirement(CROSS_GCC, "gcc-riscv64-linux-gnu"),)

Defines = Mapping[str, str]
_DEFINE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_sources(root: Path = BAREMETAL_SOURCES) -> dict[str, bytes]:
    """Every file the build reads, by name relative to `root`."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.suffix in SOURCE_SUFFIXES}


def check_defines(defines: Defines) -> None:
    """Defines go onto the compiler's command line, so they must be plain."""
    bad = [f"{name}={value}" for name, value in defines.items()
           if not _DEFINE_NAME.fullmatch(name) or not re.fullmatch(r"[\w.+-]*", value)]
    if bad:
        raise VmsimError(f"bad bare-metal build defines: {', '.join(bad)} "
                         "(use NAME or NAME=VALUE with letters, digits, _ . + -)")


def define_flags(defines: Defines) -> list[str]:
    return [f"-D{name}={value}" if value else f"-D{name}" for name, value in sorted(defines.items())]


def compile_command(output: Path, defines: Defines | None = None,
                    root: Path = BAREMETAL_SOURCES) -> list[str]:
    """The one compiler call that builds the example (also the README's recipe)."""
    defines = defines or {}
    units = [str(p) for p in sorted(root.iterdir()) if p.suffix in COMPILED_SUFFIXES]
    return [CROSS_GCC, *CFLAGS, *define_flags(defines), "-T", str(root / LINKER_SCRIPT),
            "-o", str(output), *units]


def example_key(sources: Mapping[str, bytes], defines: Defines, compiler: str) -> str:
    parts: dict[str, bytes | str] = {f"src/{name}": data for name, data in sources.items()}
    parts.update(recipe=str(RECIPE), compiler=compiler, cflags=" ".join(CFLAGS),
                 defines=" ".join(define_flags(defines)))
    return digest(parts)


def example_path(defines: Defines | None = None) -> Path:
    """Where the cached ELF for the current sources and `defines` is (it may not exist)."""
    defines = defines or {}
    key = example_key(read_sources(), defines, compiler_version())
    return cache_root(CACHE_KIND) / key / ELF_NAME


def ensure_example(defines: Defines | None = None, console: Console | None = None) -> Path:
    """Build the example ELF if the cache lacks it; return its path."""
    defines = defines or {}
    check_defines(defines)
    elf = example_path(defines)
    if elf.exists():
        return elf
    require(REQUIREMENTS)
    console = console or Console(stderr=True)

    def build(b: Builder, work: Path, out: Path) -> None:
        b.run("compiling and linking", compile_command(out / ELF_NAME, defines), cwd=work)

    with cache_lock(cache_root(CACHE_KIND)):
        if not elf.exists():
            build_atomically(elf.parent, "bare-metal example", console, build)
    return elf


def parse_define(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmsim.build.baremetal",
                                     description="Build the bare-metal virtio-crypto example "
                                                 "(cached) and print the ELF's path.")
    parser.add_argument("-D", dest="defines", action="append", default=[], type=parse_define,
                        metavar="NAME[=VALUE]", help="a C define, e.g. -D VMSIM_ROUNDS=16")
    args = parser.parse_args(argv)
    try:
        print(ensure_example(dict(args.defines)))
    except VmsimError as error:
        print(f"vmsim: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
