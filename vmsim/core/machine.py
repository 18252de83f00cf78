"""The machine: RAM, the CPU, the devices on their addresses, and the run loop.

    loop:
      poll devices; raise the timer interrupt if its deadline passed  (CPU thread only)
      run the engine until wfi, a stop request, or a guest error
      on wfi: sleep on the host until the deadline or a device wakes us

`BaseMachine` is that loop and what every board shares; `Machine` is the riscv64 board
(PLIC, 16550, SBI firmware) and `vmsim.core.arm64_machine.Arm64Machine` the arm64 one;
`create_machine` picks by the board in the config.

Nothing Python runs per instruction or per block (docs/engine.md, E6 and E13): the
engine calls back only for traps, MMIO accesses and firmware calls, and every one of
those raises what is due before returning. Other threads (the deadline watchdog, device
helpers, stdin) never touch the engine: they ask the watchdog for the CPU thread's
attention, which stops the engine safely through `vmsim.core.preempt`. Devices that wait on
file descriptors (the crypto worker pool's result pipes) name them instead, and a native
thread without the GIL stops the engine the moment one is readable (vmsim.core.nativelib).
"""
from __future__ import annotations

import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from vmsim.devices.bus import HostResources, IrqLine, Mirrored, MmioDevice, Pollable
from vmsim.devices.events import TraceSink, discard
from vmsim.devices.memory import Ram
from vmsim.devices.model import SlotContext
from vmsim.devices.plic import Plic
from vmsim.devices.power import PowerControl, PowerRequest
from vmsim.devices.uart import Uart16550
from vmsim.firmware.boot import DELEGATED_EXCEPTIONS, boot_hart
from vmsim.firmware.sbi import RESET_REASON_NONE, SbiFirmware
from vmsim.boards.layout import BootInfo, Window
from vmsim.boards.riscv64_virt import BOARD, RiscvVirtBoard, device_tree
from vmsim.core.affinity import CoreSplit
from vmsim.core.clock import GuestClock, SbiTimer, Watchdog
from vmsim.core.console import PanicDetector, quit_on_signals, write_stdout
from vmsim.core.cpu import PAGE_SHIFT, SEIP, SSIP, STIP, Cpu, EngineStop
from vmsim.core.decode import WFI, decode_memory_access
from vmsim.errors import ConsoleOutputError, GuestError, VmsimError, check_text
from vmsim.core.loader import BootLayout, load_boot, write_file
from vmsim.core.nativelib import FdWatch, NativeRegisterMirror
from vmsim.core.preempt import make_stopper
from vmsim.core.strict import StrictReport, locate_access
from vmsim.core.traps import TrapHandler, guest_error
from vmsim.core.wakeup import WakePipe

DEFAULT_MEMORY = 256 << 20
DEFAULT_APPEND = "console=ttyS0"
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE     # what a Unix tool killed by SIGPIPE reports


DeviceFactory = Callable[[SlotContext], MmioDevice]


@dataclass
class MachineConfig:
    kernel: Path
    initrd: Path | None = None
    append: str = DEFAULT_APPEND
    memory: int = DEFAULT_MEMORY
    dtb_out: Path | None = None
    virtio: Sequence[DeviceFactory] = field(default_factory=list)
    board: Any = BOARD                    # a board of vmsim.boards (RiscvVirtBoard by default)
    trace: TraceSink = discard            # where devices send their trace events
    strict: bool = False                  # check the drivers' virtio rules (docs/strict.md)


def _size_text(size: int) -> str:
    """Bytes as the user wrote them for --mem: 16G, 256M, or plain bytes."""
    for shift, unit in ((30, "G"), (20, "M"), (10, "K")):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size} bytes"


def _allocate_ram(base: int, size: int) -> Ram:
    """Guest RAM, or one line naming the size when the host refuses it (an address-space
    limit, no overcommit): mmap reports that as ENOMEM, with nothing about why."""
    try:
        return Ram(base, size)
    except (OSError, MemoryError) as error:
        reason = getattr(error, "strerror", None) or "out of memory"
        raise VmsimError(f"the host refused {_size_text(size)} of memory for guest RAM "
                         f"({reason}); ask for less with --mem") from None


class _MachineWaker:
    """The Waker handed to devices: any thread may call it."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake


class _WatchingWaker(_MachineWaker):
    """A slot's Waker when the machine has the native fd watcher (an FdWaker): the
    device may also name file descriptors whose readability means `poll()` has work."""

    def __init__(self, wake: Callable[[], None], watch: Callable[[object, Sequence[int]], None]) -> None:
        super().__init__(wake)
        self._watch = watch

    def watch(self, fds: Sequence[int]) -> None:
        self._watch(self, fds)


class BaseMachine:
    """What every board's machine shares: RAM, the CPU on its engine, the devices on
    their windows, the run loop, the deadline watchdog and the console. A subclass
    brings its architecture: the CPU, the interrupt controller and console, the
    firmware, the loader, and how interrupts and the timer reach the CPU."""

    def __init__(self, config: MachineConfig,
                 output: Callable[[bytes], None] = write_stdout) -> None:
        self.config = config
        self._output = output
        self._output_broken = False
        self.exit_status: int | None = None
        # Why the run must end in an error: the guest died (GuestError), or the host
        # can no longer take its console output (ConsoleOutputError).
        self._death: VmsimError | None = None
        self._quit_status: int | None = None
        # A debugger (vmsim.gdb) the CLI attached: the run loop hands it the CPU thread
        # whenever it asks to halt, so it runs commands with the engine stopped.
        self.debugger: Debugger | None = None

        board = self.board = config.board
        check_text(config.append, "the kernel command line")  # it goes into the DTB as UTF-8
        if len(config.virtio) > len(board.virtio):
            raise VmsimError(f"{len(config.virtio)} virtio devices asked for; the {board.name} "
                             f"board has {len(board.virtio)} slots")
        self.ram = _allocate_ram(board.ram_base, config.memory)
        self.cpu = self._make_cpu()
        self.cpu.map_ram(self.ram.base, self.ram.size, self.ram.host_address)
        self.ram.track_written_pages(self.cpu.written_pages, PAGE_SHIFT)
        self._stopper = make_stopper(self.cpu.uc)

        self.clock = GuestClock(self._timebase_hz())
        self.timer = SbiTimer(self.clock)
        self._idle = WakePipe()
        self._running = False
        self.watchdog = Watchdog(self.timer, self._get_attention)
        self.timer.on_change = self.watchdog.deadline_changed
        waker = _MachineWaker(self.watchdog.wake)
        self._fd_watch = self._start_fd_watch()
        self._watched: dict[object, tuple[int, ...]] = {}

        self._panic = PanicDetector(self._on_panic)
        self._devices: list[tuple[Window, MmioDevice]] = self._platform_devices(waker)
        self.virtio: list[MmioDevice] = []
        # --strict: the slots' checkers report here; the pc is exact only between blocks.
        self.strict = (StrictReport(self._access_pc, self._note, config.trace)
                       if config.strict else None)
        for index, factory in enumerate(config.virtio):
            slot = board.virtio[index]
            slot_waker = (waker if self._fd_watch is None
                          else _WatchingWaker(self.watchdog.wake, self._watch_fds))
            device = factory(SlotContext(self.ram, self._slot_irq(slot), slot_waker,
                                         config.trace, strict=self.strict))
            self._devices.append((slot, device))
            self.virtio.append(device)
        for window, device in self._devices:
            self._map(window, device)
        self._pollables = [d for _, d in self._devices if isinstance(d, Pollable)]

        self._started: list[HostResources] = []
        try:
            for _, device in self._devices:
                if isinstance(device, HostResources):
                    device.start()
                    self._started.append(device)
        except BaseException:
            self.close()
            raise
        self._install_firmware()
        self.layout: BootLayout | None = None

    # -- what a board's machine provides -----------------------------------------------

    def _make_cpu(self) -> Any:
        raise NotImplementedError

    def _timebase_hz(self) -> int:
        raise NotImplementedError

    def _platform_devices(self, waker: _MachineWaker) -> list[tuple[Window, MmioDevice]]:
        """The board's own devices (interrupt controller, console, ...) on their windows."""
        raise NotImplementedError

    def _slot_irq(self, slot: Window) -> IrqLine:
        raise NotImplementedError

    def _install_firmware(self) -> None:
        raise NotImplementedError

    def device_tree(self, initrd: tuple[int, int] | None) -> bytes:
        raise NotImplementedError

    def load(self) -> BootLayout:
        raise NotImplementedError

    def _raise_due(self) -> None:
        """Raise the timer interrupt once its deadline has passed; called at every
        hook and callback entry."""
        raise NotImplementedError

    def _after_wfi(self) -> bool:
        """Whether the run just ended on the guest's wait-for-interrupt."""
        raise NotImplementedError

    def _interrupt_waiting(self) -> bool:
        raise NotImplementedError

    def _fatal_trap(self) -> VmsimError | None:
        """A guest death the exception path found during the run, if any."""
        return None

    def push_input(self, data: bytes) -> None:
        raise NotImplementedError

    def _write_dtb(self, blob: bytes) -> bytes:
        if self.config.dtb_out is not None:
            write_file(self.config.dtb_out, blob, "the device tree")
        return blob

    def _boot_info(self, initrd: tuple[int, int] | None) -> BootInfo:
        return BootInfo(ram_size=self.ram.size, bootargs=self.config.append, initrd=initrd,
                        virtio_slots=tuple(range(len(self.virtio))))

    # -- setup -----------------------------------------------------------------------

    def _map(self, window: Window, device: MmioDevice) -> None:
        """The device on its window; after each access the timer check (`_raise_due`).
        The accesses a Mirrored device lets its register mirror handle do not call it,
        unless --strict must see every access."""
        read, write = device.read, device.write
        mirrored: tuple[int, ...] = ()
        posted: tuple[int, ...] = ()
        if self.strict is not None and device in self.virtio:
            read, write = self.strict.noting(window.base, read, write)
        elif isinstance(device, Mirrored):
            mirrored, posted = device.mirrored_registers, device.posted_registers
        mirror = self.cpu.map_mmio(window.base, window.mapped_size, read, write,
                                   self._raise_due, mirrored, posted)
        if mirror is not None:
            self._prepare_mirror(device, mirror)
            device.attach_mirror(mirror)

    def _prepare_mirror(self, device: MmioDevice, mirror: NativeRegisterMirror) -> None:
        """What this machine adds to a device's register mirror before the device has
        it: nothing here (the arm64 machine lets the GIC's drop the CPU's IRQ line)."""

    # -- running -----------------------------------------------------------------------

    def run(self) -> int:
        """Boot (if not loaded yet) and run until the guest powers off; return its exit
        status. Raises GuestError if the guest dies, ConsoleOutputError if its console
        output cannot be written (a broken pipe instead ends the run with status 141)."""
        if self.layout is None:
            self.load()
        cores = CoreSplit()
        cores.apply()
        try:
            with quit_on_signals(self._on_signal):
                while self.exit_status is None:
                    self._service()
                    if self.exit_status is not None:
                        break
                    if self.debugger is not None and self.debugger.halt_requested():
                        self.watchdog.acknowledge()
                        self.debugger.serve()
                        continue
                    self._running = True
                    reason = None if self.watchdog.pending else self.cpu.run(self.cpu.pc)
                    self._running = False
                    self.watchdog.acknowledge()
                    if reason is not None:
                        self._after_run(reason)
        finally:
            cores.release()
        return self.exit_status

    def _service(self) -> None:
        """CPU thread, engine stopped: take in what other threads signalled."""
        self._idle.clear()
        if self._fd_watch is not None:
            self._fd_watch.rearm()            # before the devices read their fds
        if self._quit_status is not None:
            self._finish(self._quit_status)
        for device in self._pollables:
            device.poll()
        self._raise_due()
        if self._death is not None:
            raise self._death

    def _after_run(self, reason: EngineStop) -> None:
        fatal = self._fatal_trap()
        if fatal is not None:
            raise fatal
        if self._death is not None:
            raise self._death
        if reason is EngineStop.OK:
            if self.debugger is not None and self.debugger.halt_requested():
                return                            # a breakpoint or watchpoint: not a wfi
            if self.exit_status is None and self._after_wfi():
                self._wait_for_interrupt()
        elif reason is EngineStop.EXCEPTION:
            pass                                  # ebreak delivered; go on at stvec
        else:
            raise self._engine_failure(reason)

    def _access_pc(self) -> int:
        """The pc of the guest's MMIO access in progress (or of the stopped guest), for
        --strict findings: inside a callback the engine's pc is its block's start."""
        return self._locate_access(self.strict.access if self.strict else None)

    def _locate_access(self, access: Any) -> int:
        """The pc of the instruction making `access`; the block's start where the
        machine cannot decode its instructions."""
        return self.cpu.pc

    def _wait_for_interrupt(self) -> None:
        """wfi: sleep on the host until an interrupt could be pending (docs/engine.md, E5)."""
        self._raise_due()
        if self._interrupt_waiting() or self.watchdog.pending:
            return
        self._idle.wait(self.timer.seconds_left())

    def _engine_failure(self, reason: EngineStop) -> GuestError:
        pc = self.cpu.pc
        where = f"at pc {pc:#x}"
        if reason is EngineStop.FETCH_UNMAPPED:
            where = f"at pc {pc:#x} (address {pc:#x})"
        elif reason in (EngineStop.READ_UNMAPPED, EngineStop.WRITE_UNMAPPED):
            address = self._access_address(pc)
            if address is not None:
                where += f" (address {address:#x})"
        detail = reason.value if reason is not EngineStop.OTHER_ERROR else self.cpu.last_error
        return guest_error(f"guest died: {detail} {where}", self.cpu)

    def _access_address(self, pc: int) -> int | None:
        """The address the load or store at `pc` used, where the machine can decode it."""
        return None

    # -- native fd watching ----------------------------------------------------------------

    def _start_fd_watch(self) -> FdWatch | None:
        """The native watcher, or None where the helper library cannot be built (then
        devices collect on their own threads and call wake())."""
        try:
            return FdWatch(self._stopper.native_stop(), self._idle.fd)
        except (VmsimError, OSError):
            return None

    def _watch_fds(self, owner: object, fds: Sequence[int]) -> None:
        """A device's fds changed (any thread): watch the union over all devices."""
        self._watched[owner] = tuple(fds)
        if self._fd_watch is not None:
            self._fd_watch.set_fds([fd for group in self._watched.values() for fd in group])

    def _get_attention(self) -> None:
        """Watchdog thread: end the current run or the idle wait, whichever is happening."""
        self._idle.set()
        if self._running:
            self._stopper.request()

    # -- console, power and host input -------------------------------------------------

    def _console_output(self, data: bytes) -> None:
        """From the UART's MMIO write or an SBI ecall: an exception here would unwind
        through emu_start, so a failed write stops the machine instead."""
        if not self._output_broken:
            try:
                self._output(data)
            except (OSError, ValueError) as error:
                self._on_output_failure(error)
        self._panic.feed(data)

    def _on_output_failure(self, error: OSError | ValueError) -> None:
        """Stop safely (as for a power request): a reader that went away ends the run
        quietly with a broken pipe's status; anything else (a full disk, a terminal
        that vanished) is an error, so no output is lost without a word."""
        self._output_broken = True
        if isinstance(error, BrokenPipeError):
            self._finish(EXIT_BROKEN_PIPE)
        else:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            self._death = ConsoleOutputError(f"cannot write the guest's console output: {reason}")
        self._stopper.request()

    def _on_panic(self, line: str) -> None:
        self._death = guest_error(f"guest died: {line}", self.cpu)
        self._stopper.request()

    def _on_power_request(self, request: PowerRequest) -> None:
        """From the power device's MMIO write: stop through the stopper, which lands at a
        block boundary, never with a direct emu_stop (docs/engine.md, E9)."""
        if request.kind == "reset":
            self._note("the guest asked for a reset; vmsim stops instead")
        self._finish(request.code if request.kind == "fail" else 0)
        self._stopper.request()

    def _finish(self, status: int) -> None:
        if self.exit_status is None:
            self.exit_status = status

    @staticmethod
    def _note(text: str) -> None:
        if sys.stderr is None:
            return
        try:
            print(f"\r\nvmsim: {text}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass                        # no stderr left to tell; the run goes on

    def request_stop(self) -> None:
        """Any thread: end the current engine run at the next safe point; the run loop
        services devices and resumes. (Preemption stress tests storm this.)"""
        self._stopper.request()

    @property
    def quitting(self) -> bool:
        """Whether a quit was requested (a debugger's wait for commands ends on it)."""
        return self._quit_status is not None or self.exit_status is not None

    def request_quit(self, status: int = 0) -> None:
        """Any thread (Ctrl-C, Ctrl-A x): stop the machine soon with `status`."""
        self._quit_status = status
        self.watchdog.wake()

    def _on_signal(self, signum: int) -> None:
        """SIGINT, SIGTERM or SIGHUP (from the signal thread): quit with 128 + signum."""
        self.request_quit(128 + signum)

    # -- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop helper threads and every device's host resources (worker processes);
        idempotent."""
        if self._fd_watch is not None:
            self._fd_watch.close()            # it calls the stopper and writes _idle
        self.watchdog.close()
        self._stopper.close()
        while self._started:
            self._started.pop().close()
        self._idle.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Machine(BaseMachine):
    """One riscv64 hart with RAM, PLIC, UART, power control and virtio-mmio slots."""

    board: RiscvVirtBoard
    cpu: Cpu

    def __init__(self, config: MachineConfig,
                 output: Callable[[bytes], None] = write_stdout) -> None:
        self._sbi_input: deque[int] = deque(maxlen=4096)
        self._input_to_sbi = "console=hvc" in config.append
        super().__init__(config, output)

    def _make_cpu(self) -> Cpu:
        return Cpu()

    def _timebase_hz(self) -> int:
        return self.board.timebase_hz

    def _platform_devices(self, waker: _MachineWaker) -> list[tuple[Window, MmioDevice]]:
        board = self.board
        self.plic = Plic(board.plic_sources, board.plic_contexts, self._on_plic_output)
        self.uart = Uart16550(self.plic.line(board.uart.irq), self._console_output, waker)
        self.power = PowerControl(self._on_power_request)
        return [(board.plic, self.plic), (board.uart, self.uart), (board.power, self.power)]

    def _slot_irq(self, slot: Window) -> IrqLine:
        return self.plic.line(slot.irq)

    def _install_firmware(self) -> None:
        self.firmware = SbiFirmware(_FirmwarePlatform(self))
        self.traps = TrapHandler(self.cpu, self.firmware, self.clock, self._raise_due,
                                 self.cpu.stop, DELEGATED_EXCEPTIONS)
        self.traps.install()

    def _fatal_trap(self) -> VmsimError | None:
        return self.traps.fatal

    def device_tree(self, initrd: tuple[int, int] | None) -> bytes:
        return self._write_dtb(device_tree(self.board, self._boot_info(initrd)))

    def load(self) -> BootLayout:
        """Put kernel, initrd and device tree in RAM and point the hart at the kernel."""
        self.layout = load_boot(self.ram, self.config.kernel, self.config.initrd,
                                self.device_tree)
        boot_hart(self.cpu, self.layout.kernel.entry, self.layout.dtb_addr)
        return self.layout

    def _after_wfi(self) -> bool:
        pc = self.cpu.pc
        return self.cpu.read_instruction(pc - 4) == WFI

    def _interrupt_waiting(self) -> bool:
        return self.cpu.interrupt_waiting()

    def _locate_access(self, access: Any) -> int:
        return locate_access(self.cpu, access)

    def _access_address(self, pc: int) -> int | None:
        insn = self.cpu.read_instruction(pc)
        access = decode_memory_access(insn) if insn is not None else None
        return None if access is None else access.address(self.cpu.x(access.base))

    # -- interrupts ----------------------------------------------------------------------

    def _raise_due(self) -> None:
        """Raise STIP once the SBI deadline has passed. Called at every hook entry."""
        if not self.timer.fired and self.timer.due():
            self.timer.fired = True
            self.cpu.update_mip(set_bits=STIP)

    def set_timer(self, deadline: int) -> None:
        self.timer.set(deadline)
        if self.timer.due():
            self.timer.fired = True
            self.cpu.update_mip(set_bits=STIP)
        else:
            self.cpu.update_mip(clear_bits=STIP)

    def set_software_interrupt(self, pending: bool) -> None:
        self.cpu.update_mip(set_bits=SSIP if pending else 0, clear_bits=0 if pending else SSIP)

    def _on_plic_output(self, context: int, level: bool) -> None:
        if context == self.board.plic_s_mode_context:
            self.cpu.update_mip(set_bits=SEIP if level else 0, clear_bits=0 if level else SEIP)

    # -- SBI console and reset ------------------------------------------------------------

    def system_reset(self, kind: str, reason: int) -> None:
        """SBI SRST, from inside the ecall hook, where a direct stop is safe."""
        if kind != "shutdown":
            self._note(f"the guest asked for a {kind.replace('_', ' ')}; vmsim stops instead")
        self._finish(0 if kind != "shutdown" or reason == RESET_REASON_NONE else 1)
        self.cpu.stop()

    def push_input(self, data: bytes) -> None:
        """Host keyboard input (any thread): to the UART, or to SBI getchar for hvc0."""
        if self._input_to_sbi:
            self._sbi_input.extend(data)
            self.watchdog.wake()
        else:
            self.uart.push_input(data)

    def read_sbi_input(self) -> int:
        return self._sbi_input.popleft() if self._sbi_input else -1


def create_machine(config: MachineConfig,
                   output: Callable[[bytes], None] = write_stdout) -> BaseMachine:
    """The machine of the board `config` names."""
    if isinstance(config.board, RiscvVirtBoard):
        return Machine(config, output)
    from vmsim.core.arm64_machine import Arm64Machine

    return Arm64Machine(config, output)


class Debugger(Protocol):
    """What the run loop asks of an attached debugger (vmsim.gdb.stub.GdbStub)."""

    def halt_requested(self) -> bool:
        """Whether the guest must stand still before it runs again."""
        ...

    def serve(self) -> None:
        """CPU thread, engine stopped: take commands until the guest may run again."""
        ...


class _FirmwarePlatform:
    """The SbiPlatform the firmware sees: thin forwarding to the machine."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self.memory = machine.ram

    def console_write(self, data: bytes) -> None:
        self._machine._console_output(data)

    def console_read(self) -> int:
        return self._machine.read_sbi_input()

    def set_timer(self, deadline: int) -> None:
        self._machine.set_timer(deadline)

    def set_software_interrupt(self, pending: bool) -> None:
        self._machine.set_software_interrupt(pending)

    def flush_tlb(self) -> None:
        self._machine.cpu.flush_tlb()

    def flush_code(self) -> None:
        self._machine.cpu.flush_code()

    def system_reset(self, kind: str, reason: int) -> None:
        self._machine.system_reset(kind, reason)
