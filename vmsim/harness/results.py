"""The guest's result lines and the generic checks of a boot.

The default guest's programs print machine-readable lines (`@vmsim key=value ...`); this
module reads them back and says what went wrong, with no build or emulator involved, so
the parsing can be tested on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field


def parse_result_lines(text: str) -> list[dict[str, str]]:
    """The guest's `@vmsim key=value ...` lines, as dicts, in order.

    Words without "=" are ignored; a line counts only when `@vmsim` starts it, so
    kernel messages that quote it do not.
    """
    results = []
    for line in text.splitlines():
        words = line.strip().split()
        if words and words[0] == "@vmsim":
            results.append(dict(w.split("=", 1) for w in words[1:] if "=" in w))
    return results


@dataclass
class GuestRun:
    """One boot: the emulator's exit status, its console, and the @vmsim lines."""

    status: int
    console: str
    timed_out: bool = False
    lines: list[dict[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = parse_result_lines(self.console)

    def events(self, name: str) -> list[dict[str, str]]:
        return [line for line in self.lines if line.get("event") == name]

    def result(self, test: str) -> dict[str, str] | None:
        found = [line for line in self.lines if line.get("test") == test]
        return found[-1] if found else None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


KERNEL_BAD_MARKS = ("Oops", "BUG:", "WARNING:", "Kernel panic", "is not a head",
                    "self-detected stall", "Unable to handle")


def init_exit(lines: list[dict[str, str]]) -> int | None:
    """The programs' status from the init's last `@vmsim event=done exit=N` line (on
    arm64 the only place it is: PSCI SYSTEM_OFF carries none), or None when the init
    never got there or the line is malformed."""
    done = [line for line in lines if line.get("event") == "done"]
    try:
        return int(done[-1]["exit"]) if done else None
    except (KeyError, ValueError):
        return None


def kernel_problems(console: str) -> list[str]:
    """Console lines that show a kernel bug, whatever the test programs said."""
    return [f"kernel log: {line.strip()}" for line in console.splitlines()
            if any(mark in line for mark in KERNEL_BAD_MARKS)]


def check_result(run: GuestRun, test: str, want: str = "pass") -> list[str]:
    """The program's result line says `want`; a run that never got there says why."""
    found = run.result(test)
    if found is None:
        why = "timed out" if run.timed_out else f"exit status {run.status}"
        return [f"{test}: no result line ({why})"]
    if found.get("result") != want:
        return [f"{test}: result={found.get('result')} (want {want}): {found}"]
    return []
