"""Switching address spaces with satp: every switch sees its own mappings.

The patched engine keeps several address spaces' translations at once (keyed by satp)
instead of flushing the TLB on every satp write, and shares S-mode translations between
them only when they come from global PTEs. These programs catch a translation that
leaks from one address space into another, or survives an sfence.vma.

Each of nine address spaces (more than the engine keeps at once, so some are evicted and
refilled) has its own root table with ASID k + 1 and maps, with non-global PTEs:
    VA 0x4000_0000  S page  -> data page k, which holds 0x1000 + k
    VA 0x4000_1000  U page  -> the same data page (read by S-mode with SUM set)
RAM and the devices are identity-mapped with global gigapages, so the code runs
unchanged in every address space.
"""
from __future__ import annotations

SPACES = 9
PAGE = 4096

# s0 = first table page, s1 = first data page. Per space k: root, L1, L0 pages at
# s0 + 3k pages; data at s1 + k pages. Clobbers t0-t6, a0-a3.
BUILD_SPACES = fr"""
    la s0, tables
    la s1, datapages
    li a0, 0
1:  li t0, 3 * {PAGE}
    mul t3, a0, t0
    add t3, t3, s0                     # root
    li t0, {PAGE}
    add t4, t3, t0                     # L1
    add t5, t4, t0                     # L0
    mul t6, a0, t0
    add t6, t6, s1                     # data page
    li t0, 0xef                        # devices: PPN 0 | D A G X W R V
    sd t0, 0(t3)
    li t0, ((0x80000000 >> 12) << 10) | 0xef
    sd t0, 16(t3)                      # RAM, identity, global
    srli t0, t4, 12
    slli t0, t0, 10
    ori t0, t0, 1
    sd t0, 8(t3)                       # root[1] -> L1 (VA 0x4000_0000..)
    srli t0, t5, 12
    slli t0, t0, 10
    ori t0, t0, 1
    sd t0, 0(t4)                       # L1[0] -> L0
    srli t0, t6, 12
    slli t0, t0, 10
    ori t1, t0, 0xc7                   # D A W R V: S-only, not global
    sd t1, 0(t5)                       # L0[0]: VA 0x4000_0000
    ori t1, t0, 0xd7                   # D A U W R V: user page
    sd t1, 8(t5)                       # L0[1]: VA 0x4000_1000
    li t0, 0x1000
    add t0, t0, a0
    sd t0, 0(t6)                       # the data page says which space it belongs to
    addi a0, a0, 1
    li t0, {SPACES}
    blt a0, t0, 1b
"""

# a0 = space k: switch satp to it (ASID k + 1), no sfence.vma. Clobbers t0-t1.
SWITCH = fr"""
switch_space:
    li t0, 3 * {PAGE}
    mul t0, a0, t0
    add t0, t0, s0
    srli t0, t0, 12                    # root PPN
    addi t1, a0, 1
    slli t1, t1, 44                    # ASID
    or t0, t0, t1
    li t1, 8 << 60                     # Sv39
    or t0, t0, t1
    csrw satp, t0
    ret
"""

# a0 = space k: both mappings must show 0x1000 + k, else exit with a1 / a1 + 1.
CHECK = r"""
check_space:
    li t0, 0x1000
    add t3, t0, a0
    li t0, 0x40000000
    ld t1, 0(t0)                       # S page through the shared S-mode index
    beq t1, t3, 1f
    mv a0, a1
    j fail
1:  li t0, 1 << 18
    csrs sstatus, t0                   # SUM: S-mode may read the user page
    li t0, 0x40001000
    ld t1, 0(t0)
    li t0, 1 << 18
    csrc sstatus, t0
    beq t1, t3, 2f
    addi a0, a1, 1
    j fail
2:  ret
"""

FAIL_AND_TABLES = fr"""
fail:                                  # exit with the code in a0 (sifive-test)
    slli a0, a0, 16
    li t0, 0x3333
    or a0, a0, t0
    li t0, POWER
    sw a0, 0(t0)
3:  j 3b
    .section .bss
    .balign {PAGE}
tables: .skip {3 * SPACES * PAGE}
datapages: .skip {SPACES * PAGE}
"""


def _program(body: str) -> str:
    return BUILD_SPACES + body + "    exit 0\n" + SWITCH + CHECK + FAIL_AND_TABLES


def test_each_address_space_sees_its_own_pages_across_many_switches(boot) -> None:
    """Three rounds over nine spaces, forward then backward: slots get reused and
    revisited; a stale translation from another space shows up as a wrong value."""
    run = boot(_program(fr"""
    li s2, 0                           # round
10: li s3, 0
11: mv a0, s3
    call switch_space
    mv a0, s3
    li a1, 10                          # exit 10/11: forward pass
    call check_space
    addi s3, s3, 1
    li t0, {SPACES}
    blt s3, t0, 11b
    li s3, {SPACES - 1}
12: mv a0, s3
    call switch_space
    mv a0, s3
    li a1, 20                          # exit 20/21: backward pass
    call check_space
    addi s3, s3, -1
    bgez s3, 12b
    addi s2, s2, 1
    li t0, 3
    blt s2, t0, 10b
"""))
    assert run.status == 0


def test_sfence_vma_drops_translations_of_spaces_not_running(boot) -> None:
    """Remap space 3 to space 5's data page while space 0 runs, sfence.vma, switch
    back: space 3 must see the new page through both of its mappings."""
    run = boot(_program(fr"""
    li s3, 0
1:  mv a0, s3                          # visit every space once: all are cached
    call switch_space
    mv a0, s3
    li a1, 10
    call check_space
    addi s3, s3, 1
    li t0, {SPACES}
    blt s3, t0, 1b
    li a0, 0
    call switch_space
    li t0, 3 * {PAGE} * 3 + 2 * {PAGE}
    add t3, s0, t0                     # space 3's L0
    li t0, 5 * {PAGE}
    add t4, s1, t0                     # space 5's data page
    srli t4, t4, 12
    slli t4, t4, 10
    ori t1, t4, 0xc7
    sd t1, 0(t3)
    ori t1, t4, 0xd7
    sd t1, 8(t3)
    sfence.vma
    li a0, 3
    call switch_space
    li a0, 5                           # space 3 now shows space 5's value
    li a1, 30
    call check_space
"""))
    assert run.status == 0


def test_sfence_vma_with_an_asid_drops_that_space_while_another_runs(boot) -> None:
    """Linux fences one process with `sfence.vma x0, asid` (docs/engine.md, P12): the
    patched engine then drops only the slots keyed with that ASID. Space 3 (ASID 4) is
    remapped while space 0 runs and fenced by its ASID alone; switched back, it must see
    the new page, and every other space still its own."""
    run = boot(_program(fr"""
    li s3, 0
1:  mv a0, s3                          # visit every space once: all are cached
    call switch_space
    mv a0, s3
    li a1, 10
    call check_space
    addi s3, s3, 1
    li t0, {SPACES}
    blt s3, t0, 1b
    li a0, 0
    call switch_space
    li t0, 3 * {PAGE} * 3 + 2 * {PAGE}
    add t3, s0, t0                     # space 3's L0
    li t0, 5 * {PAGE}
    add t4, s1, t0                     # space 5's data page
    srli t4, t4, 12
    slli t4, t4, 10
    ori t1, t4, 0xc7
    sd t1, 0(t3)
    ori t1, t4, 0xd7
    sd t1, 8(t3)
    li t0, 4                           # space 3's ASID
    sfence.vma x0, t0
    li a0, 0                           # the running space is untouched
    li a1, 40
    call check_space
    li a0, 3
    call switch_space
    li a0, 5                           # space 3 now shows space 5's value
    li a1, 30
    call check_space
    li s3, 4
2:  mv a0, s3                          # and the others their own
    call switch_space
    mv a0, s3
    li a1, 50
    call check_space
    addi s3, s3, 1
    li t0, {SPACES}
    blt s3, t0, 2b
"""))
    assert run.status == 0
