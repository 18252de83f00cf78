"""The build cache shared by everything vmsim builds for itself: the default guest, the
bare-metal example and the patched Unicorn engine.

Each artifact lives in `$XDG_CACHE_HOME/vmsim/<kind>/` (default `~/.cache/vmsim`) in a
directory named after a digest of its inputs, so a changed input means a new entry and
an unchanged one costs nothing. A build runs in a temporary directory that is renamed
into place at the end, one build at a time per cache, so an interrupted build never
leaves half an entry. Missing tools are named together with their Debian packages.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from vmsim.errors import VmsimError

if TYPE_CHECKING:   # rich is imported by the builds that show progress, not by every run
    from rich.console import Console
    from rich.status import Status


@dataclass(frozen=True)
class Requirement:
    """A program on PATH, or an absolute file, and the Debian package that provides it."""

    name: str
    package: str

    def present(self, search_path: str | None) -> bool:
        if self.name.startswith("/"):
            return Path(self.name).exists()
        return shutil.which(self.name, path=search_path) is not None

def require(requirements: tuple[Requirement, ...], search_path: str | None = None) -> None:
    """Raise one VmsimError naming every missing tool and the apt packages to install.

    `search_path` replaces PATH for the lookup (None means the process's PATH).
    """
    missing = [r for r in requirements if not r.present(search_path)]
    if not missing:
        return
    names = ", ".join(r.name for r in missing)
    packages = " ".join(dict.fromkeys(r.package for r in missing))
    raise VmsimError(f"missing {names}; install with: apt-get install {packages}")

class StepFailed(Exception):
    pass


class Builder:
    """Runs the steps of one build with a spinner; command output goes to a log file."""

    def __init__(self, what: str, status: Status, log: Path) -> None:
        self.what = what
        self.status = status
        self.log = log
        self.started = time.monotonic()

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def show(self, step: str, detail: str = "") -> None:
        from rich.markup import escape

        text = f"[bold]{self.what}[/]: {step} [dim]({self.elapsed()})[/]"
        self.status.update(f"{text} [dim]{escape(detail)}[/]" if detail else text)

    def run(self, step: str, cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None,
            stdout: Path | None = None) -> None:
        """Run a command, its output appended to the log (or stdout to a file)."""
        self.show(step)
        with open(self.log, "ab") as log:
            log.write(f"\n$ {' '.join(cmd)}\n".encode())
            log.flush()
            out = open(stdout, "wb") if stdout else log
            try:
                proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=log,
                                        stdin=subprocess.DEVNULL)
                while True:
                    try:
                        code = proc.wait(timeout=0.25)
                        break
                    except subprocess.TimeoutExpired:
                        self.show(step, _last_line(self.log))
            finally:
                if stdout:
                    out.close()
        if code != 0:
            raise StepFailed(step)


def _last_line(log: Path) -> str:
    """The last complete line of a growing log, for the spinner."""
    with open(log, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 256))
        tail = f.read().decode(errors="replace")
    complete = tail[:tail.rfind("\n")].splitlines()
    return complete[-1].strip()[:60] if complete else ""


BuildSteps = Callable[[Builder, Path, Path], None]


@contextmanager
def cache_lock(root: Path, entry: str = "") -> Iterator[None]:
    """One build at a time per cache, or per entry of it when `entry` names one, across
    processes; leftovers of killed builds (of that entry) go."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / (f".lock-{entry}" if entry else ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prefix = f".tmp-{entry}-" if entry else ".tmp-"
        for stale in root.glob(prefix + "*"):
            if not entry or stale.name[len(prefix):].isdigit():     # .tmp-<entry>-<pid>
                shutil.rmtree(stale, ignore_errors=True)
        yield


def ensure_entry(final: Path, what: str, console: Console, build: BuildSteps) -> None:
    """Build the cache entry `final` unless it exists. Only builds of the same entry wait
    for each other, so a long kernel build holds up no other guest's build."""
    with cache_lock(final.parent, final.name):
        if not final.exists():
            build_atomically(final, what, console, build)


def build_atomically(final: Path, what: str, console: Console,
                      build: BuildSteps) -> None:
    """Call `build(builder, workdir, outdir)` in a temporary directory, then rename
    `outdir` to `final`. On failure the log is kept and named in the error."""
    root = final.parent
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    work, out = tmp / "work", tmp / "out"
    work.mkdir(parents=True)
    out.mkdir()
    log = tmp / "build.log"
    log.touch()                 # kept with the entry even when no step ran a command
    kept_log = root / "logs" / f"{final.name}.log"
    try:
        with console.status(what) as status:
            builder = Builder(what, status, log)
            try:
                build(builder, work, out)
            except StepFailed as failed:
                kept_log.parent.mkdir(exist_ok=True)
                shutil.copyfile(log, kept_log)
                raise VmsimError(f"{what} failed while {failed}; log: {kept_log}") from None
            shutil.copyfile(log, out / "build.log")
            os.rename(out, final)
        console.print(f"[green]✓[/] {what} in {builder.elapsed()}: {final}")
    except OSError as error:
        raise VmsimError(f"{what} failed: {error}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
