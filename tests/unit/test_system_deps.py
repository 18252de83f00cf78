"""scripts/install-system-deps.sh installs every Debian package a tool check names.

`make test` runs the script first and then fails on any missing tool
(tests/support/guest.py), so a package named by a check but not installed by the
script would fail `make test` on a fresh machine.
"""
from __future__ import annotations

import re
from pathlib import Path

from tests.support import guest as support
from vmsim.build import baremetal, unicorn
from vmsim.build.cache import Requirement
from vmsim.build import distro
from vmsim.build.guest import ARCHES
from vmsim.harness.qemu import QEMU_MACHINES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-system-deps.sh"
# Debian "Essential: yes" (tar, dpkg) or apt itself: on every system, never installed.
ESSENTIAL = {"tar", "dpkg", "apt"}
# Named by tests directly rather than through a Requirement constant.
ALSO_USED = {"device-tree-compiler"}      # tests/unit/test_fdt.py runs dtc


def script_packages() -> set[str]:
    """The words of the script's `packages=( ... )` array."""
    match = re.search(r"^packages=\((.*?)^\)", SCRIPT.read_text(), re.S | re.M)
    assert match, f"no packages=( ... ) array in {SCRIPT}"
    return set(match.group(1).split())


def checked_packages() -> set[str]:
    requirements: list[Requirement] = [
        *(value for value in vars(support).values() if isinstance(value, Requirement)),
        *baremetal.REQUIREMENTS, *distro.TOOLS,
        *(r for machine in QEMU_MACHINES.values() for r in machine.requirements),
        *(r for arch in ARCHES.values() for r in arch.requirements),
        unicorn.CMAKE, unicorn.CC, unicorn.PATCH, unicorn.MAKE,
    ]
    return {r.package for r in requirements} | ALSO_USED


def test_the_script_installs_every_package_a_check_names() -> None:
    missing = checked_packages() - ESSENTIAL - script_packages()
    assert not missing, f"add to {SCRIPT.name}: {' '.join(sorted(missing))}"


def test_the_script_keeps_the_debugging_tools() -> None:
    """No check names them: gdb-multiarch and tmux are for debugging a guest by hand."""
    assert {"gdb-multiarch", "tmux"} <= script_packages()
