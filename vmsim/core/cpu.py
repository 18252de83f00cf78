"""The hart: a Unicorn riscv64 engine plus the register access vmsim needs.

Everything that knows Unicorn's register numbering lives here, so the trap path, the
firmware glue and the run loop speak in RISC-V terms (x10, sstatus, PRIV). Two engine
quirks are absorbed here (docs/engine.md gives each by its id):
- M-level CSRs are reachable only at PRIV 3 on the wheel (E2): there
  `read_mcsr`/`write_mcsr` raise the privilege around the access and restore it. The
  patched engine accesses CSRs from the host as a debugger does, at any privilege.
- `ctl_remove_cache` resolves its address through the MMU of the current privilege (it
  calls the engine's code-fetch translation). Under Sv39 a physical address then names
  the wrong page, or faults, and that swallowed fault stays pending and reaches the
  guest as a bogus instruction page fault. Invalidation therefore runs at PRIV 3, where
  fetch addresses are physical (E17).
- Host writes to guest RAM do not invalidate translated code (E10). The RAM adds the
  pages it writes to `written_pages` (other writers call `note_written`); the pages
  are invalidated together, in merged runs, when the hook or MMIO callback that wrote
  them returns and before every run, which are the only ways back into guest code. One
  invalidation per callback instead of one per write keeps a device's DMA cheap.
- The Python binding lacks `uc_vmem_read` (E1): `read_virtual` calls it via ctypes
  to fetch guest-virtual instruction bytes.
- The patched engine delivers delegated exceptions and keeps the SBI timer itself
  (docs/engine.md, P7 and P8). What it did is read through pseudo-registers that only
  it has; `native_features` says whether they exist, so the wheel is never asked.
"""
from __future__ import annotations

import contextlib
import ctypes
import enum
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from vmsim.core.engine import PATCHED, engine_kind, load_unicorn
from vmsim.core.nativelib import (INVALIDATE_PAGES, NativeRegisterMirror, function_address,
                                   page_invalidation)
from vmsim.firmware.boot import PRIV_SUPERVISOR as PRIV_SUPERVISOR  # re-exported

PRIV_USER, PRIV_MACHINE = 0, 3         # PRIV_SUPERVISOR (1) is the firmware's, which enters S-mode

# Interrupt-pending bits of mip/sip the machine drives.
SSIP, STIP, SEIP = 1 << 1, 1 << 5, 1 << 9

ABI_NAMES = ("zero ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 "
             "s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6").split()
CSR_NAMES = ("sstatus", "sie", "stvec", "sepc", "scause", "stval", "sip", "satp", "scounteren")
MCSR_NAMES = ("mstatus", "mip", "mie", "medeleg", "mideleg", "mcounteren")

# What the patched engine does natively (its exported vmsim_features(); docs/engine.md,
# P7 and P8), and the pseudo-registers through which it reports and is configured.
NATIVE_TRAPS, NATIVE_TIMER, NATIVE_INVALIDATE, NATIVE_ARM64 = 1, 2, 4, 8
_VMSIM_REG = 0x76000
_REG_TIMER_ENABLE, _REG_TIMECMP = _VMSIM_REG, _VMSIM_REG + 1
_REG_TIMER_SETS, _REG_TIMER_FIRES, _REG_TRAP_REPEATS = (_VMSIM_REG + 2, _VMSIM_REG + 3,
                                                        _VMSIM_REG + 4)
_REG_INVALIDATE_START, _REG_INVALIDATE_END = _VMSIM_REG + 5, _VMSIM_REG + 6
_REG_TRAPS = _VMSIM_REG + 0x100     # + cause

_PROT_READ, _PROT_EXEC = 1, 4
# An odd address: pc never equals it, so emu_start's `until` never ends a run.
_NEVER_REACHED = (1 << 64) - 1
PAGE_SHIFT = 12
_INVALIDATE_BATCH = 16     # page runs per engine call when code is invalidated


class EngineStop(enum.Enum):
    """Why `Cpu.run` returned."""

    OK = "ok"                       # wfi, or a stop request
    EXCEPTION = "exception"         # after an ebreak the hook delivered
    READ_UNMAPPED = "load from unmapped memory"
    WRITE_UNMAPPED = "store to unmapped memory"
    FETCH_UNMAPPED = "instruction fetch from unmapped memory"
    OTHER_ERROR = "engine error"


# The engine and the numbers that depend on it, bound by `_bind_engine()` when the first
# Cpu is made, never at import: which libunicorn backs the binding is chosen then.
uc_mod: Any = None
rv: Any = None
CSR: dict[str, int] = {}
MCSR: dict[str, int] = {}
_CSRS_AT_ANY_PRIVILEGE = False
_NATIVE_FEATURES = 0
_MIP = _PRIV = _PC = _X0 = _CTL_REMOVE_CACHE = 0
_ENGINE_ERRORS: dict[int, EngineStop] = {}
_MMIO_READ: Any = None
_MMIO_WRITE: Any = None


def _bind_common() -> Any:
    """Load the engine (vmsim.core.engine) and resolve what every target shares: its
    error numbers, the code-cache control and the patch's native features."""
    global uc_mod, _CSRS_AT_ANY_PRIVILEGE, _NATIVE_FEATURES, _CTL_REMOVE_CACHE
    if uc_mod is not None:
        return uc_mod
    module = load_unicorn()
    _CSRS_AT_ANY_PRIVILEGE = engine_kind(module) == PATCHED
    _NATIVE_FEATURES = _native_features() if _CSRS_AT_ANY_PRIVILEGE else 0
    # uc_ctl's encoding of "write, two arguments, TB_REMOVE_CACHE" (what ctl_remove_cache builds).
    _CTL_REMOVE_CACHE = ((module.UC_CTL_IO_WRITE << 30) | (2 << 26)
                         | module.UC_CTL_TB_REMOVE_CACHE)
    _ENGINE_ERRORS.update({
        module.UC_ERR_EXCEPTION: EngineStop.EXCEPTION,
        module.UC_ERR_READ_UNMAPPED: EngineStop.READ_UNMAPPED,
        module.UC_ERR_WRITE_UNMAPPED: EngineStop.WRITE_UNMAPPED,
        module.UC_ERR_FETCH_UNMAPPED: EngineStop.FETCH_UNMAPPED,
    })
    uc_mod = module
    return module


def _bind_engine() -> None:
    """The engine, and the riscv register numbers the hart uses."""
    global rv, _MIP, _PRIV, _PC, _X0
    _bind_common()
    if rv is not None:
        return
    from unicorn import riscv_const

    CSR.update({name: getattr(riscv_const, f"UC_RISCV_REG_{name.upper()}") for name in CSR_NAMES})
    MCSR.update({name: getattr(riscv_const, f"UC_RISCV_REG_{name.upper()}") for name in MCSR_NAMES})
    _MIP, _PRIV, _PC, _X0 = (riscv_const.UC_RISCV_REG_MIP, riscv_const.UC_RISCV_REG_PRIV,
                             riscv_const.UC_RISCV_REG_PC, riscv_const.UC_RISCV_REG_X0)
    rv = riscv_const


class EngineCpu:
    """What every target's CPU does with its engine: direct register access, RAM and
    MMIO mapping, guest-virtual reads, code invalidation after host writes, running."""

    def __init__(self, arch: int, mode: int) -> None:
        self.uc: Any = uc_mod.Uc(arch, mode)
        self._lib = _vmem_functions()
        self._handle = self.uc._uch
        self.last_error = ""
        self._written_pages: set[int] = set()
        # Interrupt changes and the code invalidation after every callback that wrote
        # RAM call the engine directly through one reusable buffer (the binding's
        # wrappers cost 2-3 µs per call).
        self._value = ctypes.c_uint64()
        self._value_ref = ctypes.byref(self._value)
        self._mmio_callbacks: list[tuple[Any, NativeRegisterMirror | None]] = []
        # The invalidation's ranges go to the engine in one uc_reg_write_batch call:
        # (start, end) register pairs, their values written in place each time.
        pairs = _INVALIDATE_BATCH
        self._bounds = (ctypes.c_uint64 * (2 * pairs))()
        self._bound_regs = (ctypes.c_int * (2 * pairs))(
            *[_REG_INVALIDATE_START, _REG_INVALIDATE_END] * pairs)
        self._bound_refs = (ctypes.c_void_p * (2 * pairs))(
            *[ctypes.addressof(self._bounds) + 8 * i for i in range(2 * pairs)])
        # The same in native code (vmsim/native/invalidate.c), where it is built.
        self._native_invalidate = page_invalidation(
            ctypes.cast(self._handle, ctypes.c_void_p).value or 0,
            function_address(self._lib.uc_reg_write_batch), _REG_INVALIDATE_START,
            _REG_INVALIDATE_END, PAGE_SHIFT) if _NATIVE_FEATURES & NATIVE_INVALIDATE else None

    def _get(self, reg_id: int) -> int:
        status = self._lib.uc_reg_read(self._handle, reg_id, self._value_ref)
        if status:
            raise uc_mod.UcError(status, reg_id)
        return self._value.value

    def _set(self, reg_id: int, value: int) -> None:
        self._value.value = value
        status = self._lib.uc_reg_write(self._handle, reg_id, self._value_ref)
        if status:
            raise uc_mod.UcError(status, reg_id)

    @property
    def native_features(self) -> int:
        """The patched engine's NATIVE_* feature bits (vmsim_features()); 0 on the wheel."""
        return _NATIVE_FEATURES

    def read_virtual(self, address: int, size: int, execute: bool = False) -> bytes | None:
        """Bytes at a guest-virtual address under the current satp and PRIV; None if
        the translation fails."""
        buf = ctypes.create_string_buffer(size)
        prot = _PROT_EXEC if execute else _PROT_READ
        if self._lib.uc_vmem_read(self._handle, address, prot, buf, size) != 0:
            return None
        return buf.raw

    def is_fetchable(self, address: int) -> bool:
        return self.translate_virtual(address, execute=True) is not None

    def translate_virtual(self, address: int, execute: bool = False) -> int | None:
        """The physical address a guest-virtual one maps to for a load (or a fetch)
        under the current translation regime and privilege; None if that faults."""
        out = ctypes.c_uint64()
        if self._lib.uc_vmem_translate(self._handle, address,
                                       _PROT_EXEC if execute else _PROT_READ,
                                       ctypes.byref(out)) != 0:
            return None
        return out.value

    def flush_tlb(self) -> None:
        """Drop cached address translations (SBI remote sfence.vma on one hart)."""
        self.uc.ctl(uc_mod.UC_CTL_TLB_FLUSH, uc_mod.UC_CTL_IO_WRITE)

    def flush_code(self) -> None:
        """Drop all translated code (SBI remote fence.i)."""
        self.uc.ctl_flush_tb()

    @property
    def written_pages(self) -> set[int]:
        """The pages (address >> PAGE_SHIFT) the host wrote since the guest last ran:
        the RAM adds to it itself (Ram.track_written_pages), as note_written would."""
        return self._written_pages

    def note_written(self, address: int, size: int) -> None:
        """The host wrote guest-physical [address, address+size): its translated code
        is dropped before the guest runs again (module docstring)."""
        if size > 0:
            first, last = address >> PAGE_SHIFT, (address + size - 1) >> PAGE_SHIFT
            if first == last:  # most device writes: a status byte, a ring entry
                self._written_pages.add(first)
            else:
                self._written_pages.update(range(first, last + 1))

    def _invalidate_physical(self, pages: list[int]) -> None:
        """The patched engine's invalidation, by physical range (docs/engine.md, P11):
        each run of adjacent pages is a (start, end) register pair, and the pairs go in
        one uc_reg_write_batch call (a request's output, status byte and used ring are
        usually three runs: six register writes, one engine call). In native code
        where it is built (the same runs and batches); this is the reference."""
        native = self._native_invalidate
        if native is not None and len(pages) <= INVALIDATE_PAGES:
            status = native(pages)
            if status:
                raise uc_mod.UcError(status, _REG_INVALIDATE_END)
            return
        bounds = []
        start = previous = pages[0]
        for page in pages[1:]:
            if page != previous + 1:
                bounds += (start << PAGE_SHIFT, (previous + 1) << PAGE_SHIFT)
                start = page
            previous = page
        bounds += (start << PAGE_SHIFT, (previous + 1) << PAGE_SHIFT)
        step = 2 * _INVALIDATE_BATCH
        for first in range(0, len(bounds), step):
            chunk = bounds[first:first + step]
            self._bounds[:len(chunk)] = chunk
            status = self._lib.uc_reg_write_batch(self._handle, self._bound_regs,
                                                  self._bound_refs, len(chunk))
            if status:
                raise uc_mod.UcError(status, _REG_INVALIDATE_END)

    def map_ram(self, base: int, size: int, host_address: int) -> None:
        """Map host memory as guest RAM, zero-copy."""
        self.uc.mem_map_ptr(base, size, uc_mod.UC_PROT_ALL, host_address)

    def map_mmio(self, base: int, size: int, read: Callable[[int, int], int],
                 write: Callable[[int, int, int], None],
                 after: Callable[[], None] = lambda: None,
                 mirrored: Sequence[int] = (),
                 posted: Sequence[int] = ()) -> NativeRegisterMirror | None:
        """Route accesses in [base, base+size) to Python callbacks (offset, size[, value]),
        calling `after()` once each has returned (the machine's timer check).

        Every device register access comes through here (a UART byte, a PLIC claim, a
        queue notify), so the engine calls these functions directly through ctypes
        instead of through the binding's three layers of wrappers, and `after` is called
        from here rather than from one more wrapper. As in the binding, an exception
        stops the run and `run` raises it.

        `mirrored` names 4-byte registers whose reads the returned mirror answers
        natively while the device has a value published for them, and `posted` those
        whose writes it takes while the device offers the value written
        (vmsim/native/register_mirror.c); `after` is not called for those accesses."""
        written = self._written_pages
        forget = self._forget_written_code
        failed = self._callback_failed

        def on_read(_handle: int, offset: int, width: int, _data: int) -> int:
            try:
                value = read(offset, width)
                after()
                if written:
                    forget()
                return value
            except BaseException as error:  # noqa: BLE001 - handed to `run`
                failed(error)
                return 0

        def on_write(_handle: int, offset: int, width: int, value: int, _data: int) -> None:
            try:
                write(offset, width, value)
                after()
                if written:
                    forget()
            except BaseException as error:  # noqa: BLE001 - handed to `run`
                failed(error)

        callbacks = (_MMIO_READ(on_read), _MMIO_WRITE(on_write))
        mirror = None
        functions: tuple[Any, ...] = (ctypes.cast(callbacks[0], ctypes.c_void_p), None,
                                      ctypes.cast(callbacks[1], ctypes.c_void_p), None)
        if mirrored or posted:
            mirror = NativeRegisterMirror(callbacks[0], callbacks[1], mirrored, posted)
            functions = (mirror.read_callback, mirror.user_data,
                         mirror.write_callback, mirror.user_data)
        self._mmio_callbacks.append((callbacks, mirror))  # alive as long as the engine
        status = self._lib.uc_mmio_map(self._handle, base, size, *functions)
        if status:
            raise uc_mod.UcError(status)
        return mirror

    def _callback_failed(self, error: BaseException) -> None:
        """What the binding does with an exception in a callback: keep the first, stop
        the run; emu_start raises it once the engine returns."""
        if self.uc._hook_exception is None:
            self.uc._hook_exception = error
        self.uc.emu_stop()

    def run(self, start: int) -> EngineStop:
        """Run from `start` until something stops the engine; say why."""
        self._forget_written_code()
        try:
            self.uc.emu_start(start, _NEVER_REACHED)
        except uc_mod.UcError as error:
            self.last_error = str(error)
            return _ENGINE_ERRORS.get(error.errno, EngineStop.OTHER_ERROR)
        return EngineStop.OK

    def stop(self) -> None:
        """Stop from inside an exception hook (never from an MMIO callback:
        docs/engine.md, E9)."""
        self.uc.emu_stop()

    def _forget_written_code(self) -> None:
        """Invalidate the noted pages, one engine call per run of adjacent pages: by
        physical range on the patched engine (docs/engine.md, P11), which skips pages
        without code; `_invalidate_without_patch` elsewhere. Dropping a page's
        translations is always safe; it costs only a retranslation."""
        if not self._written_pages:
            return
        pages = sorted(self._written_pages)
        self._written_pages.clear()
        if _NATIVE_FEATURES & NATIVE_INVALIDATE:
            self._invalidate_physical(pages)
        else:
            self._invalidate_without_patch(pages)

    def _invalidate_without_patch(self, pages: list[int]) -> None:
        raise NotImplementedError


class Cpu(EngineCpu):
    """One riscv64 hart (SiFive U54 model: RV64IMAFDC, Sv39) on a fresh engine."""

    def __init__(self) -> None:
        _bind_engine()
        super().__init__(uc_mod.UC_ARCH_RISCV, uc_mod.UC_MODE_RISCV64)

    # The trap and SBI paths read a dozen registers per trap: straight to the engine.
    def x(self, index: int) -> int:
        return self._get(_X0 + index)

    def set_x(self, index: int, value: int) -> None:
        """Write x[index]; writes to x0 are dropped, as the ISA says."""
        if index:
            self._set(_X0 + index, value & ((1 << 64) - 1))

    @property
    def pc(self) -> int:
        return self._get(_PC)

    @pc.setter
    def pc(self, value: int) -> None:
        """A pc write also makes Unicorn leave the current translated block
        (docs/engine.md, E1)."""
        self.uc.reg_write(rv.UC_RISCV_REG_PC, value)

    @property
    def priv(self) -> int:
        return self._get(_PRIV) & 0b11

    @priv.setter
    def priv(self, value: int) -> None:
        self._set(_PRIV, value)

    def csr(self, name: str) -> int:
        return self.uc.reg_read(CSR[name])

    def set_csr(self, name: str, value: int) -> None:
        self.uc.reg_write(CSR[name], value)

    @contextmanager
    def _at_machine_level(self) -> Iterator[None]:
        """Briefly run at PRIV 3, then restore the guest's privilege."""
        saved = self.uc.reg_read(rv.UC_RISCV_REG_PRIV)
        self.uc.reg_write(rv.UC_RISCV_REG_PRIV, PRIV_MACHINE)
        try:
            yield
        finally:
            self.uc.reg_write(rv.UC_RISCV_REG_PRIV, saved)

    def _m_csr_access(self) -> contextlib.AbstractContextManager[None]:
        """What an M-level CSR access needs: nothing on the patched engine, a brief
        PRIV 3 on the wheel (docs/engine.md, E2 and P4)."""
        return contextlib.nullcontext() if _CSRS_AT_ANY_PRIVILEGE else self._at_machine_level()

    def read_mcsr(self, name: str) -> int:
        with self._m_csr_access():
            return self.uc.reg_read(MCSR[name])

    def write_mcsr(self, name: str, value: int) -> None:
        with self._m_csr_access():
            self.uc.reg_write(MCSR[name], value)

    def update_mip(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Raise/lower pending interrupts; the CPU takes them architecturally
        (docs/engine.md, E3).
        This runs on every interrupt-line change: one access context for the read
        and the write, and direct engine calls."""
        if not _CSRS_AT_ANY_PRIVILEGE:  # the wheel: briefly PRIV 3 (docs/engine.md, E2)
            saved = self._get(_PRIV)
            self._set(_PRIV, PRIV_MACHINE)
            try:
                self._update_mip(set_bits, clear_bits)
            finally:
                self._set(_PRIV, saved)
        else:
            self._update_mip(set_bits, clear_bits)

    def _update_mip(self, set_bits: int, clear_bits: int) -> None:
        """The read-modify-write of mip, with the engine called directly."""
        lib, handle, value, ref = self._lib, self._handle, self._value, self._value_ref
        status = lib.uc_reg_read(handle, _MIP, ref)
        if status:
            raise uc_mod.UcError(status, _MIP)
        mip = value.value
        new = (mip | set_bits) & ~clear_bits
        if new != mip:
            value.value = new
            status = lib.uc_reg_write(handle, _MIP, ref)
            if status:
                raise uc_mod.UcError(status, _MIP)

    def interrupt_waiting(self) -> bool:
        """Whether wfi would wake now: some interrupt is both pending and enabled."""
        return bool(self.read_mcsr("mip") & self.csr("sie"))

    def native_trap_count(self, cause: int) -> int:
        """Exceptions of `cause` the engine delivered to S-mode itself."""
        return self._get(_REG_TRAPS + cause) if _NATIVE_FEATURES & NATIVE_TRAPS else 0

    def native_trap_repeats(self) -> int:
        """How many times in a row the engine saw the same fault; it hands the fault to
        the hook instead once this reaches the trap-loop limit."""
        return self._get(_REG_TRAP_REPEATS) if _NATIVE_FEATURES & NATIVE_TRAPS else 0

    def enable_native_timer(self) -> bool:
        """Let the engine answer SBI set_timer and raise STIP itself; False where it
        cannot (the wheel)."""
        if not _NATIVE_FEATURES & NATIVE_TIMER:
            return False
        self._set(_REG_TIMER_ENABLE, 1)
        return True

    def native_timer_deadline(self) -> int:
        """The deadline the guest last gave the engine's timer, in ticks (2^64 - 1:
        none)."""
        return self._get(_REG_TIMECMP)

    def native_timer_counts(self) -> tuple[int, int]:
        """(set_timer calls answered, timer interrupts raised) by the engine."""
        if not _NATIVE_FEATURES & NATIVE_TIMER:
            return 0, 0
        return self._get(_REG_TIMER_SETS), self._get(_REG_TIMER_FIRES)

    def read_instruction(self, address: int) -> int | None:
        """The instruction bits at `address` (16 or 32), or None if not fetchable."""
        low = self.read_virtual(address, 2, execute=True)
        if low is None:
            return None
        half = int.from_bytes(low, "little")
        if half & 0b11 != 0b11:
            return half
        high = self.read_virtual(address + 2, 2, execute=True)
        return None if high is None else half | int.from_bytes(high, "little") << 16

    def _remove_cache(self, first_page: int, end_page: int) -> None:
        """ctl_remove_cache over whole pages, called directly."""
        status = self._lib.uc_ctl(self._handle, _CTL_REMOVE_CACHE,
                                  ctypes.c_uint64(first_page << PAGE_SHIFT),
                                  ctypes.c_uint64(end_page << PAGE_SHIFT))
        if status:
            raise uc_mod.UcError(status)

    def on_exception(self, callback: Callable[[int], None]) -> None:
        """Call `callback(cause)` for every synchronous exception except ebreak; pc is
        already 4 past the faulting instruction (docs/engine.md, E1)."""
        def hook(_uc: Any, cause: int, _data: Any) -> None:
            callback(cause)
            self._forget_written_code()

        self.uc.hook_add(uc_mod.UC_HOOK_INTR, hook)

    def on_invalid_instruction(self, callback: Callable[[], bool]) -> None:
        """Call `callback()` for what Unicorn cannot translate (ebreak); pc is at the
        instruction. Returning True makes `run` end with `EngineStop.EXCEPTION`."""
        self.uc.hook_add(uc_mod.UC_HOOK_INSN_INVALID, lambda _uc, _data: callback())

    def register_dump(self) -> str:
        """All general registers and the S-mode trap CSRs, for a guest death report."""
        lines = [f"pc={self.pc:#018x} priv={self.priv}"]
        regs = [f"{name:>4}={self.x(i):#018x}" for i, name in enumerate(ABI_NAMES)]
        lines += ["  ".join(regs[i:i + 4]) for i in range(0, 32, 4)]
        lines.append("  ".join(f"{name}={self.csr(name):#x}" for name in CSR))
        return "\n".join(lines)

    def _invalidate_without_patch(self, pages: list[int]) -> None:
        """The wheel's invalidation, at PRIV 3 so that the engine reads the addresses
        as physical (E17). A run may bridge one unwritten page: a virtqueue's used ring
        spans three pages and a completion writes the first and the last, so this
        makes one call of two (each costs a few µs: a TLB fill and a page-collection
        lock in the engine)."""
        saved = self._get(_PRIV)
        self._set(_PRIV, PRIV_MACHINE)
        try:
            start = previous = pages[0]
            for page in pages[1:]:
                if page > previous + 2:
                    self._remove_cache(start, previous + 1)
                    start = page
                previous = page
            self._remove_cache(start, previous + 1)
        finally:
            self._set(_PRIV, saved)


def _native_features() -> int:
    """The patched engine's vmsim_features(), or 0 for a build without it."""
    from unicorn.unicorn_py3.unicorn import uclib

    try:
        features = uclib.vmsim_features
    except AttributeError:
        return 0
    features.argtypes = []
    features.restype = ctypes.c_uint
    return int(features())


def _vmem_functions() -> ctypes.PyDLL:
    """The loaded libunicorn, for the short calls the CPU thread makes from its hooks and
    callbacks (registers, code invalidation, guest-virtual reads, MMIO mapping), and the
    MMIO callback types the binding declares.

    It is the binding's own library opened a second time as a PyDLL: its calls keep the
    GIL. Each of them lasts a microsecond or less and never calls back into Python; a
    plain ctypes call would release the GIL and take it back, which costs more than the
    call, and lets any other Python thread that is ready (the core-split refresher, a
    pool thread) hold the CPU thread up for a whole switch interval in the middle of a
    device access. emu_start still goes through the binding, which releases the GIL."""
    global _MMIO_READ, _MMIO_WRITE
    from unicorn.unicorn_py3.unicorn import MMIO_READ_CFUNC, MMIO_WRITE_CFUNC, uclib

    _MMIO_READ, _MMIO_WRITE = MMIO_READ_CFUNC, MMIO_WRITE_CFUNC
    lib = ctypes.PyDLL(uclib._name)
    lib.uc_reg_read.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.uc_reg_read.restype = ctypes.c_int
    lib.uc_reg_write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.uc_reg_write.restype = ctypes.c_int
    lib.uc_reg_write_batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_int]
    lib.uc_reg_write_batch.restype = ctypes.c_int
    lib.uc_ctl.restype = ctypes.c_int
    lib.uc_mmio_map.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_void_p]
    lib.uc_mmio_map.restype = ctypes.c_int
    lib.uc_vmem_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                                 ctypes.c_void_p, ctypes.c_size_t]
    lib.uc_vmem_read.restype = ctypes.c_int
    lib.uc_vmem_translate.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                                      ctypes.POINTER(ctypes.c_uint64)]
    lib.uc_vmem_translate.restype = ctypes.c_int
    return lib
