"""An argparse type for options whose value is text (not a path)."""
from __future__ import annotations

import argparse
from typing import Callable

from vmsim.errors import text_problem


def text_option(option: str) -> Callable[[str], str]:
    """argv bytes that are not UTF-8 (which Python keeps as lone surrogates) get one
    error line here, not an exception deep inside whatever encodes the text later."""
    def check(value: str) -> str:
        problem = text_problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"not valid UTF-8 text ({problem})")
        return value
    check.__name__ = option                  # what argparse names in other errors
    return check
