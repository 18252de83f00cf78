"""The default guest: a Linux 6.1 kernel and an initramfs, built once and cached.

Both are built from this repository's `guests/` sources with Debian's cross compiler
and kernel source package. Each artifact lives in a cache directory named after a hash
of its inputs, so editing an init program rebuilds only the initramfs, and a new
compiler or kernel package rebuilds both. A build happens in a temporary directory that
is renamed into place at the end, so an interrupted build never leaves a half cache.

The same kernel and initramfs also boot under QEMU (vmsim.harness.qemu), which is the
reference for behaviour and speed.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from rich.console import Console

from vmsim.artifacts import cache_root, digest
from vmsim.build.cache import (Builder, BuildSteps, Requirement, build_atomically, cache_lock,
                               require)
from vmsim.errors import VmsimError

CACHE_KIND = "guest"
GUEST_SOURCES = Path(__file__).resolve().parents[2] / "guests"
CONFIG_FRAGMENT = GUEST_SOURCES / "linux" / "vmsim.config"
INITRAMFS_SOURCES = GUEST_SOURCES / "initramfs"
KERNEL_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
KERNEL_PACKAGE = "linux-source-6.1"
CROSS_COMPILE = "riscv64-linux-gnu-"
CROSS_GCC = CROSS_COMPILE + "gcc"
STATIC_LIBC = Path("/usr/riscv64-linux-gnu/lib/libc.a")

# Bump when the build steps below change in a way that changes their output.
KERNEL_RECIPE = 2
INITRAMFS_RECIPE = 2

INIT_NAME = "init"
INIT_SOURCE = "init.c"
PROGRAMS_DIR = "programs"
SHARED_SOURCE = "vmsim.c"
MULTICALL_SOURCE = "multicall.c"
MULTICALL_PATH = "/libexec/vmsim-programs"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-ffunction-sections", "-fdata-sections")
LDFLAGS = ("-static", "-s", "-Wl,--gc-sections")


@dataclass(frozen=True)
class GuestPaths:
    kernel: Path
    initrd: Path

    @property
    def vmlinux(self) -> Path:
        """The kernel's ELF with its symbols, beside the Image, for GDB
        (`break start_kernel`); caches built before it was kept lack it."""
        return self.kernel.parent / "vmlinux"


# --------------------------------------------------------------------------- tools


BUILD_REQUIREMENTS = (
    Requirement(CROSS_GCC, "gcc-riscv64-linux-gnu"),
    Requirement(CROSS_COMPILE + "ld", "binutils-riscv64-linux-gnu"),
    Requirement(CROSS_COMPILE + "objcopy", "binutils-riscv64-linux-gnu"),
    Requirement(str(STATIC_LIBC), "libc6-dev-riscv64-cross"),
    Requirement(str(KERNEL_TARBALL), KERNEL_PACKAGE),
    Requirement("gcc", "gcc"),
    Requirement("make", "make"),
    Requirement("flex", "flex"),
    Requirement("bison", "bison"),
    Requirement("bc", "bc"),
    Requirement("tar", "tar"),
    Requirement("xz", "xz-utils"),
)

# ------------------------------------------------------------------ cache keys


def _command_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def kernel_source_version() -> str:
    """The Debian version of the kernel source package (falls back to the tarball's stat)."""
    version = _command_output(["dpkg-query", "-W", "-f=${Version}", KERNEL_PACKAGE])
    if version:
        return version
    try:
        st = KERNEL_TARBALL.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}-{st.st_mtime_ns}"


def compiler_version() -> str:
    """The first line of the cross compiler's --version, or "missing"."""
    return _command_output([CROSS_GCC, "--version"]).partition("\n")[0] or "missing"


def kernel_key(fragment: bytes, kernel_version: str, compiler: str) -> str:
    return digest({"recipe": str(KERNEL_RECIPE), "fragment": fragment,
                    "kernel": kernel_version, "compiler": compiler})


def initramfs_key(sources: Mapping[str, bytes], kernel_version: str, compiler: str) -> str:
    """The kernel version counts because the archive is made by its `gen_init_cpio`."""
    parts: dict[str, bytes | str] = {f"src/{name}": data for name, data in sources.items()}
    parts.update(recipe=str(INITRAMFS_RECIPE), kernel=kernel_version, compiler=compiler)
    return digest(parts)


def read_initramfs_sources(root: Path = INITRAMFS_SOURCES) -> dict[str, bytes]:
    """Every C source and header of the initramfs, by path relative to `root`."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.suffix in (".c", ".h")}


# ------------------------------------------------------------------- cache layout


@dataclass(frozen=True)
class _Plan:
    """Where each artifact of the current inputs lives in the cache."""

    kernel_dir: Path
    initramfs_dir: Path

    @property
    def paths(self) -> GuestPaths:
        return GuestPaths(kernel=self.kernel_dir / "Image",
                          initrd=self.initramfs_dir / "initramfs.cpio.gz")


def _plan() -> _Plan:
    kernel_version, compiler = kernel_source_version(), compiler_version()
    root = cache_root(CACHE_KIND)
    kkey = kernel_key(CONFIG_FRAGMENT.read_bytes(), kernel_version, compiler)
    ikey = initramfs_key(read_initramfs_sources(), kernel_version, compiler)
    return _Plan(root / f"kernel-{kkey}", root / f"initramfs-{ikey}")


def guest_paths() -> GuestPaths:
    """Where the cached default guest is for the current inputs (it may not exist yet)."""
    return _plan().paths


# ------------------------------------------------------------------ the kernel


def parse_config(text: str) -> dict[str, str]:
    """Kconfig lines as {symbol: value}; `# CONFIG_X is not set` reads as "n"."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"(CONFIG_\w+)=(.*)", line.strip()):
            values[m[1]] = m[2]
        elif m := re.fullmatch(r"# (CONFIG_\w+) is not set", line.strip()):
            values[m[1]] = "n"
    return values


def missing_options(fragment: str, config: str) -> list[str]:
    """Every fragment setting that the final .config does not have, as "X=want (got)"."""
    have = parse_config(config)
    return [f"{name}={want} (got {have.get(name, 'n')})"
            for name, want in parse_config(fragment).items() if have.get(name, "n") != want]


def _kernel_env() -> dict[str, str]:
    """Fixed build identity, so the same inputs give the same Image."""
    return dict(os.environ, ARCH="riscv", CROSS_COMPILE=CROSS_COMPILE, LC_ALL="C",
                KBUILD_BUILD_USER="vmsim", KBUILD_BUILD_HOST="vmsim",
                KBUILD_BUILD_TIMESTAMP="2024-01-01")


def _build_kernel(b: Builder, work: Path, out: Path) -> None:
    b.run("unpacking the kernel source", ["tar", "-xf", str(KERNEL_TARBALL)], cwd=work)
    (src,) = [p for p in work.iterdir() if p.is_dir()]
    env = _kernel_env()
    jobs = str(len(os.sched_getaffinity(0)))
    b.run("configuring (tinyconfig)", ["make", "tinyconfig"], cwd=src, env=env)
    b.run("configuring (fragment)",
          ["scripts/kconfig/merge_config.sh", "-m", ".config", str(CONFIG_FRAGMENT)],
          cwd=src, env=env)
    b.run("configuring (olddefconfig)", ["make", "olddefconfig"], cwd=src, env=env)
    config = (src / ".config").read_text()
    if bad := missing_options(CONFIG_FRAGMENT.read_text(), config):
        raise VmsimError(f"kernel .config lacks required options: {', '.join(bad)}")
    b.run("building the kernel", ["make", f"-j{jobs}", "Image"], cwd=src, env=env)
    shutil.copyfile(src / "arch/riscv/boot/Image", out / "Image")
    shutil.copyfile(src / "vmlinux", out / "vmlinux")      # symbols, for GDB
    shutil.copyfile(src / ".config", out / "config")
    shutil.copy2(src / "usr/gen_init_cpio", out / "gen_init_cpio")


# -------------------------------------------------------------- the initramfs


def program_names(root: Path = INITRAMFS_SOURCES) -> list[str]:
    """The test programs that go to /bin: one per `programs/*.c`."""
    return sorted(p.stem for p in (root / PROGRAMS_DIR).glob("*.c"))


def program_entry(name: str) -> str:
    """The C name a program's main() is compiled under in the multi-call binary."""
    return "vmsim_main_" + name.replace("-", "_")


def check_program_names(names: list[str]) -> None:
    """Names become paths in /bin and C identifiers, so they must be plain and distinct."""
    bad = [n for n in names if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", n) or n == INIT_NAME]
    entries = [program_entry(n) for n in names]
    clashing = sorted({n for n, e in zip(names, entries) if entries.count(e) > 1})
    if bad or clashing:
        raise VmsimError(f"bad initramfs program names in {INITRAMFS_SOURCES / PROGRAMS_DIR}: "
                         f"{', '.join(bad + clashing)} (use a-z, 0-9, - and _; "
                         f"'{INIT_NAME}' is reserved; - and _ must not be the only difference)")


def program_table(names: list[str]) -> str:
    """C source of the multi-call binary's table: the init and every program."""
    entries = [INIT_NAME, *names]
    decls = "".join(f"int {program_entry(n)}(void);\n" for n in entries)
    rows = "".join(f'    {{"{n}", {program_entry(n)}}},\n' for n in entries)
    return (f'#include "vmsim.h"\n\n{decls}\n'
            f"const struct vmsim_program vmsim_programs[] = {{\n{rows}    {{0, 0}},\n}};\n")


def cpio_list(binary: Path, programs: list[str]) -> str:
    """The `gen_init_cpio` description of the initramfs: one binary, one link per name.

    /dev/console is a node in the archive because the kernel opens it before init
    runs; `gen_init_cpio` makes it without root.
    """
    lines = ["dir /dev 0755 0 0", "nod /dev/console 0600 0 0 c 5 1",
             "dir /proc 0755 0 0", "dir /sys 0755 0 0", "dir /bin 0755 0 0",
             "dir /libexec 0755 0 0", f"file {MULTICALL_PATH} {binary} 0755 0 0",
             f"slink /init {MULTICALL_PATH} 0777 0 0"]
    lines += [f"slink /bin/{name} {MULTICALL_PATH} 0777 0 0" for name in programs]
    return "\n".join(lines) + "\n"


def _build_initramfs(gen_init_cpio: Path) -> BuildSteps:
    def build(b: Builder, work: Path, out: Path) -> None:
        src = INITRAMFS_SOURCES
        programs = program_names(src)
        check_program_names(programs)
        (work / "programs.c").write_text(program_table(programs))
        units = [(src / INIT_SOURCE, [f"-Dmain={program_entry(INIT_NAME)}"])]
        units += [(src / PROGRAMS_DIR / f"{name}.c", [f"-Dmain={program_entry(name)}"])
                  for name in programs]
        units += [(src / SHARED_SOURCE, []), (src / MULTICALL_SOURCE, []),
                  (work / "programs.c", [])]
        objects = []
        for index, (source, defines) in enumerate(units):
            obj = work / f"{index:03d}-{source.stem}.o"
            b.run(f"compiling {source.name}", [CROSS_GCC, *CFLAGS, *defines, f"-I{src}", "-c",
                                               "-o", str(obj), str(source)], cwd=work)
            objects.append(str(obj))
        binary = work / "vmsim-programs"
        b.run("linking", [CROSS_GCC, *LDFLAGS, "-o", str(binary), *objects], cwd=work)
        (work / "initramfs.list").write_text(cpio_list(binary, programs))
        b.run("packing the archive", [str(gen_init_cpio), "-t", "0", "initramfs.list"],
              cwd=work, stdout=work / "initramfs.cpio")
        with gzip.GzipFile(out / "initramfs.cpio.gz", "wb", compresslevel=9, mtime=0) as gz:
            gz.write((work / "initramfs.cpio").read_bytes())
    return build


# ------------------------------------------------------------------ public API


def ensure_default_guest(console: Console | None = None) -> GuestPaths:
    """Build what is missing from the cache (kernel, then initramfs) and return the paths."""
    console = console or Console(stderr=True)
    plan = _plan()
    paths = plan.paths
    if paths.kernel.exists() and paths.initrd.exists():
        return paths
    require(BUILD_REQUIREMENTS)
    with cache_lock(cache_root(CACHE_KIND)):
        if not paths.kernel.exists():
            build_atomically(plan.kernel_dir, "Linux kernel", console, _build_kernel)
        if not paths.initrd.exists():
            build_atomically(plan.initramfs_dir, "initramfs", console,
                              _build_initramfs(plan.kernel_dir / "gen_init_cpio"))
    return paths
