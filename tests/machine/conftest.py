"""Bare-metal test programs: assembly in the tests, built into ELFs at 0x80200000.

`build` assembles and links a program once per test session (cached by source hash).
`boot` runs it on a fresh Machine and returns the exit status and console output.
Programs start in S-mode with a0 = hart id and a1 = the device tree, like a kernel.
"""
from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest

from tests.support.guest import CROSS_AS, CROSS_LD, require_tools
from vmsim.core.machine import DeviceFactory, Machine, MachineConfig

AS = CROSS_AS.name
LD = CROSS_LD.name
LOAD_ADDRESS = 0x8020_0000
TEST_MEMORY = 16 << 20

# Macros every program can use. They clobber t0-t2 and t4-t6 (a0-a7 for SBI calls).
PRELUDE = r"""
    .equ UART, 0x10000000
    .equ POWER, 0x100000
    .equ PLIC, 0x0c000000
    .macro putc ch
        li t0, UART
        li t1, \ch
        sb t1, 0(t0)
    .endm
    .macro exit code            # sifive-test: poweroff (0) or fail with a code
        li t0, POWER
        .if \code == 0
        li t1, 0x5555
        .else
        li t1, (\code << 16) | 0x3333
        .endif
        sw t1, 0(t0)
    1:  j 1b
    .endm
    .macro sbi eid, fid
        li a7, \eid
        li a6, \fid
        ecall
    .endm
    .macro fail_unless_eq reg, value, code
        li t2, \value
        beq \reg, t2, 9f
        exit \code
    9:
    .endm
    .macro skip_and_return      # sepc += length of the trapped instruction; sret
        csrr t5, sepc
        lhu t6, 0(t5)
        andi t6, t6, 3
        addi t5, t5, 2
        li t4, 3
        bne t6, t4, 8f
        addi t5, t5, 2
    8:  csrw sepc, t5
        sret
    .endm
    .section .text.entry
    .globl _start
_start:
"""


@dataclass
class Run:
    status: int
    output: bytes
    machine: Machine


def _require_toolchain() -> None:
    """Skip locally, fail under `make test`, naming the cross binutils package."""
    require_tools(CROSS_AS, CROSS_LD)


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Assemble `PRELUDE + source` into an ELF linked at 0x80200000; cached."""
    cache = tmp_path_factory.mktemp("programs")

    def _build(source: str) -> Path:
        _require_toolchain()
        text = PRELUDE + source
        name = hashlib.sha256(text.encode()).hexdigest()[:16]
        elf = cache / f"{name}.elf"
        if not elf.exists():
            src, obj = cache / f"{name}.S", cache / f"{name}.o"
            src.write_text(text)
            subprocess.run([AS, "-march=rv64imafdc", "-o", str(obj), str(src)], check=True)
            subprocess.run([LD, f"-Ttext={LOAD_ADDRESS:#x}", "-e", "_start",
                            "-o", str(elf), str(obj)], check=True)
        return elf

    return _build


@pytest.fixture
def boot(build: Callable[[str], Path]) -> Callable[..., Run]:
    """Build a program and run it to completion on a fresh machine."""
    machines: list[Machine] = []

    def _boot(source: str, before_run: Callable[[Machine], None] | None = None,
              virtio: Sequence[DeviceFactory] = ()) -> Run:
        output = bytearray()
        machine = Machine(MachineConfig(kernel=build(source), memory=TEST_MEMORY,
                                        virtio=list(virtio)),
                          output=output.extend)
        machines.append(machine)
        machine.load()
        if before_run is not None:
            before_run(machine)
        status = machine.run()
        return Run(status, bytes(output), machine)

    yield _boot
    for machine in machines:
        machine.close()
