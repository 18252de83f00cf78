"""Device DMA while the guest runs under Sv39, and device completions from other threads.

A device writes guest RAM from inside an MMIO callback (an inline crypto request) or
from `poll()` after a foreign thread woke the machine (a pooled one). Both must reach
a guest that has paging on, without disturbing it, and the second must reach a guest
that spins on memory with interrupts off and never traps.
"""
from __future__ import annotations

import os
import threading

from vmsim.devices.bus import GuestMemory, Waker
from vmsim.devices.model import SlotContext

SLOT = 0x1000_1000
DMA_TARGET = 0x8030_0000          # physical; unmapped at this virtual address below
MARK = 0x5A5A_1234

# Paging with VA 0xC000_0000 -> PA 0x8000_0000 (1 GiB leaf) and VA 0 -> PA 0 for MMIO.
# VA 0x8000_0000 stays unmapped, so a physical DMA address looked up as virtual faults.
# The code runs at its physical address until the jump, which the new translation may
# no longer map once satp is written: stvec points at `virtual` first, so that fetch
# fault (if the hart takes it) lands there, as Linux's relocate does.
PAGING = r"""
    la t0, root
    li t1, (0x0 >> 2) | 0xCF           # V R W X A D, PA 0
    sd t1, 0(t0)
    li t1, (0x80000000 >> 2) | 0xCF    # PA 0x8000_0000 at VA 0xC000_0000
    sd t1, 24(t0)
    srli t0, t0, 12
    li t1, 8 << 60
    or t0, t0, t1
    la t2, virtual
    li t1, 0x40000000
    add t2, t2, t1
    csrw stvec, t2
    csrw satp, t0
    sfence.vma
    jr t2
    .balign 4
trap:
    exit 9
    .balign 4
virtual:
    la t2, trap                        # pc-relative: already the virtual address
    csrw stvec, t2
    sfence.vma
"""

ROOT_TABLE = r"""
    .balign 4096
root:
    .zero 4096
"""


class _DmaDevice:
    """Writes MARK into RAM at once when poked (like an inline crypto request), or
    from poll() after another thread's wake (like a pooled one)."""

    def __init__(self, memory: GuestMemory, waker: Waker, deferred: bool) -> None:
        self._memory = memory
        self._waker = waker
        self._deferred = deferred
        self._ready = threading.Event()

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if not self._deferred:
            self._memory.write(DMA_TARGET, MARK.to_bytes(4, "little"))
            return

        def complete_later() -> None:
            self._ready.set()
            self._waker.wake()

        threading.Timer(0.05, complete_later).start()

    def poll(self) -> None:
        if self._ready.is_set():
            self._ready.clear()
            self._memory.write(DMA_TARGET, MARK.to_bytes(4, "little"))


class _CodeDmaDevice:
    """Overwrites the guest's `answer` function with `li a0, 2; ret` when poked; the
    guest passes the function's physical address in the written value."""

    def __init__(self, memory: GuestMemory) -> None:
        self._memory = memory

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        li_a0_2 = (2 << 20) | (10 << 7) | 0x13           # addi a0, zero, 2
        ret = 0x00008067                                  # jalr zero, 0(ra)
        self._memory.write(value, li_a0_2.to_bytes(4, "little") + ret.to_bytes(4, "little"))


class _PipeDevice:
    """Completes like a worker pool without a collector thread: when poked, another
    thread writes a byte into a pipe the device asked the machine to watch, and never
    calls wake(); poll() reads the pipe and writes MARK. If nothing noticed the pipe
    after FALLBACK_S, it wakes the machine itself and records that, so the test fails
    instead of spinning forever."""

    FALLBACK_S = 5.0

    def __init__(self, memory: GuestMemory, waker: Waker) -> None:
        self._memory = memory
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self.watched = hasattr(waker, "watch")
        if self.watched:
            waker.watch([self._read])  # type: ignore[attr-defined]
        self._waker = waker
        self.fallback_used = False

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        threading.Timer(0.05, os.write, (self._write, b"!")).start()
        fallback = threading.Timer(self.FALLBACK_S, self._fallback)
        fallback.daemon = True
        fallback.start()

    def _fallback(self) -> None:
        self.fallback_used = True
        self._waker.wake()

    def poll(self) -> None:
        try:
            if os.read(self._read, 16):
                self._memory.write(DMA_TARGET, MARK.to_bytes(4, "little"))
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def _slot(deferred: bool):
    def build(slot: SlotContext) -> _DmaDevice:
        return _DmaDevice(slot.memory, slot.waker, deferred)
    return build


POKE_AND_WAIT = fr"""
    li t0, {SLOT}
    sw zero, 0(t0)                     # the device writes RAM during this store
    csrr t6, sscratch                  # leave the block chain: a stray pending fault
    csrr t6, sscratch                  #   would be delivered here
    li t3, {DMA_TARGET + 0x40000000}   # the same RAM, through the guest's mapping
1:  lw t4, 0(t3)
    li t5, {MARK}
    bne t4, t5, 1b                     # spin: interrupts off, no traps, no timer
    exit 0
"""


def test_inline_dma_under_sv39_does_not_fault_the_guest(boot) -> None:
    run = boot(PAGING + POKE_AND_WAIT + ROOT_TABLE, virtio=[_slot(deferred=False)])
    assert run.status == 0


def test_deferred_completion_reaches_a_guest_polling_with_interrupts_off(boot) -> None:
    run = boot(PAGING + POKE_AND_WAIT + ROOT_TABLE, virtio=[_slot(deferred=True)])
    assert run.status == 0


def test_a_watched_fd_stops_a_guest_polling_with_interrupts_off(boot) -> None:
    """The native fd watcher: readable is enough, no Python thread has to call wake()."""
    devices: list[_PipeDevice] = []

    def build(slot: SlotContext) -> _PipeDevice:
        devices.append(_PipeDevice(slot.memory, slot.waker))
        return devices[-1]

    run = boot(PAGING + POKE_AND_WAIT + ROOT_TABLE, virtio=[build])
    assert run.status == 0
    assert devices[0].watched and not devices[0].fallback_used


SPIN_HALF_A_SECOND = r"""
    rdtime t3
    li t4, 5000000                     # 0.5 s of the 10 MHz timebase
    add t4, t3, t4
1:  rdtime t3
    bltu t3, t4, 1b
    exit 0
"""


def test_worker_pool_of_an_unused_device_does_not_keep_stopping_the_cpu(boot) -> None:
    """The crypto device's workers say READY while the guest has not touched the device
    (no driver, no DRIVER_OK). The machine watches their pipes; unless the device reads
    them anyway, every READY would stop the CPU again and again (thousands per second)."""
    from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO

    runs: list[int] = []

    def count_runs(machine) -> None:
        engine_run = machine.cpu.run

        def counted(pc: int):
            runs.append(pc)
            return engine_run(pc)
        machine.cpu.run = counted

    run = boot(SPIN_HALF_A_SECOND, before_run=count_runs,
               virtio=[CRYPTO.configure(workers=2)])
    assert run.status == 0
    assert len(runs) < 100, f"{len(runs)} engine runs in half a second"


CALL_REWRITE_CALL = fr"""
    la t0, answer                      # virtual address of answer
    li t1, 0x40000000
    sub s1, t0, t1                     # its physical address
    jalr t0                            # translate and run it once: a0 = 1
    fail_unless_eq a0, 1, 2
    li t0, {SLOT}
    sw s1, 0(t0)                       # the device rewrites answer in RAM
    fence.i
    la t0, answer
    jalr t0                            # must run the new code: a0 = 2
    fail_unless_eq a0, 2, 3
    exit 0
    .balign 4096
answer:
    li a0, 1
    ret
"""


def test_code_written_by_a_device_replaces_stale_translations_under_sv39(boot) -> None:
    def slot(ctx: SlotContext) -> _CodeDmaDevice:
        return _CodeDmaDevice(ctx.memory)

    run = boot(PAGING + CALL_REWRITE_CALL + ROOT_TABLE, virtio=[slot])
    assert run.status == 0
