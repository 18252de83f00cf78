"""What the patched engine does natively, checked from inside guests on both engines
(docs/engine.md, P7-P10): delegated exceptions taken by the engine with the scause,
sepc and stval of vmsim's Python path; AMOs and SC faulting as stores; the trap-loop
guard; sfence.vma with an address, superpages included; code rewritten through a
mapping cached before it was translated.

Every guest check runs on whichever engine the process loaded (the wheel with
VMSIM_ENGINE=wheel); where the engines differ is only who delivered the trap, which
the counters say: `traps.native_counts()` for the engine, `traps.counts` for Python.
"""
from __future__ import annotations

import pytest

from tests.machine.test_traps import PAGE_TABLE, SV39_ON
from vmsim.core.cpu import NATIVE_TIMER, NATIVE_TRAPS
from vmsim.errors import GuestError

LOAD_FAULT, STORE_FAULT, FETCH_FAULT = "load page fault", "store/AMO page fault", \
    "instruction page fault"


def _native(run) -> bool:
    return bool(run.machine.cpu.native_features & NATIVE_TRAPS)


def _delivered(run, name: str) -> tuple[int, int]:
    """(by the engine, by vmsim's handler) for one kind of trap."""
    return run.machine.traps.native_counts()[name], run.machine.traps.counts[name]


def test_page_faults_are_delivered_by_the_engine_with_exact_state(boot) -> None:
    run = boot(SV39_ON + r"""
        la t0, trap
        csrw stvec, t0
        li s1, 0x40000010
        li s2, 1
    load:
        ld a0, 0(s1)              # load page fault at 0x40000010
        li s2, 2
    store:
        sd a0, 0x20(s1)           # store page fault at 0x40000030
        li s2, 3
        li t0, 0x40000000
        la ra, back
        jr t0                     # instruction page fault at 0x40000000
    back:
        fail_unless_eq s2, 4, 9
        exit 0
        .balign 4
    trap:
        csrr t3, scause
        csrr t4, stval
        csrr t5, sepc
        csrr t6, sstatus
        andi t6, t6, 1 << 8       # SPP: the fault came from S-mode
        beqz t6, bad
        li t6, 1
        beq s2, t6, expect_load
        li t6, 2
        beq s2, t6, expect_store
        fail_unless_eq t3, 12, 30
        fail_unless_eq t4, 0x40000000, 31
        fail_unless_eq t5, 0x40000000, 32
        li s2, 4
        csrw sepc, ra
        sret
    expect_load:
        fail_unless_eq t3, 13, 10
        fail_unless_eq t4, 0x40000010, 11
        la t6, load
        bne t5, t6, bad
        skip_and_return
    expect_store:
        fail_unless_eq t3, 15, 20
        fail_unless_eq t4, 0x40000030, 21
        la t6, store
        bne t5, t6, bad
        skip_and_return
    bad:
        exit 40
    """ + PAGE_TABLE)
    assert run.status == 0, f"guest check {run.status} failed"
    for name in (LOAD_FAULT, STORE_FAULT, FETCH_FAULT):
        assert _delivered(run, name) == ((1, 0) if _native(run) else (0, 1)), name


def test_breakpoints_and_system_calls_are_delivered_by_the_engine(boot) -> None:
    run = boot(r"""
        la t0, trap
        csrw stvec, t0
        li s1, 0                  # breakpoints seen
    brk:
        ebreak
        fail_unless_eq s1, 1, 2
        li t0, 1 << 8
        csrc sstatus, t0          # SPP = 0: sret goes to U-mode
        la t0, user
        csrw sepc, t0
        sret
    user:
        li a0, 7
    user_ecall:
        ecall
        j user
        .balign 4
    trap:
        csrr t3, scause
        li t4, 3
        beq t3, t4, breakpoint
        fail_unless_eq t3, 8, 3
        csrr t3, sepc
        la t4, user_ecall
        bne t3, t4, bad
        fail_unless_eq a0, 7, 4
        exit 0
    breakpoint:
        csrr t3, sepc
        la t4, brk
        bne t3, t4, bad
        csrr t3, stval            # vmsim reports the breakpoint's address
        bne t3, t4, bad
        addi s1, s1, 1
        skip_and_return
    bad:
        exit 5
    """)
    assert run.status == 0, f"guest check {run.status} failed"
    assert _delivered(run, "breakpoint") == ((1, 0) if _native(run) else (0, 1))
    assert _delivered(run, "ecall from U-mode") == ((1, 0) if _native(run) else (0, 1))


def test_amos_and_sc_fault_as_stores_and_lr_as_a_load(boot) -> None:
    """The engine runs an AMO as a load then a store; the ISA (and Linux, which maps a
    page writable only on a store fault) wants store/AMO causes (docs/engine.md, E18)."""
    run = boot(SV39_ON + r"""
        la t0, trap
        csrw stvec, t0
        li s1, 0x40000100
        li t1, 1
        li s2, 15
        amoadd.d a0, t1, (s1)
        li s2, 15
        amoswap.w a0, t1, (s1)
        li s2, 13
        lr.d a0, (s1)             # a load-reserved is a load
        li s2, 6
        li s1, 0x80100002         # mapped, but not 8-byte aligned
        amoadd.d a0, t1, (s1)     # misaligned AMO: store/AMO address misaligned
        li s2, 0
        exit 0
        .balign 4
    trap:
        csrr t3, scause
        bne t3, s2, wrong_cause
        csrr t4, stval
        bne t4, s1, wrong_tval
        skip_and_return
    wrong_cause:
        exit 2
    wrong_tval:
        exit 3
    """ + PAGE_TABLE)
    assert run.status == 0, f"guest check {run.status} failed"
    if _native(run):
        assert run.machine.traps.native_counts()[STORE_FAULT] == 2
        assert run.machine.traps.native_counts()[LOAD_FAULT] == 1
        assert run.machine.traps.native_counts()["store/AMO address misaligned"] == 1


def test_a_fault_the_handler_never_fixes_is_a_trap_loop(boot) -> None:
    with pytest.raises(GuestError) as caught:
        boot(SV39_ON + r"""
            la t0, trap
            csrw stvec, t0
            li s1, 0x40000000
            ld a0, 0(s1)
            exit 0
            .balign 4
        trap:
            sret                  # back to the same load, which faults again
        """ + PAGE_TABLE)
    assert "trap loop (1000 identical traps in a row)" in str(caught.value)
    assert "cause 13" in str(caught.value) and "stval 0x40000000" in str(caught.value)


def test_the_same_system_call_over_and_over_is_not_a_trap_loop(boot) -> None:
    run = boot(r"""
        la t0, trap
        csrw stvec, t0
        li s1, 3000
        li t0, 1 << 8
        csrc sstatus, t0
        la t0, user
        csrw sepc, t0
        sret
    user:
        ecall
        j user
        .balign 4
    trap:
        addi s1, s1, -1
        beqz s1, 1f
        csrr t3, sepc
        addi t3, t3, 4
        csrw sepc, t3
        sret
    1:  exit 0
    """)
    assert run.status == 0


# VA 0x4000_0000 (root[1]) goes through a level-1 table: entry 0 is either a 2 MiB
# megapage or a pointer to a level-0 table of 4 KiB pages.
TWO_LEVEL_TABLES = r"""
    .macro pte_to reg, pa, flags  # reg = PTE for physical address pa
        li \reg, ((\pa) >> 12) << 10 | \flags
    .endm
    .macro table_pte reg, label   # reg = non-leaf PTE pointing at label
        la \reg, \label
        srli \reg, \reg, 12
        slli \reg, \reg, 10
        ori \reg, \reg, 1
    .endm
"""
DATA_A, DATA_B = 0x8080_0000, 0x80A0_0000       # 2 MiB aligned, inside the 16 MiB of RAM


def test_sfence_vma_with_an_address_drops_that_page_and_its_superpage(boot) -> None:
    run = boot(TWO_LEVEL_TABLES + SV39_ON + rf"""
        li t0, {DATA_A:#x}
        li t1, 0xaaaa
        sd t1, 0(t0)
        li t0, {DATA_B:#x}
        li t1, 0xbbbb
        sd t1, 0(t0)
        la s1, level1
        table_pte t0, level1
        la t1, root_table
        sd t0, 8(t1)              # root[1] -> level1
        table_pte t0, level0
        sd t0, 0(s1)              # level1[0] -> level0 (4 KiB pages)
        la s2, level0
        pte_to t0, {DATA_A:#x}, 0xcf
        sd t0, 0(s2)              # VA 0x40000000 -> A
        sfence.vma
        li s3, 0x40000000
        ld a0, 0(s3)
        fail_unless_eq a0, 0xaaaa, 2
        pte_to t0, {DATA_B:#x}, 0xcf
        sd t0, 0(s2)              # VA 0x40000000 -> B
        sfence.vma s3             # this page only
        ld a0, 0(s3)
        fail_unless_eq a0, 0xbbbb, 3

        pte_to t0, {DATA_A:#x}, 0xcf
        sd t0, 0(s1)              # level1[0]: a 2 MiB megapage -> A
        sfence.vma
        ld a0, 0(s3)
        fail_unless_eq a0, 0xaaaa, 4
        pte_to t0, {DATA_B:#x}, 0xcf
        sd t0, 0(s1)              # the megapage -> B
        li t0, 0x40001000
        sfence.vma t0             # another page of the same megapage
        ld a0, 0(s3)
        fail_unless_eq a0, 0xbbbb, 5
        exit 0
        .section .bss
        .balign 4096
    level1: .skip 4096
    level0: .skip 4096
    """ + PAGE_TABLE)
    assert run.status == 0, f"guest check {run.status} failed"


def test_sc_to_a_page_unmapped_after_its_lr_faults_as_a_store(boot) -> None:
    """The reservation holds, so the SC goes to memory; its load half faults first."""
    run = boot(TWO_LEVEL_TABLES + SV39_ON + rf"""
        la t0, trap
        csrw stvec, t0
        la s1, level1
        table_pte t0, level1
        la t1, root_table
        sd t0, 8(t1)              # root[1] -> level1
        table_pte t0, level0
        sd t0, 0(s1)              # level1[0] -> level0
        la s2, level0
        pte_to t0, {DATA_A:#x}, 0xcf
        sd t0, 0(s2)              # VA 0x40000000 -> A
        sfence.vma
        li s3, 0x40000008
        li s4, 0                  # faults taken
        lr.d a0, (s3)             # reserves 0x40000008
        sd zero, 0(s2)            # unmap the page
        sfence.vma s3
        li t1, 5
        sc.d a1, t1, (s3)
        fail_unless_eq s4, 1, 2
        exit 0
        .balign 4
    trap:
        csrr t3, scause
        fail_unless_eq t3, 15, 3
        csrr t3, stval
        fail_unless_eq t3, 0x40000008, 4
        addi s4, s4, 1
        skip_and_return
        .section .bss
        .balign 4096
    level1: .skip 4096
    level0: .skip 4096
    """ + PAGE_TABLE)
    assert run.status == 0, f"guest check {run.status} failed"


def test_code_rewritten_through_a_mapping_cached_before_translation_runs_anew(boot) -> None:
    """Self-modifying code: a store fills the TLB for a page, code in that page is then
    translated, and rewriting the code must drop the translation (the engine's
    code-page write tracking, which P10 made cheaper)."""
    run = boot(r"""
        la s1, patch_site
        lw t0, 0(s1)
        sw t0, 0(s1)              # a writable TLB entry for the page, no code there yet
        jal patch_site            # translated now
        fail_unless_eq a0, 1, 2
        la t0, new_insn
        lw t0, 0(t0)
        sw t0, 0(s1)              # li a0, 2 over li a0, 1
        fence.i
        jal patch_site
        fail_unless_eq a0, 2, 3
        exit 0
    new_insn:
        .option push
        .option norvc
        li a0, 2
        .option pop
        .balign 4096
    patch_site:
        .option push
        .option norvc
        li a0, 1
        ret
        .option pop
    """)
    assert run.status == 0, f"guest check {run.status} failed"


def test_legacy_sbi_set_timer_raises_the_timer_interrupt_in_a_spinning_guest(boot) -> None:
    """The engine answers the legacy call too, and its timer thread gets a guest that
    never traps to take the interrupt (docs/engine.md, P8)."""
    run = boot(r"""
        la t0, trap
        csrw stvec, t0
        li t0, 1 << 5
        csrs sie, t0              # STIE
        rdtime a0
        li t0, 20000              # 2 ms at 10 MHz
        add a0, a0, t0
        li a7, 0                  # legacy set_timer: the value in a0, the result in a0
        li a1, 0x55
        ecall
        fail_unless_eq a0, 0, 2
        fail_unless_eq a1, 0x55, 3
        csrsi sstatus, 2          # SIE
    1:  j 1b
        .balign 4
    trap:
        csrr t3, scause
        li t4, (1 << 63) | 5
        bne t3, t4, 2f
        exit 0
    2:  exit 4
    """)
    assert run.status == 0, f"guest check {run.status} failed"
    native = bool(run.machine.cpu.native_features & NATIVE_TIMER)
    assert run.machine.traps.native_counts()["sbi set_timer"] == (1 if native else 0)
    assert run.machine.traps.counts["sbi"] == (0 if native else 1)
