"""The boards vmsim has, each one frozen data: its address map, interrupts and CPU.

`for_arch` picks the board for a kernel's architecture (vmsim.core.kernel_format)."""
from __future__ import annotations

from typing import Union

from vmsim.boards.arm64_virt import BOARD as ARM64_VIRT, Arm64VirtBoard
from vmsim.boards.riscv64_virt import BOARD as RISCV64_VIRT, RiscvVirtBoard
from vmsim.errors import VmsimError

Board = Union[RiscvVirtBoard, Arm64VirtBoard]
BOARDS: dict[str, Board] = {board.arch: board for board in (RISCV64_VIRT, ARM64_VIRT)}


def for_arch(arch: str) -> Board:
    """The board for `arch` ("riscv64" or "arm64")."""
    try:
        return BOARDS[arch]
    except KeyError:
        raise VmsimError(f"no board for architecture {arch!r} "
                         f"(there are {', '.join(BOARDS)})") from None


def default_append(board: Board) -> str:
    """The kernel command line when none is given: the console on the board's UART."""
    return f"console={board.console}"
