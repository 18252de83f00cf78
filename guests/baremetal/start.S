/* Entry point: a stack, a zeroed bss, a trap vector, no interrupts, then main().
 *
 * On entry (S-mode): a0 = hart id, a1 = device tree. Both are passed on to main().
 * Interrupts stay off for the whole run: sie = 0 and sstatus.SIE = 0, so nothing
 * can preempt the polling loops. Any trap that does reach stvec is a bug in this
 * program (vmsim emulates `rdtime` without delivering a trap), so trap_entry only
 * reports it.
 */
    .section .text.entry, "ax"
    .globl _start
_start:
    csrw    sie, zero               /* no interrupt source enabled... */
    csrci   sstatus, 2              /* ...and interrupts globally off (SIE = bit 1) */

    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack_top

    la      t0, __bss_start         /* zero bss, 8 bytes at a time (16-byte aligned) */
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:
    la      t0, trap_entry
    csrw    stvec, t0
    call    main                    /* a0, a1 untouched so far */
    call    board_exit              /* main's return value is the exit code */
3:  j       3b

    .text
    .balign 4                       /* stvec needs 4-byte alignment (direct mode) */
trap_entry:
    csrr    a0, scause
    csrr    a1, sepc
    csrr    a2, stval
    call    unexpected_trap         /* does not return */
4:  j       4b
