"""The `vmsim` command line. (Skeleton: subcommands are wired as the machine lands.)"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("vmsim: not yet implemented", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
