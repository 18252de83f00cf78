"""Loads the Unicorn engine vmsim runs on, and says which one it is.

Two engines can back the `unicorn` Python binding (docs/engine.md: E14 says why, P1-P10
describe the patch, W1 the wheel fallback, E20 the one-engine-per-process rule):

- "patched": libunicorn 2.1.4 built by `make unicorn` (vmsim.build.unicorn) with vmsim's
  patch. A stop from another thread lands only at a block boundary, `rdtime`, every
  delegated exception and the SBI timer are handled natively, the TLB survives context
  switches, and the guest runs faster than on the wheel. It is the default whenever it has been built.
- "wheel": the PyPI wheel's own library. Stops go through a native block hook
  (see `vmsim.core.preempt`), which costs some speed; `rdtime` traps to be emulated and
  every system call goes through the trap hook.

`VMSIM_ENGINE=patched|wheel` forces one (for measurement); unset or `auto` picks the
patched build if cached. The binding reads LIBUNICORN_PATH once, at import, so the
choice is made before the first `import unicorn` and is fixed for the process.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

from vmsim.artifacts import UNICORN_PATCH, cached_patched_unicorn
from vmsim.errors import VmsimError

ENGINE_ENV = "VMSIM_ENGINE"
PATCHED = "patched"
WHEEL = "wheel"


def _requested_engine() -> str:
    choice = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", PATCHED, WHEEL):
        raise VmsimError(f"{ENGINE_ENV}={choice!r} is not one of: patched, wheel, auto")
    return choice


def _loaded_library(unicorn: types.ModuleType) -> Path | None:
    """Path of the libunicorn the binding actually loaded (the binding keeps it private)."""
    binding = getattr(unicorn, "unicorn_py3", None)
    lib = getattr(getattr(binding, "unicorn", None), "uclib", None)
    name = getattr(lib, "_name", None)
    return Path(name) if name else None


def _is_patched(library: Path | None) -> bool:
    """A patched build carries a copy of the exact patch next to the library."""
    if library is None:
        return False
    marker = library.parent / UNICORN_PATCH.name
    return marker.is_file() and marker.read_bytes() == UNICORN_PATCH.read_bytes()


def load_unicorn() -> types.ModuleType:
    """Import and return the `unicorn` module, bound to the best available library."""
    choice = _requested_engine()
    if "unicorn" not in sys.modules:
        patched_dir = cached_patched_unicorn()
        if choice == PATCHED and patched_dir is None:
            raise VmsimError(f"{ENGINE_ENV}=patched, but the patched libunicorn is not built: "
                             "run `make unicorn`")
        if choice == WHEEL:
            os.environ.pop("LIBUNICORN_PATH", None)
        elif choice == PATCHED:
            os.environ["LIBUNICORN_PATH"] = str(patched_dir)
        elif patched_dir is not None:
            # auto: a LIBUNICORN_PATH the user set wins over the cache.
            os.environ.setdefault("LIBUNICORN_PATH", str(patched_dir))
    import unicorn

    kind = engine_kind(unicorn)
    if choice != "auto" and kind != choice:
        raise VmsimError(f"{ENGINE_ENV}={choice}, but unicorn was already loaded from "
                         f"{_loaded_library(unicorn)}")
    return unicorn


def engine_kind(unicorn: types.ModuleType | None = None) -> str:
    """"patched" or "wheel": which library backs the loaded binding."""
    module = unicorn if unicorn is not None else load_unicorn()
    return PATCHED if _is_patched(_loaded_library(module)) else WHEEL


def engine_description() -> str:
    """One line for `vmsim --version`: which engine and which preemption method."""
    unicorn = load_unicorn()
    if engine_kind(unicorn) == PATCHED:
        return (f"unicorn {unicorn.__version__}, patched build (stops at block boundaries; "
                "native time CSR, delegated traps and SBI timer; address-space-tagged TLB)")
    return (f"unicorn {unicorn.__version__}, PyPI wheel (stops through a native block hook; "
            "`make unicorn` builds the faster patched engine)")
