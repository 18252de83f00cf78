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
from vmsim.build import cpio
from vmsim.build.cache import Builder, BuildSteps, Requirement, ensure_entry, require
from vmsim.errors import VmsimError

CACHE_KIND = "guest"
GUEST_SOURCES = Path(__file__).resolve().parents[2] / "guests"
INITRAMFS_SOURCES = GUEST_SOURCES / "initramfs"
KERNEL_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
KERNEL_PACKAGE = "linux-source-6.1"


@dataclass(frozen=True)
class GuestArch:
    """What differs between the architectures' default guests: the kernel's ARCH, the
    Debian cross toolchain, the config fragment, and the tag in the cache keys."""

    name: str               # as `--arch` spells it
    kernel_arch: str        # the kernel's ARCH=
    triplet: str            # the cross toolchain's prefix, without the dash
    debian_arch: str        # Debian's name, in the cross libc package's name
    fragment: Path
    # riscv64's keys predate the other architectures and carry no tag, so that the
    # guests already cached for it stay valid.
    key_tag: str

    @property
    def cross_compile(self) -> str:
        return self.triplet + "-"

    @property
    def cross_gcc(self) -> str:
        return self.cross_compile + "gcc"

    @property
    def static_libc(self) -> Path:
        return Path(f"/usr/{self.triplet}/lib/libc.a")

    @property
    def image(self) -> str:
        """The Image's path in the kernel's build tree."""
        return f"arch/{self.kernel_arch}/boot/Image"

    @property
    def cross_requirements(self) -> tuple[Requirement, ...]:
        """The cross toolchain, enough for the initramfs programs."""
        binutils = f"binutils-{self.triplet}"
        return (Requirement(self.cross_gcc, f"gcc-{self.triplet}"),
                Requirement(self.cross_compile + "ld", binutils),
                Requirement(self.cross_compile + "objcopy", binutils),
                Requirement(str(self.static_libc), f"libc6-dev-{self.debian_arch}-cross"))

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        """Everything the kernel and initramfs builds run."""
        return self.cross_requirements + HOST_BUILD_REQUIREMENTS


HOST_BUILD_REQUIREMENTS = (
    Requirement(str(KERNEL_TARBALL), KERNEL_PACKAGE),
    Requirement("gcc", "gcc"),
    Requirement("make", "make"),
    Requirement("flex", "flex"),
    Requirement("bison", "bison"),
    Requirement("bc", "bc"),
    Requirement("tar", "tar"),
    Requirement("xz", "xz-utils"),
)

RISCV64 = GuestArch("riscv64", "riscv", "riscv64-linux-gnu", "riscv64",
                    GUEST_SOURCES / "linux" / "vmsim.config", key_tag="")
ARM64 = GuestArch("arm64", "arm64", "aarch64-linux-gnu", "arm64",
                  GUEST_SOURCES / "linux" / "vmsim-arm64.config", key_tag="arm64")
ARCHES = {arch.name: arch for arch in (RISCV64, ARM64)}
DEFAULT_ARCH = RISCV64.name

# The riscv64 names that other builds (bare-metal, hostile) and older callers use.
CONFIG_FRAGMENT = RISCV64.fragment
CROSS_COMPILE = RISCV64.cross_compile
CROSS_GCC = RISCV64.cross_gcc
STATIC_LIBC = RISCV64.static_libc
BUILD_REQUIREMENTS = RISCV64.requirements


def guest_arch(name: str) -> GuestArch:
    """The architecture called `name` (`--arch`), or one error line naming the choices."""
    try:
        return ARCHES[name]
    except KeyError:
        raise VmsimError(f"no default guest for architecture {name!r} "
                         f"(choose from {', '.join(ARCHES)})") from None

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


def compiler_version(arch: GuestArch = RISCV64) -> str:
    """The first line of the cross compiler's --version, or "missing"."""
    return _command_output([arch.cross_gcc, "--version"]).partition("\n")[0] or "missing"


def _tagged(parts: dict[str, bytes | str], tag: str) -> dict[str, bytes | str]:
    return {**parts, "arch": tag} if tag else parts


def kernel_key(fragment: bytes, kernel_version: str, compiler: str, tag: str = "") -> str:
    return digest(_tagged({"recipe": str(KERNEL_RECIPE), "fragment": fragment,
                           "kernel": kernel_version, "compiler": compiler}, tag))


def initramfs_key(sources: Mapping[str, bytes], kernel_version: str, compiler: str,
                  tag: str = "") -> str:
    """The kernel version counts because the archive is made by its `gen_init_cpio`."""
    parts: dict[str, bytes | str] = {f"src/{name}": data for name, data in sources.items()}
    parts.update(recipe=str(INITRAMFS_RECIPE), kernel=kernel_version, compiler=compiler)
    return digest(_tagged(parts, tag))


def read_initramfs_sources(root: Path = INITRAMFS_SOURCES) -> dict[str, bytes]:
    """Every C source and header of the initramfs, by path relative to `root`."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.suffix in (".c", ".h")}


# ------------------------------------------------------------------- cache layout


@dataclass(frozen=True)
class CachePlan:
    """Where each artifact of the current inputs lives in the cache."""

    kernel_dir: Path
    initramfs_dir: Path

    @property
    def paths(self) -> GuestPaths:
        return GuestPaths(kernel=self.kernel_dir / "Image",
                          initrd=self.initramfs_dir / "initramfs.cpio.gz")


def _plan(arch: GuestArch) -> CachePlan:
    kernel_version, compiler = kernel_source_version(), compiler_version(arch)
    root = cache_root(CACHE_KIND)
    tag = arch.key_tag
    kkey = kernel_key(arch.fragment.read_bytes(), kernel_version, compiler, tag)
    ikey = initramfs_key(read_initramfs_sources(), kernel_version, compiler, tag)
    prefix = f"-{tag}" if tag else ""
    return CachePlan(root / f"kernel{prefix}-{kkey}", root / f"initramfs{prefix}-{ikey}")


def guest_paths(arch: str = DEFAULT_ARCH) -> GuestPaths:
    """Where the cached default guest is for the current inputs (it may not exist yet)."""
    return _plan(guest_arch(arch)).paths


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


def _kernel_env(arch: GuestArch) -> dict[str, str]:
    """Fixed build identity, so the same inputs give the same Image."""
    return dict(os.environ, ARCH=arch.kernel_arch, CROSS_COMPILE=arch.cross_compile, LC_ALL="C",
                KBUILD_BUILD_USER="vmsim", KBUILD_BUILD_HOST="vmsim",
                KBUILD_BUILD_TIMESTAMP="2024-01-01")


def _build_kernel(arch: GuestArch) -> BuildSteps:
    def build(b: Builder, work: Path, out: Path) -> None:
        b.run("unpacking the kernel source", ["tar", "-xf", str(KERNEL_TARBALL)], cwd=work)
        (src,) = [p for p in work.iterdir() if p.is_dir()]
        env = _kernel_env(arch)
        jobs = str(len(os.sched_getaffinity(0)))
        b.run("configuring (tinyconfig)", ["make", "tinyconfig"], cwd=src, env=env)
        b.run("configuring (fragment)",
              ["scripts/kconfig/merge_config.sh", "-m", ".config", str(arch.fragment)],
              cwd=src, env=env)
        b.run("configuring (olddefconfig)", ["make", "olddefconfig"], cwd=src, env=env)
        config = (src / ".config").read_text()
        if bad := missing_options(arch.fragment.read_text(), config):
            raise VmsimError(f"kernel .config lacks required options: {', '.join(bad)}")
        b.run("building the kernel", ["make", f"-j{jobs}", "Image"], cwd=src, env=env)
        shutil.copyfile(src / arch.image, out / "Image")
        shutil.copyfile(src / "vmlinux", out / "vmlinux")      # symbols, for GDB
        shutil.copyfile(src / ".config", out / "config")
        shutil.copy2(src / "usr/gen_init_cpio", out / "gen_init_cpio")
    return build


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


def initramfs_entries(binary: Path, programs: list[str]) -> list[cpio.Entry]:
    """The initramfs: one binary, one link per name.

    /dev/console is a node in the archive because the kernel opens it before init
    runs; `gen_init_cpio` makes it without root.
    """
    entries: list[cpio.Entry] = [
        cpio.Dir("/dev"), cpio.CharDevice("/dev/console", 0o600, 5, 1),
        cpio.Dir("/proc"), cpio.Dir("/sys"), cpio.Dir("/bin"), cpio.Dir("/libexec"),
        cpio.File(MULTICALL_PATH, binary), cpio.Symlink("/init", MULTICALL_PATH)]
    entries += [cpio.Symlink(f"/bin/{name}", MULTICALL_PATH) for name in programs]
    return entries


def cpio_list(binary: Path, programs: list[str]) -> str:
    """The `gen_init_cpio` description of the initramfs."""
    return cpio.gen_init_cpio_list(initramfs_entries(binary, programs))


def compile_programs(b: Builder, arch: GuestArch, work: Path) -> tuple[Path, list[str]]:
    """The init and every program compiled into one static binary in `work`, and the
    programs' names."""
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
        b.run(f"compiling {source.name}", [arch.cross_gcc, *CFLAGS, *defines, f"-I{src}", "-c",
                                           "-o", str(obj), str(source)], cwd=work)
        objects.append(str(obj))
    binary = work / "vmsim-programs"
    b.run("linking", [arch.cross_gcc, *LDFLAGS, "-o", str(binary), *objects], cwd=work)
    return binary, programs


def write_gzip(path: Path, data: bytes) -> None:
    """Reproducibly: no name and no time in the header."""
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)


def _build_initramfs(arch: GuestArch, gen_init_cpio: Path) -> BuildSteps:
    def build(b: Builder, work: Path, out: Path) -> None:
        binary, programs = compile_programs(b, arch, work)
        (work / "initramfs.list").write_text(cpio_list(binary, programs))
        b.run("packing the archive", [str(gen_init_cpio), "-t", "0", "initramfs.list"],
              cwd=work, stdout=work / "initramfs.cpio")
        write_gzip(out / "initramfs.cpio.gz", (work / "initramfs.cpio").read_bytes())
    return build


# ------------------------------------------------------------------ public API


def ensure_default_guest(console: Console | None = None,
                         arch: str = DEFAULT_ARCH) -> GuestPaths:
    """Build what is missing from the cache (kernel, then initramfs) and return the paths."""
    console = console or Console(stderr=True)
    target = guest_arch(arch)
    plan = _plan(target)
    paths = plan.paths
    if paths.kernel.exists() and paths.initrd.exists():
        return paths
    require(target.requirements)
    ensure_entry(plan.kernel_dir, f"Linux kernel ({target.name})", console,
                 _build_kernel(target))
    ensure_entry(plan.initramfs_dir, f"initramfs ({target.name})", console,
                 _build_initramfs(target, plan.kernel_dir / "gen_init_cpio"))
    return paths
