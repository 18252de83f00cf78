"""Where the things vmsim builds for itself are cached, and what names each one.

The run-time layers only *look up* artifacts here (the patched engine, the native
helpers); `vmsim.build` makes them. Keeping the identity of an artifact (the inputs
its cache key hashes) in one place means the lookup and the build can never disagree.

Each artifact lives in `$XDG_CACHE_HOME/vmsim/<kind>/<key>/` (default `~/.cache/vmsim`),
where the key is a digest of everything that decides its bytes.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

_PACKAGE = Path(__file__).resolve().parent

UNICORN_VERSION = "2.1.4"
# sha256 of unicorn-2.1.4.tar.gz on PyPI: a different download is never built.
UNICORN_SDIST_SHA256 = "00567a70e323f749b419cd86bee4f9115beab7ebba32194581c090cbb7c59cff"
UNICORN_PATCH = _PACKAGE / "patches" / "unicorn-2.1.4-vmsim.patch"
UNICORN_CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DUNICORN_ARCH=riscv;aarch64",
    "-DUNICORN_BUILD_TESTS=OFF",
    "-DUNICORN_INSTALL=OFF",
    "-DUNICORN_LEGACY_STATIC_ARCHIVE=OFF",
)
LIBUNICORN_NAME = "libunicorn.so.2"

# vmsim's own native helpers, one small library: the stop hook for the wheel engine, the
# file-descriptor watcher of the run loop (both work without the GIL), the MMIO
# register mirror, the code invalidation after device writes, and the virtqueue's chain
# walk, check of a long indirect table and trace copy of a chain.
NATIVE_SOURCES = tuple(_PACKAGE / "native" / name for name in (
    "stop_hook.c", "fd_watch.c", "register_mirror.c", "invalidate.c", "linear_table.c",
    "chain_capture.c", "chain_walk.c"))
NATIVE_CFLAGS = ("-O2", "-fPIC", "-shared", "-Wall", "-pthread")
NATIVE_NAME = "libvmsim_native.so"


def cache_root(kind: str) -> Path:
    """Where artifacts of one kind are cached (honours XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmsim" / kind


def digest(parts: Mapping[str, bytes | str]) -> str:
    """A short, stable cache key over named inputs."""
    h = hashlib.sha256()
    for name in sorted(parts):
        value = parts[name]
        data = value.encode() if isinstance(value, str) else value
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def patched_unicorn_dir() -> Path:
    """The cache directory for the current patch and options (it may not exist yet)."""
    key = digest({"version": UNICORN_VERSION, "sdist": UNICORN_SDIST_SHA256,
                  "patch": UNICORN_PATCH.read_bytes(), "cmake": " ".join(UNICORN_CMAKE_OPTIONS)})
    return cache_root("unicorn") / key


def cached_patched_unicorn() -> Path | None:
    """The directory holding the built patched libunicorn, or None if not built."""
    directory = patched_unicorn_dir()
    return directory if (directory / LIBUNICORN_NAME).is_file() else None


def native_library_path() -> Path:
    """Where the native helper library for the current C sources lives."""
    key = digest({**{source.name: source.read_bytes() for source in NATIVE_SOURCES},
                  "cflags": " ".join(NATIVE_CFLAGS)})
    return cache_root("native") / key / NATIVE_NAME
