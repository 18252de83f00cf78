"""Synchronous traps: delivered to the S-mode handler with the right scause/sepc/stval."""
from __future__ import annotations

import pytest

from vmsim.errors import GuestError

# Sv39 with identity-mapped gigapages over the devices (VPN2 = 0) and RAM (VPN2 = 2);
# 0x4000_0000..0x7fff_ffff (VPN2 = 1) and everything else faults.
SV39_ON = r"""
    la t0, root_table
    li t1, 0xcf                                 # PPN 0 | D A X W R V
    sd t1, 0(t0)                                # root[0]
    li t1, (0x80000000 >> 12) << 10 | 0xcf
    sd t1, 16(t0)                               # root[2]
    srli t0, t0, 12
    li t1, 8 << 60                              # MODE = Sv39
    or t0, t0, t1
    csrw satp, t0
    sfence.vma
"""
PAGE_TABLE = r"""
    .section .bss
    .balign 4096
root_table: .skip 4096
"""


def test_ecall_from_user_mode_reaches_the_kernel_as_cause_8(boot) -> None:
    run = boot(r"""
        la t0, trap
        csrw stvec, t0
        li t0, 1 << 8
        csrc sstatus, t0          # SPP = 0: sret goes to U-mode
        la t0, user
        csrw sepc, t0
        sret
    user:
        li a0, 123
    user_ecall:
        ecall
        j user
        .balign 4
    trap:
        csrr t3, scause
        fail_unless_eq t3, 8, 2
        csrr t3, sepc
        la t4, user_ecall
        bne t3, t4, bad_epc
        csrr t3, sstatus
        andi t3, t3, 1 << 8
        fail_unless_eq t3, 0, 4   # SPP records U
        fail_unless_eq a0, 123, 5
        exit 0
    bad_epc:
        exit 3
    """)
    assert run.status == 0
    # The patched engine delivers delegated system calls natively; the wheel's go
    # through vmsim's trap handler. The guest sees the same either way.
    from vmsim.core.engine import PATCHED, engine_kind

    via_hook = run.machine.traps.counts["ecall from U-mode"]
    assert via_hook == (0 if engine_kind() == PATCHED else 1)


def test_load_and_store_page_faults_report_exact_stval(boot) -> None:
    run = boot(SV39_ON + r"""
        la t0, trap
        csrw stvec, t0
        li s1, 0x40000123
        li s2, 1                  # which fault we expect next
        ld a0, 0(s1)              # load page fault at 0x40000123
        li s2, 2
        sw a0, 0x70(s1)           # store page fault at 0x40000193
        li s2, 3
        addi s0, s1, -0x23
        c.ld a1, 8(s0)            # compressed load: 0x40000108
        li s2, 4
        amoadd.w a0, a0, (s0)     # AMO faults as a store: 0x40000100
        li s2, 5
        flw fa0, -4(s0)           # FP load: 0x400000fc
        exit 0
        .balign 4
    trap:
        csrr t3, scause
        csrr t4, stval
        li t6, 1
        beq s2, t6, expect_load
        li t6, 2
        beq s2, t6, expect_store
        li t6, 3
        beq s2, t6, expect_compressed
        li t6, 4
        beq s2, t6, expect_amo
        fail_unless_eq t3, 13, 20
        fail_unless_eq t4, 0x400000fc, 21
        skip_and_return
    expect_load:
        fail_unless_eq t3, 13, 10
        fail_unless_eq t4, 0x40000123, 11
        skip_and_return
    expect_store:
        fail_unless_eq t3, 15, 12
        fail_unless_eq t4, 0x40000193, 13
        skip_and_return
    expect_compressed:
        fail_unless_eq t3, 13, 14
        fail_unless_eq t4, 0x40000108, 15
        skip_and_return
    expect_amo:
        fail_unless_eq t3, 15, 16
        fail_unless_eq t4, 0x40000100, 17
        skip_and_return
    """ + PAGE_TABLE, before_run=_enable_fpu)
    assert run.status == 0, f"guest check {run.status} failed"


def _enable_fpu(machine) -> None:
    machine.cpu.set_csr("sstatus", machine.cpu.csr("sstatus") | (1 << 13))   # FS = initial


def test_illegal_instruction_reports_its_bits(boot) -> None:
    run = boot(r"""
        la t0, trap
        csrw stvec, t0
    bad:
        .word 0x1234500b          # custom-0: not implemented by the CPU
        exit 0
        .balign 4
    trap:
        csrr t3, scause
        fail_unless_eq t3, 2, 2
        csrr t3, stval
        fail_unless_eq t3, 0x1234500b, 3
        csrr t3, sepc
        la t4, bad
        bne t3, t4, 1f
        addi t3, t3, 4
        csrw sepc, t3
        sret
    1:  exit 4
    """)
    assert run.status == 0


def test_ebreak_is_a_breakpoint_trap(boot) -> None:
    run = boot(r"""
        la t0, trap
        csrw stvec, t0
        li s1, 0
    brk:
        c.ebreak
        fail_unless_eq s1, 1, 5   # the handler ran once, and we came back
        exit 0
        .balign 4
    trap:
        csrr t3, scause
        fail_unless_eq t3, 3, 2
        csrr t3, sepc
        la t4, brk
        bne t3, t4, 1f
        addi s1, s1, 1
        addi t3, t3, 2
        csrw sepc, t3
        sret
    1:  exit 3
    """)
    assert run.status == 0


def test_rdtime_advances_with_the_host_clock(boot) -> None:
    """Natively on the patched engine, emulated after a trap on the wheel
    (docs/engine.md, E4 and P2);
    either way the guest's time is the machine clock's, which drives SBI deadlines."""
    from vmsim.core.engine import PATCHED, engine_kind

    run = boot(r"""
        rdtime s1
        li t0, 200000
    1:  addi t0, t0, -1
        bnez t0, 1b
        rdtime s2
        bgeu s1, s2, 2f
        exit 0
    2:  exit 2
    """, before_run=lambda machine: setattr(machine, "ticks_before", machine.clock.ticks()))
    assert run.status == 0
    first, second = run.machine.cpu.x(9), run.machine.cpu.x(18)
    assert run.machine.ticks_before <= first < second <= run.machine.clock.ticks()
    emulated = run.machine.traps.counts["csr-emulation"]
    assert emulated == (0 if engine_kind() == PATCHED else 2)


def test_trap_with_no_handler_is_a_guest_death(boot) -> None:
    with pytest.raises(GuestError) as caught:
        boot(SV39_ON + r"""
            csrw stvec, zero
            li t0, 0x40000000
            jr t0
        """ + PAGE_TABLE)
    message = str(caught.value)
    assert "stvec = 0" in message
    assert "cause 12" in message and "pc 0x40000000" in message
    assert "\n" not in message
    assert "sepc=" in caught.value.register_dump


def test_jump_to_unmapped_physical_memory_is_a_guest_death(boot) -> None:
    with pytest.raises(GuestError) as caught:
        boot(r"""
            csrw stvec, zero
            li t0, 0x4000
            jr t0
        """)
    assert "pc 0x4000" in str(caught.value)
    assert "unmapped" in str(caught.value)


def test_supervisor_access_to_user_pages_follows_sstatus_sum(boot) -> None:
    """S-mode loads and stores to a U page fault unless sstatus.SUM is set, and fault
    again once it is cleared: no translation cached under SUM may outlive it (the
    patched engine keeps SUM-on translations apart instead of flushing the TLB)."""
    run = boot(SV39_ON + r"""
        la t0, root_table
        li t1, (0x80000000 >> 12) << 10 | 0xdf  # U page: VA 0xc0000000 -> PA 0x80000000
        sd t1, 24(t0)
        sfence.vma
        la t0, trap
        csrw stvec, t0
        li s4, 0                  # faults taken
        la s1, value
        li t0, 0x40000000
        add s1, s1, t0            # `value` through the user mapping
        li s5, 1 << 18            # sstatus.SUM

        ld a0, 0(s1)              # SUM = 0: load page fault
        fail_unless_eq s4, 1, 2
        fail_unless_eq s3, 13, 3
        csrs sstatus, s5
        ld a0, 0(s1)              # SUM = 1: reads the page
        fail_unless_eq s4, 1, 4
        li t1, 0x1122334455667788
        bne a0, t1, wrong_value
        sd a0, 8(s1)              # and writes it
        fail_unless_eq s4, 1, 5
        csrc sstatus, s5
        ld a0, 0(s1)              # SUM = 0 again: faults again
        fail_unless_eq s4, 2, 6
        sd a0, 8(s1)              # stores too
        fail_unless_eq s4, 3, 7
        fail_unless_eq s3, 15, 8
        exit 0
    wrong_value:
        exit 9
        .balign 4
    trap:
        csrr s3, scause
        addi s4, s4, 1
        skip_and_return
        .section .data
        .balign 8
    value: .dword 0x1122334455667788, 0
    """ + PAGE_TABLE)
    assert run.status == 0
