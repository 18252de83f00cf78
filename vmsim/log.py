"""vmsim's log, in QEMU's terms: `-d CATEGORY,...` picks what is logged, `-D FILE` where.

Categories (as in QEMU, plus one):
- `guest_errors`: the guest did something the spec forbids (a bad chain, a bad register
  write). Logged once per distinct reason, so a looping guest cannot flood the log.
- `unimp`: the guest used something vmsim does not implement. Once per reason too.
- `trace:PATTERN`: trace events whose name matches the shell pattern (`trace:virtio*`).
- `fault`: each fault injected by a `--fault` rule (every one: the rules bound them).
- `strict`: the rules `--strict` found the driver breaking (each rule once), with the
  guest pc and the offending values; without `-D` the `vmsim: strict:` line that
  `--strict` prints is that log line.
- `internal`: vmsim's own bugs caught at a boundary (an exception a device turned into
  NEEDS_RESET or ERR), with the traceback. These are always reported: with `-D` the
  traceback goes to the file; without it one line goes to stderr, never a traceback.

Default: nothing but the internal-error line. This module uses only the standard
library, so any layer may log through it (devices included).
"""
from __future__ import annotations

import fnmatch
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

ROOT = "vmsim"
GUEST_ERRORS = "guest_errors"
UNIMP = "unimp"
INTERNAL = "internal"
STRICT = "strict"
TRACE = "trace"
FAULT = "fault"
CATEGORIES = {
    GUEST_ERRORS: "the guest broke a rule of the spec (once per reason)",
    UNIMP: "the guest used something vmsim does not implement (once per reason)",
    FAULT: "each fault injected by a --fault rule",
    STRICT: "the driver rules --strict found broken (each rule once, with the guest pc)",
    INTERNAL: "vmsim's own errors, with tracebacks (always on; to the -D file if given)",
    "trace:PATTERN": "trace events whose name matches PATTERN (e.g. trace:virtio*)",
}
# Distinct once-only messages remembered per category; past this they are dropped, so a
# guest that invents new reasons forever still costs bounded memory.
MAX_DISTINCT = 1024


class LogSetupError(ValueError):
    """A bad `-d` list or an unwritable `-D` file; the message is one line."""


class _Once:
    """Remembers which messages were logged, per category, up to MAX_DISTINCT."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def first(self, category: str, key: str) -> bool:
        with self._lock:
            seen = self._seen.setdefault(category, set())
            if key in seen or len(seen) >= MAX_DISTINCT:
                return False
            seen.add(key)
            return True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


_once = _Once()
_enabled: frozenset[str] = frozenset()      # until configure(): only internal errors
_trace_patterns: tuple[str, ...] = ()
_to_file = False                            # -D given: the log is not stderr


def logger(category: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{category}")


def guest_error(source: str, reason: str) -> None:
    """`source` (a device name) saw the guest break a rule: log the reason once."""
    _log_once(GUEST_ERRORS, source, reason)


def unimplemented(source: str, what: str) -> None:
    """The guest asked `source` for something vmsim does not do: log it once."""
    _log_once(UNIMP, source, what)


def _log_once(category: str, source: str, reason: str) -> None:
    if category in _enabled and _once.first(category, f"{source}: {reason}"):
        logger(category).warning("%s: %s", source, reason)


def fault(source: str, what: str) -> None:
    """`source` injected a fault on purpose (a `--fault` rule fired): log it."""
    if FAULT in _enabled:
        logger(FAULT).warning("%s: %s", source, what)


def strict(text: str) -> None:
    """A `--strict` finding (already once per rule) for the `-d strict` log."""
    if STRICT in _enabled:
        logger(STRICT).warning("%s", text)


def strict_on_stderr() -> bool:
    """Whether `-d strict` already puts findings on stderr (no `-D`): the console line
    would then say the same thing twice."""
    return STRICT in _enabled and not _to_file


def internal_error(source: str, what: str, details: str = "") -> None:
    """An exception vmsim caught at a boundary and turned into an answer for the guest.
    Call from the `except` block (the traceback is taken from there), or pass `details`
    (a traceback text from a worker process)."""
    log = logger(INTERNAL)
    if details:
        log.error("%s: %s\n%s", source, what, details.rstrip())
    else:
        log.error("%s: %s", source, what, exc_info=sys.exc_info()[0] is not None)


def tracing(name: str) -> bool:
    """Whether trace event `name` is enabled by a `trace:` category."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in _trace_patterns)


def trace(name: str, fields: dict[str, Any]) -> None:
    """Log one trace event (call only when `tracing(name)`)."""
    details = " ".join(f"{key}={value}" for key, value in fields.items())
    logger(TRACE).info("%s %s", name, details)


def trace_sink(event: Any) -> None:
    """A TraceSink (vmsim.devices.events) that logs the events `-d trace:` selects. An
    event's name is its device and kind in QEMU's style: `virtio_crypto_notify`."""
    name = f"{event.device}_{event.kind}".replace("-", "_")
    if tracing(name):
        from vmsim.trace.hub import plain_fields   # previews in hex, as in a trace file

        trace(name, {"queue": event.queue, **plain_fields(event.fields)})


def trace_enabled() -> bool:
    """Whether any `trace:` pattern was given (else devices get no sink at all)."""
    return bool(_trace_patterns)


class _OneLine(logging.Formatter):
    """The console form: `vmsim: ...` on one line, never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        first = record.getMessage().splitlines()[0] if record.getMessage() else ""
        hint = " (-D FILE keeps the traceback)" if record.exc_info or "\n" in record.getMessage() else ""
        return f"vmsim: {record.name.removeprefix(ROOT + '.')}: {first}{hint}"


def parse_categories(text: str) -> tuple[set[str], tuple[str, ...]]:
    """`-d` text -> (categories, trace patterns); LogSetupError names a bad one."""
    categories: set[str] = set()
    patterns: list[str] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item.startswith("trace:"):
            if not item[6:]:
                raise LogSetupError("-d trace: needs a pattern, e.g. trace:virtio*")
            patterns.append(item[6:])
        elif item in (GUEST_ERRORS, UNIMP, FAULT, INTERNAL, STRICT):
            categories.add(item)
        else:
            raise LogSetupError(f"unknown -d category {item!r} (-d help lists them)")
    return categories, tuple(patterns)


def configure(categories: Iterable[str] = (), patterns: Iterable[str] = (),
              path: Path | None = None) -> None:
    """Set up the `vmsim` loggers for one run (replacing an earlier setup)."""
    global _enabled, _trace_patterns, _to_file
    root = logging.getLogger(ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    _to_file = path is not None
    root.propagate = False
    root.setLevel(logging.INFO)
    _once.clear()
    _trace_patterns = tuple(patterns)
    _enabled = frozenset(categories)
    if path is not None:
        try:
            handler: logging.Handler = logging.FileHandler(path, mode="w", encoding="utf-8")
        except OSError as error:
            raise LogSetupError(f"cannot write the log to {path}: {error.strerror}") from None
        handler.setFormatter(logging.Formatter("%(relativeCreated)10.1f ms %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine())
    root.addHandler(handler)


def close() -> None:
    """Flush and close the log (end of a run)."""
    global _enabled, _trace_patterns, _to_file
    _enabled, _trace_patterns, _to_file = frozenset(), (), False
    root = logging.getLogger(ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
