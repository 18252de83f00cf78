"""A device from another package plugs into vmsim through the `vmsim.devices` entry points.

The test writes a tiny separate package (pyproject with an entry point, a
VirtioMmioModel whose backend is a virtio-rng that serves a fixed pattern), installs it
into this venv with pip, and checks that `vmsim run -device help` lists it, that
`-device pattern-rng,help` shows its option, and that the default guest's hwrng
program reads exactly the pattern through Linux's virtio_rng driver: the plugin's
device, built by vmsim from the entry point, served the guest.

A second package whose import fails shows that a broken plugin costs one
`vmsim: error:` line naming it when, and only when, that model is asked for.

Both are uninstalled when their tests end, so the venv is left as it was.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.guest import built_default_guest, missing
from vmsim.harness import guest_rng as gr
from vmsim.harness.runs import run_vmsim

VMSIM = Path(sys.executable).parent / "vmsim"
PATTERN = "0xPLUGIN-pattern"      # 16 bytes: a length that divides Linux's reads (guest_rng)
BOOT_TIMEOUT = 180.0

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.0.1"
dependencies = ["vmsim"]

[project.entry-points."vmsim.devices"]
{entry} = "{module}.model:MODEL"

[tool.setuptools]
packages = ["{module}"]
"""

PATTERN_MODEL = '''\
"""A third-party vmsim device: virtio-rng (ID 4) whose bytes are a fixed pattern."""
from __future__ import annotations

from typing import Any, Mapping

from vmsim.devices.model import Option, OptionError, SlotContext
from vmsim.devices.virtio.device import DeviceContext, VirtioDevice
from vmsim.devices.virtio.model import VirtioMmioModel
from vmsim.devices.virtio.queue import ChainError

MAX_BYTES = 4096


class PatternRng(VirtioDevice):
    device_id = 4
    num_queues = 1
    queue_max_size = 64

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self.ctx: DeviceContext | None = None

    def device_features(self) -> int:
        return 0

    def read_config(self, offset: int, size: int) -> int:
        return 0

    def activate(self, ctx: DeviceContext) -> None:
        self.ctx = ctx

    def reset(self) -> None:
        self.ctx = None

    def queue_notify(self, index: int) -> None:
        if self.ctx is None or index != 0:
            return
        queue, served = self.ctx.queues[0], False
        try:
            while (chain := queue.pop()) is not None:
                size = min(chain.writable_len, MAX_BYTES)
                repeats = size // len(self.pattern) + 1
                chain.write(0, (self.pattern * repeats)[:size])
                queue.add_used(chain.head, size)
                served = True
        except ChainError as error:
            self.ctx.needs_reset(f"pattern-rng: {error}")
        if served:
            self.ctx.signal_used(0)


class PatternRngModel(VirtioMmioModel):
    def check(self, values: Mapping[str, Any]) -> None:
        if not values["pattern"]:
            raise OptionError("pattern-rng: pattern must not be empty")

    def backend(self, slot: SlotContext, values: Mapping[str, Any]) -> PatternRng:
        return PatternRng(values["pattern"].encode())


MODEL = PatternRngModel(
    name="pattern-rng",
    help="virtio-rng (ID 4) serving a fixed pattern (a third-party test plugin)",
    options=(Option("pattern", str, "vmsim-plugin-rng",
                    "the bytes every request is filled with, repeated"),),
)
'''

BROKEN_MODEL = '''\
"""A plugin whose import fails."""
import vmsim_test_no_such_module  # noqa: F401

MODEL = None
'''


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True,
                          text=True, timeout=300)


def _vmsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VMSIM), *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _require_build_tools() -> None:
    """--no-build-isolation builds with this venv's setuptools, which needs `wheel`
    before 70.1 (the dev extras install it)."""
    probe = ("import setuptools, sys\n"
             "v = tuple(int(p) for p in setuptools.__version__.split('.')[:2])\n"
             "if v < (70, 1):\n    import wheel\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode:
        missing("this venv cannot build a plugin without build isolation (needs setuptools "
                "and, before setuptools 70.1, wheel: pip install -e '.[dev]')")


def _installed(dist: str, entry: str, module: str, model_source: str,
               where: Path) -> Iterator[Path]:
    """Write, install, yield, then uninstall one plugin package."""
    _require_build_tools()
    root = where / dist
    (root / module).mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, entry=entry, module=module))
    (root / module / "__init__.py").write_text("")
    (root / module / "model.py").write_text(model_source)
    try:
        result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(root))
        assert result.returncode == 0, result.stdout + result.stderr
        yield root
    finally:
        result = _pip("uninstall", "-y", dist)
        assert result.returncode == 0, result.stdout + result.stderr
        listed = _vmsim("run", "-device", "help").stdout
        assert entry not in listed, f"{dist} is still installed:\n{listed}"


@pytest.fixture(scope="module")
def pattern_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _installed("vmsim-test-pattern-rng", "pattern-rng", "vmsim_test_pattern_rng",
                          PATTERN_MODEL, tmp_path_factory.mktemp("plugin"))


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Iterator[Path]:
    yield from _installed("vmsim-test-broken-device", "broken-device",
                          "vmsim_test_broken_device", BROKEN_MODEL, tmp_path)


def test_device_help_lists_the_plugin(pattern_plugin: Path) -> None:
    result = _vmsim("run", "-device", "help")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:1] == ["pattern-rng"] and "third-party test plugin" in line
               for line in lines), result.stdout
    assert any(line.split()[:1] == ["virtio-rng"] for line in lines), result.stdout


def test_device_help_shows_the_plugins_options(pattern_plugin: Path) -> None:
    result = _vmsim("run", "-device", "pattern-rng,help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "pattern-rng options:",
        "  pattern=<str>  the bytes every request is filled with, repeated "
        "(default: vmsim-plugin-rng)"]


def test_plugin_option_checks_give_one_error_line(pattern_plugin: Path) -> None:
    for bad, said in (("pattern-rng,pattern=", "pattern must not be empty"),
                      ("pattern-rng,size=4", "has no option 'size'")):
        result = _vmsim("run", "-device", bad)
        assert result.returncode == 2 and result.stdout == "", result
        (line,) = result.stderr.splitlines()
        assert line.startswith("vmsim: error: ") and said in line, line


@pytest.mark.linux
def test_guest_reads_the_plugins_pattern(pattern_plugin: Path) -> None:
    """The only device is the plugin's; the guest's hwrng reads its pattern, exactly."""
    guest = built_default_guest()
    run = run_vmsim(guest, "console=ttyS0 vmsim.run=hwrng",
                    ("-device", f"pattern-rng,pattern={PATTERN}"), timeout=BOOT_TIMEOUT)
    problems = gr.check_hwrng(run) + gr.check_pattern(run, PATTERN.encode())
    assert not problems, "\n".join(problems) + "\n--- console tail ---\n" + run.tail()
    assert gr.check_random(run), "a pattern must not pass for random bytes"
    assert run.status == 0 and not run.timed_out, run.tail()


def test_broken_plugin_is_an_error_only_when_asked_for(broken_plugin: Path) -> None:
    asked = _vmsim("run", "-device", "broken-device")
    assert asked.returncode == 2 and asked.stdout == "", asked
    (line,) = asked.stderr.splitlines()
    assert line.startswith("vmsim: error: ") and "'broken-device'" in line, line
    assert "vmsim_test_no_such_module" in line, line

    listed = _vmsim("run", "-device", "help")
    assert listed.returncode == 0 and listed.stderr == "", listed
    rows = {row.split()[0]: row for row in listed.stdout.splitlines()[1:]}
    assert "unusable" in rows["broken-device"] and "virtio-rng (ID 4)" in rows["virtio-rng"]

    other = _vmsim("run", "-device", "virtio-rng,help")
    assert other.returncode == 0 and other.stderr == "", other
    # the machine is set up past device parsing: the next error is the kernel's, not the plugin's
    past = _vmsim("run", "--kernel", "/nonexistent/Image", "-device", "virtio-rng")
    assert past.returncode != 0 and "broken-device" not in past.stderr, past.stderr
    assert len(past.stderr.splitlines()) == 1 and "/nonexistent/Image" in past.stderr, past.stderr
