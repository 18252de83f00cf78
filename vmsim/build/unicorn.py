"""Builds the patched libunicorn and the native stop hook, each cached by content.

`python -m vmsim.build.unicorn` (the Makefile's `unicorn` target) makes both available:

- libunicorn 2.1.4 from the PyPI sdist with `patches/` applied, for riscv and aarch64, so that a
  stop from another thread lands only at a block boundary (docs/engine.md, P1), the
  `time` CSR reads the host clock natively instead of trapping (P2), every exception
  the kernel delegated reaches it natively instead of through the trap hook (P7), the
  SBI timer runs in the engine (P8), and more (docs/engine.md describes every change of
  the patch);
- the tiny C block hook in `native/`, the safe stop for the stock wheel (the fallback,
  docs/engine.md, W1).

Each lands in `~/.cache/vmsim/<kind>/<key>/`, where the key hashes everything that
decides the binary (version, sdist hash, patch, build options, C source). A cached
build returns at once; concurrent builders serialize on a lock file. `vmsim run` asks
for the native helpers on every start, so what only a build needs (the progress
display, archive and temporary-directory modules) is imported when a build happens.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

from vmsim.artifacts import (LIBUNICORN_NAME, NATIVE_CFLAGS, NATIVE_NAME, NATIVE_SOURCES,
                             UNICORN_CMAKE_OPTIONS, UNICORN_PATCH, UNICORN_SDIST_SHA256,
                             UNICORN_VERSION, cache_root, cached_patched_unicorn,
                             native_library_path, patched_unicorn_dir)
from vmsim.build.cache import Requirement, require
from vmsim.errors import VmsimError

CMAKE = Requirement("cmake", "cmake")
CC = Requirement("cc", "gcc")
PATCH = Requirement("patch", "patch")
MAKE = Requirement("make", "make")


class _Progress:
    """Concise progress on stderr: one line per step, a live percentage on a terminal."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last_shown = -1

    def step(self, message: str) -> None:
        if not self.quiet:
            self._end_live_line()
            print(f"vmsim: {message}", file=sys.stderr, flush=True)

    def percent(self, value: int) -> None:
        if self.quiet or value == self._last_shown:
            return
        if self.tty:
            print(f"\r  compiling {value:3d}%", end="", file=sys.stderr, flush=True)
        elif value // 25 != self._last_shown // 25:
            print(f"  compiling {value}%", file=sys.stderr, flush=True)
        self._last_shown = value

    def _end_live_line(self) -> None:
        if self.tty and self._last_shown >= 0:
            print(file=sys.stderr)
        self._last_shown = -1


@contextlib.contextmanager
def _build_lock(target_dir: Path) -> Iterator[None]:
    """Serialize builders of the same target, so a parallel `make` builds once."""
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(target_dir.with_name(target_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _install(built: Path, target: Path) -> None:
    """Copy into the cache atomically: a reader never sees half a library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(built, partial)
    os.replace(partial, target)


def _run(cmd: Sequence[str | os.PathLike], log: Path, step: str, cwd: Path | None = None,
         progress: _Progress | None = None) -> None:
    """Run one build step, output to the log; on failure, one line that points at it."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if progress is not None:
                _report_percent(line, progress)
        status = proc.wait()
    if status != 0:
        kept = cache_root("unicorn") / "last-build.log"
        shutil.copyfile(log, kept)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise VmsimError(f"unicorn build failed while {step} ({tail[0].strip()[:120]}); "
                         f"full log: {kept}")


def _report_percent(line: str, progress: _Progress) -> None:
    """Understands both ninja's `[n/m]` and make's `[ nn%]` progress prefixes."""
    m = re.match(r"\[(\d+)/(\d+)\]", line)
    if m:
        progress.percent(100 * int(m.group(1)) // max(1, int(m.group(2))))
        return
    m = re.match(r"\[\s*(\d+)%\]", line)
    if m:
        progress.percent(int(m.group(1)))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unpack(archive: Path, into: Path) -> Path:
    import tarfile

    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # Python < 3.11.4: the archive's hash was checked above
            tar.extractall(into)
    return into / f"unicorn-{UNICORN_VERSION}" / "src"


def build_patched_unicorn(quiet: bool = False) -> Path:
    """Build (or find cached) the patched libunicorn; return the directory holding it."""
    target_dir = patched_unicorn_dir()
    progress = _Progress(quiet)
    with _build_lock(target_dir):
        if cached_patched_unicorn():
            return target_dir
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        require((CMAKE, CC, PATCH) if generator else (CMAKE, CC, PATCH, MAKE))
        import tempfile

        with tempfile.TemporaryDirectory(prefix="build-", dir=target_dir.parent) as tmp_name:
            tmp = Path(tmp_name)
            log = tmp / "build.log"
            progress.step(f"building libunicorn {UNICORN_VERSION} with vmsim's stop patch "
                          f"(riscv and aarch64, once; a few minutes)")
            progress.step("downloading the sdist from PyPI")
            _run([sys.executable, "-m", "pip", "download", "-q", f"unicorn=={UNICORN_VERSION}",
                  "--no-binary", ":all:", "--no-deps", "-d", tmp / "sdist"], log,
                 "downloading the sdist")
            archive = tmp / "sdist" / f"unicorn-{UNICORN_VERSION}.tar.gz"
            if not archive.is_file() or _sha256_file(archive) != UNICORN_SDIST_SHA256:
                raise VmsimError(f"the downloaded unicorn {UNICORN_VERSION} sdist does not "
                                 f"match the expected sha256 {UNICORN_SDIST_SHA256[:12]}…")
            src = _unpack(archive, tmp)
            progress.step("applying the patch")
            _run(["patch", "-p1", "--forward", "--batch", "-i", UNICORN_PATCH], log,
                 "applying the patch", cwd=src)
            progress.step("configuring")
            build = tmp / "build"
            _run(["cmake", "-S", src, "-B", build, *generator, *UNICORN_CMAKE_OPTIONS], log,
                 "configuring")
            progress.step("compiling")
            _run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2)], log,
                 "compiling", progress=progress)
            _install(build / LIBUNICORN_NAME, target_dir / LIBUNICORN_NAME)
            shutil.copyfile(UNICORN_PATCH, target_dir / UNICORN_PATCH.name)
        progress.step(f"patched libunicorn cached in {target_dir}")
    return target_dir


def ensure_native_library(quiet: bool = True) -> Path:
    """Build (or find cached) the native helper library; return its path."""
    target = native_library_path()
    if target.is_file():
        return target
    progress = _Progress(quiet)
    with _build_lock(target.parent):
        if target.is_file():
            return target
        require((CC,))
        import tempfile

        progress.step("building vmsim's native helpers")
        with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent.parent) as tmp_name:
            built = Path(tmp_name) / NATIVE_NAME
            _run(["cc", *NATIVE_CFLAGS, "-o", built, *NATIVE_SOURCES],
                 Path(tmp_name) / "build.log", "compiling vmsim's native helpers")
            _install(built, target)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quiet = "-q" in args or "--quiet" in args
    try:
        cached = cached_patched_unicorn()
        unicorn_dir = cached or build_patched_unicorn(quiet)
        native = ensure_native_library(quiet)
    except VmsimError as err:
        print(f"vmsim: {err}", file=sys.stderr)
        return err.exit_code
    if not quiet:
        state = "cached" if cached else "built"
        print(f"vmsim: patched libunicorn {state}: {unicorn_dir / LIBUNICORN_NAME}", file=sys.stderr)
        print(f"vmsim: native helpers: {native}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
