"""A distribution's own kernel as a guest: Debian bookworm's arm64 kernel, unmodified.

Users point vmsim at the kernel their distribution ships, not one built for vmsim. That
kernel keeps virtio_mmio, virtio_crypto and AF_ALG in modules, so its guest gets an
initramfs whose PID 1 (guests/modload) loads them and then runs the default guest's
init and programs, cross-built as for the default guest.

The package is found through the `linux-image-arm64` metapackage, because the ABI
number in the real package's name changes with Debian's updates; the `-unsigned`
flavour is taken (its vmlinuz is the plain Image; the signed one only adds an EFI
signature). apt fetches it, `dpkg-deb -x` unpacks it, and the cache keeps the Image, its
config and the modules the guest loads, under keys that name the package version.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from vmsim.artifacts import cache_root, digest
from vmsim.build import cpio, kmod
from vmsim.build.cache import Builder, BuildSteps, Requirement, ensure_entry, require
from vmsim.build.guest import (CACHE_KIND, CFLAGS, GUEST_SOURCES, LDFLAGS, MULTICALL_PATH,
                               CachePlan, GuestArch, GuestPaths, compile_programs,
                               compiler_version, guest_arch, initramfs_entries,
                               read_initramfs_sources, write_gzip)
from vmsim.errors import VmsimError

# Bump when the steps below change in a way that changes their output.
KERNEL_RECIPE = 1
INITRAMFS_RECIPE = 1

MODLOAD_SOURCE = GUEST_SOURCES / "modload" / "modload.c"
MODULES_DIR = "/lib/modules"
MODULE_LIST = f"{MODULES_DIR}/load.list"
# What the programs need that the distribution builds as modules: the transport and the
# device's driver, virtio-rng, the AF_ALG socket types and keyctl's PKCS#8 parser.
GUEST_MODULES = ["virtio_mmio", "virtio_crypto", "virtio_rng", "algif_skcipher",
                 "algif_hash", "algif_aead", "pkcs8_key_parser"]

TOOLS = (Requirement("apt-cache", "apt"), Requirement("apt-get", "apt"),
         Requirement("dpkg-deb", "dpkg"))


@dataclass(frozen=True)
class DistroKernel:
    """A distribution kernel package for one architecture."""

    arch: str               # vmsim's name (`--arch`)
    debian_arch: str
    metapackage: str        # depends on the current ABI's package
    flavour_suffix: str     # appended to the ABI package's name

    def qualified(self, package: str) -> str:
        return f"{package}:{self.debian_arch}"


DISTRO_KERNELS = {"arm64": DistroKernel("arm64", "arm64", "linux-image-arm64", "-unsigned")}


def distro_kernel(arch: str) -> DistroKernel:
    guest_arch(arch)                        # an unknown name gets the usual error
    try:
        return DISTRO_KERNELS[arch]
    except KeyError:
        raise VmsimError(f"no distribution kernel for {arch} "
                         f"(there is one for {', '.join(DISTRO_KERNELS)})") from None


# ----------------------------------------------------------- the package, from apt


@dataclass(frozen=True)
class Package:
    name: str
    version: str


def _apt_show(kernel: DistroKernel, package: str) -> str:
    require(TOOLS)
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", kernel.qualified(package)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise VmsimError(f"apt knows no package {kernel.qualified(package)}: add the "
                         f"architecture and update (dpkg --add-architecture "
                         f"{kernel.debian_arch}; apt-get update), as "
                         f"scripts/install-system-deps.sh does")
    return proc.stdout


def _field(record: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", record, re.M)
    return match[1].strip() if match else ""


def resolve_package(kernel: DistroKernel) -> Package:
    """The kernel package the metapackage currently depends on, in its flavour."""
    depends = _field(_apt_show(kernel, kernel.metapackage), "Depends")
    match = re.search(r"(linux-image-[\w.+-]+?)(?::\w+)? \(= ([^)]+)\)", depends)
    if not match:
        raise VmsimError(f"{kernel.metapackage} depends on no kernel image: {depends!r}")
    name = match[1] + kernel.flavour_suffix
    version = _field(_apt_show(kernel, name), "Version")
    if version != match[2]:
        raise VmsimError(f"{name} is at {version or 'no version'}, "
                         f"{kernel.metapackage} wants {match[2]}")
    return Package(name, version)


# ------------------------------------------------------------------- cache layout


def _plan(kernel: DistroKernel, package: Package, arch: GuestArch) -> CachePlan:
    root = cache_root(CACHE_KIND)
    kkey = digest({"recipe": str(KERNEL_RECIPE), "arch": kernel.arch, "package": package.name,
                   "version": package.version, "modules": ",".join(GUEST_MODULES)})
    parts: dict[str, bytes | str] = {f"src/{n}": d for n, d in read_initramfs_sources().items()}
    parts.update({"modload": MODLOAD_SOURCE.read_bytes(), "kernel": kkey,
                  "recipe": str(INITRAMFS_RECIPE), "compiler": compiler_version(arch)})
    prefix = f"debian-{kernel.arch}"
    return CachePlan(root / f"kernel-{prefix}-{kkey}", root / f"initramfs-{prefix}-{digest(parts)}")


def distro_guest_paths(arch: str = "arm64") -> GuestPaths:
    """Where the cached guest of the distribution's current kernel is (it may not exist)."""
    kernel = distro_kernel(arch)
    return _plan(kernel, resolve_package(kernel), guest_arch(arch)).paths


# --------------------------------------------------------------------- the kernel


def _fetch_kernel(kernel: DistroKernel, package: Package) -> BuildSteps:
    def build(b: Builder, work: Path, out: Path) -> None:
        b.run(f"downloading {package.name} {package.version}",
              ["apt-get", "download", "-q", f"{kernel.qualified(package.name)}={package.version}"],
              cwd=work)
        (deb,) = work.glob("*.deb")
        b.run("unpacking", ["dpkg-deb", "-x", str(deb), "root"], cwd=work)
        (image,) = (work / "root" / "boot").glob("vmlinuz-*")
        (config,) = (work / "root" / "boot").glob("config-*")
        shutil.copyfile(image, out / "Image")
        shutil.copyfile(config, out / "config")
        (tree,) = (work / "root" / "lib" / "modules").iterdir()
        modules = out / "modules"
        modules.mkdir()
        order = kmod.load_order(tree, GUEST_MODULES)
        for path in order:
            (modules / f"{kmod.module_name(path)}.ko").write_bytes(kmod.module_bytes(path))
        (modules / "order").write_text("".join(f"{kmod.module_name(p)}.ko\n" for p in order))
    return build


# ------------------------------------------------------------------ the initramfs


def distro_entries(binary: Path, programs: list[str], modload: Path, module_list: Path,
                   modules: list[Path]) -> list[cpio.Entry]:
    """The default guest's layout with the module loader as /init and the modules."""
    entries = [e for e in initramfs_entries(binary, programs) if e.path != "/init"]
    entries += [cpio.File("/init", modload), cpio.Dir("/lib"), cpio.Dir(MODULES_DIR),
                cpio.File(MODULE_LIST, module_list, 0o644)]
    entries += [cpio.File(f"{MODULES_DIR}/{m.name}", m, 0o644) for m in modules]
    return entries


def _build_initramfs(arch: GuestArch, kernel_dir: Path) -> BuildSteps:
    def build(b: Builder, work: Path, out: Path) -> None:
        binary, programs = compile_programs(b, arch, work)
        modload = work / "modload"
        b.run("compiling the module loader",
              [arch.cross_gcc, *CFLAGS, f'-DMODULE_LIST="{MODULE_LIST}"',
               f'-DPROGRAMS="{MULTICALL_PATH}"', *LDFLAGS, "-o", str(modload),
               str(MODLOAD_SOURCE)], cwd=work)
        names = (kernel_dir / "modules" / "order").read_text().split()
        module_list = work / "load.list"
        module_list.write_text("".join(f"{MODULES_DIR}/{name}\n" for name in names))
        modules = [kernel_dir / "modules" / name for name in names]
        archive = cpio.newc_archive(distro_entries(binary, programs, modload, module_list,
                                                   modules))
        write_gzip(out / "initramfs.cpio.gz", archive)
    return build


# ------------------------------------------------------------------ public API


def ensure_distro_guest(console: Console | None = None, arch: str = "arm64") -> GuestPaths:
    """Fetch the distribution's kernel and build its initramfs, whatever is missing."""
    console = console or Console(stderr=True)
    kernel, target = distro_kernel(arch), guest_arch(arch)
    package = resolve_package(kernel)
    plan = _plan(kernel, package, target)
    paths = plan.paths
    if paths.kernel.exists() and paths.initrd.exists():
        return paths
    require(TOOLS + target.cross_requirements)
    ensure_entry(plan.kernel_dir, f"Debian kernel ({package.name})", console,
                 _fetch_kernel(kernel, package))
    ensure_entry(plan.initramfs_dir, f"initramfs (Debian {arch})", console,
                 _build_initramfs(target, plan.kernel_dir))
    return paths
