"""The layers stay layers: each is imported in a fresh interpreter with the modules it
must never depend on blocked, so a forbidden import anywhere in it (even deep, even
indirect) fails here by name.

    vmsim.core      never the CLI, the builders, the harness, the test helpers, rich
                    or textual (the machine runs without any of them)
    vmsim.devices   never Unicorn, the core, boards, the CLI, the builders, rich or
                    textual (devices see guest memory and an interrupt line, no more)
    vmsim.firmware  the same as devices
    vmsim.trace     never textual, the TUI, the CLI, Unicorn or the core (traces are
                    recorded, read and exported without a screen or a machine)
    vmsim.tui       never Unicorn, the core or the CLI (it reads feeds)
    The core, devices and firmware never import vmsim.trace or vmsim.tui either.
    vmsim.boards    never Unicorn or the core (a board is data)
    vmsim.harness   never the core, Unicorn (it drives vmsim as a process)
    vmsim.gdb       never the CLI, the builders, the harness, rich, textual or the
                    observers (the CLI attaches the stub to a machine)

Nothing may import the top-level folders as `devices` or `firmware`: only `vmsim` is
installed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UI_AND_TOOLS = ["rich", "textual", "vmsim.cli", "vmsim.build", "vmsim.harness", "vmsim.testing"]
NOT_INSTALLED = ["devices", "firmware"]
OBSERVERS = ["vmsim.tui", "vmsim.trace"]
RULES = {
    "vmsim.core": UI_AND_TOOLS + OBSERVERS + NOT_INSTALLED,
    "vmsim.devices": ["unicorn", "vmsim.core", "vmsim.boards"] + UI_AND_TOOLS + OBSERVERS
    + NOT_INSTALLED,
    "vmsim.firmware": ["unicorn", "vmsim.core", "vmsim.boards"] + UI_AND_TOOLS + OBSERVERS
    + NOT_INSTALLED,
    # Recording and export run without a screen, and never reach into the machine.
    "vmsim.trace": ["textual", "vmsim.tui", "vmsim.cli", "unicorn", "vmsim.core"]
    + NOT_INSTALLED,
    # The TUI only reads feeds (a hub, a file, a socket): no machine, no CLI.
    "vmsim.tui": ["unicorn", "vmsim.core", "vmsim.cli"] + NOT_INSTALLED,
    "vmsim.boards": ["unicorn", "vmsim.core"] + UI_AND_TOOLS + NOT_INSTALLED,
    "vmsim.harness": ["unicorn", "vmsim.core", "vmsim.cli", "textual"] + NOT_INSTALLED,
    # The GDB stub drives the machine; the CLI wires it in, never the other way.
    "vmsim.gdb": ["vmsim.cli", "vmsim.build", "vmsim.harness", "vmsim.testing", "rich",
                  "textual"] + OBSERVERS + NOT_INSTALLED,
}

CHECKER = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys

    layer, blocked = sys.argv[1], sys.argv[2].split(",")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in blocked):
                raise ImportError(f"{layer} imported {name}")
            return None

    sys.meta_path.insert(0, Block())
    package = importlib.import_module(layer)
    failures = []
    for info in pkgutil.walk_packages(package.__path__, layer + "."):
        try:
            importlib.import_module(info.name)
        except ImportError as error:
            failures.append(f"{info.name}: {error}")
    print("\\n".join(failures))
    sys.exit(1 if failures else 0)
""")


def check_layer(layer: str, blocked: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECKER, layer, ",".join(blocked)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_never_imports_what_it_must_not(layer: str, tmp_path: Path) -> None:
    # Run outside the checkout: the top-level folders must not be importable by
    # accident from the current directory.
    result = check_layer(layer, RULES[layer], tmp_path)
    assert result.returncode == 0, f"{layer} breaks its layer rule:\n{result.stdout}{result.stderr}"


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The same check, told that the core must not use its own clock, must fail: it
    would pass vacuously if it imported nothing."""
    result = check_layer("vmsim.core", ["vmsim.core.clock"], tmp_path)
    assert result.returncode == 1
    assert "vmsim.core.machine: vmsim.core imported vmsim.core.clock" in result.stdout


IMPORT_EVERYTHING = textwrap.dedent("""
    import importlib, os, pkgutil, sys, threading
    import vmsim

    before = set(os.listdir("/proc/self/task"))
    for info in pkgutil.walk_packages(vmsim.__path__, "vmsim."):
        if info.name.endswith(".worker") or info.name == "vmsim.cli.__main__":
            continue
        importlib.import_module(info.name)
    problems = []
    if "unicorn" in sys.modules:
        problems.append("the engine was loaded")
    if "LIBUNICORN_PATH" in os.environ:
        problems.append("LIBUNICORN_PATH was set")
    if set(os.listdir("/proc/self/task")) != before or threading.active_count() != 1:
        problems.append("a thread was started")
    with open(f"/proc/self/task/{os.getpid()}/children") as children:
        if children.read().strip():
            problems.append("a process was started")
    print("; ".join(problems))
    sys.exit(1 if problems else 0)
""")


def test_importing_any_module_has_no_side_effects(tmp_path: Path) -> None:
    """Nothing happens on import: no engine chosen or loaded, no thread, no process.
    The engine is bound when the first Cpu is made, workers when a machine starts."""
    env = {k: v for k, v in os.environ.items() if k != "LIBUNICORN_PATH"}
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
