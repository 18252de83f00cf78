"""The built default guest for the tests that boot Linux."""
from __future__ import annotations

import os

import pytest

from vmsim.guest import GuestPaths, guest_paths

REQUIRE_ENV = "VMSIM_REQUIRE_GUEST"


def built_default_guest() -> GuestPaths:
    """The cached default guest. When it is missing, a quick local run skips, but
    `make test` (which builds the guest first and sets VMSIM_REQUIRE_GUEST=1) fails:
    a silent skip there would hide every Linux test."""
    paths = guest_paths()
    if paths.kernel.exists() and paths.initrd.exists():
        return paths
    message = "the default guest is not built (run `vmsim guest build`)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)
