"""`--fault RULE` and `--fault-file FILE`: the fault rules a run starts with.

The rules are parsed here, before anything is built, so a bad one is one
`vmsim: error:` line; the plan they make goes to every device slot (the devices that
inject faults take it, docs/faults.md). A run without rules gets an empty plan, which
GDB's `monitor fault` and the TUI can add rules to later.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Callable

from vmsim.cli.text_option import text_option
from vmsim.errors import VmsimError


def add_fault_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fault injection (docs/faults.md)")
    group.add_argument("--fault", action="append", default=[], metavar="RULE",
                       type=text_option("--fault"),
                       help="inject a fault, e.g. op=CIPHER_ENCRYPT,every=3,status=ERR "
                            "(repeatable)")
    group.add_argument("--fault-file", action="append", default=[], metavar="FILE",
                       help="fault rules from FILE, one per line, # comments (repeatable)")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read(1 << 20)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise VmsimError(f"--fault-file {path}: {reason}") from None


def fault_plan(args: argparse.Namespace) -> Any:
    """The FaultPlan of --fault and --fault-file (empty when neither is given): one plan
    for every slot, so that GDB's `monitor fault` and the TUI add to and list one set
    of rules."""
    from vmsim.devices.virtio.crypto.fault_rules import FaultRuleError, parse_rule, parse_rule_file
    from vmsim.devices.virtio.crypto.faults import FaultPlan

    rules = []
    for text in args.fault:
        try:
            rules.append(parse_rule(text))
        except FaultRuleError as error:
            raise VmsimError(f"--fault {text}: {error}") from None
    for path in args.fault_file:
        try:
            rules += parse_rule_file(_read(path), path)
        except FaultRuleError as error:
            raise VmsimError(f"--fault-file {error}") from None
    return FaultPlan(rules)


def with_faults(factories: list[Callable[[Any], Any]], plan: Any) -> list[Callable[[Any], Any]]:
    """The slot factories, each handed the plan in its SlotContext."""
    if plan is None:
        return factories
    return [lambda slot, make=make: make(replace(slot, faults=plan)) for make in factories]
