"""Loads the Unicorn engine vmsim runs on.

INTERIM STUB, owned by the preemption work: it loads the PyPI wheel as it is. The real
version prefers the patched libunicorn built by `python -m vmsim.unicorn_build` (see
DESIGN.md, fact 14) by setting LIBUNICORN_PATH before `import unicorn`, and reports
which engine is in use through `engine_description()`.
"""
from __future__ import annotations

import types


def load_unicorn() -> types.ModuleType:
    """Import and return the `unicorn` module, bound to the best available library."""
    import unicorn

    return unicorn


def engine_description() -> str:
    """One line for `vmsim --version`: which engine and which preemption method."""
    return "unicorn 2.1.4 (PyPI wheel, interim: asynchronous stops are not yet safe)"
