"""The arm64 `virt` machine: one Cortex-A72, a GICv2, a PL011, PSCI, the generic timer.

The run loop, the devices on their windows, the watchdog and the console are the
shared machine's (vmsim.core.machine). What is arm64's:

- Exceptions to EL1 never leave the engine (docs/engine.md, P14). What reaches the
  hook is an HVC, which is a PSCI call (vmsim.firmware.psci), an SMC (NOT_SUPPORTED),
  or a fault the guest repeated past the loop limit, which ends the run as a death.
- The engine keeps the timer registers and stops the run after each guest write to
  one (P15). After every run the machine reads the timers' deadline, arms the
  watchdog with it, and drives the two EL1 timer PPIs in the GIC as levels.
- The GIC's output drives the CPU's IRQ line through the engine (P16), always from
  the CPU thread.
"""
from __future__ import annotations

from typing import Any, Callable

from vmsim.boards.arm64_virt import Arm64VirtBoard, device_tree, timer_interrupt_id
from vmsim.boards.layout import Window
from vmsim.core.arm64_cpu import COUNTER_HZ, EXCP_HVC, EXCP_SMC, WFI, Arm64Cpu
from vmsim.core.arm64_decode import decode_memory_access
from vmsim.core.arm64_loader import boot_registers, load_arm64_boot
from vmsim.core.clock import NEVER
from vmsim.core.console import write_stdout
from vmsim.core.loader import BootLayout
from vmsim.core.machine import BaseMachine, MachineConfig, _MachineWaker
from vmsim.core.nativelib import NativeRegisterMirror
from vmsim.core.strict import locate_access
from vmsim.core.traps import guest_error
from vmsim.devices.bus import IrqLine, MmioDevice
from vmsim.devices.gic import Gicv2
from vmsim.devices.pl011 import Pl011
from vmsim.errors import VmsimError
from vmsim.firmware.psci import MASK64, NOT_SUPPORTED, psci_call


class Arm64Machine(BaseMachine):
    """One Cortex-A72 with RAM, a GICv2, a PL011, PSCI and virtio-mmio slots."""

    board: Arm64VirtBoard
    cpu: Arm64Cpu

    def __init__(self, config: MachineConfig,
                 output: Callable[[bytes], None] = write_stdout) -> None:
        self._fatal: VmsimError | None = None
        self._standby = False
        self._timer_writes = -1               # the count last synced: none yet
        super().__init__(config, output)

    def _make_cpu(self) -> Arm64Cpu:
        return Arm64Cpu()

    def _timebase_hz(self) -> int:
        return COUNTER_HZ

    def _platform_devices(self, waker: _MachineWaker) -> list[tuple[Window, MmioDevice]]:
        board = self.board
        self.gic = Gicv2(board.gic_interrupts, on_irq=self.cpu.set_irq)
        self._physical_timer = self.gic.line(timer_interrupt_id(board, "physical"))
        self._virtual_timer = self.gic.line(timer_interrupt_id(board, "virtual"))
        self.uart = Pl011(self.gic.spi(board.uart.irq or 0), self._console_output, waker)
        return [(board.gic_distributor, self.gic.distributor),
                (board.gic_cpu_interface, self.gic.cpu_interface), (board.uart, self.uart)]

    def _prepare_mirror(self, device: MmioDevice, mirror: NativeRegisterMirror) -> None:
        """The GIC's CPU interface may have GICC_IAR answered once (devices/gic.py):
        answering it drops the CPU's IRQ input."""
        if device is self.gic.cpu_interface:
            mirror.drops_line_with(*self.cpu.irq_line_dropper())

    def _slot_irq(self, slot: Window) -> IrqLine:
        return self.gic.spi(slot.irq or 0)

    def _install_firmware(self) -> None:
        self.cpu.on_exception(self._on_exception)

    def device_tree(self, initrd: tuple[int, int] | None) -> bytes:
        return self._write_dtb(device_tree(self.board, self._boot_info(initrd)))

    def load(self) -> BootLayout:
        """Put kernel, initrd and device tree in RAM; the CPU starts at the kernel with
        x0 = the device tree, at EL1 with its MMU off and interrupts masked."""
        self.layout = load_arm64_boot(self.ram, self.config.kernel, self.config.initrd,
                                      self.device_tree)
        for index, value in boot_registers(self.layout).items():
            self.cpu.set_x(index, value)
        self.cpu.pc = self.layout.kernel.entry
        return self.layout

    # -- the timer and interrupts ----------------------------------------------------

    def _service(self) -> None:
        self._sync_timer()
        super()._service()

    def _sync_timer(self) -> None:
        """After a run: if the guest wrote a timer register (the engine stops the run
        after each write), re-read the deadline and the outputs. Without a write they
        change only when the deadline passes, which `_raise_due` watches; the check
        costs one register read instead of three on every return of the engine."""
        writes = self.cpu.timer_writes()
        if writes == self._timer_writes:
            return
        self._timer_writes = writes
        deadline = self.cpu.timer_deadline()
        if deadline != self.timer.deadline:
            self.timer.set(deadline)
        self._drive_timer_lines()

    def _drive_timer_lines(self) -> None:
        physical, virtual = self.cpu.timer_outputs()
        self._physical_timer.set_level(physical)
        self._virtual_timer.set_level(virtual)
        self.timer.fired = physical or virtual or self.timer.deadline == NEVER

    def _raise_due(self) -> None:
        if not self.timer.fired and self.timer.due():
            self._drive_timer_lines()

    def _interrupt_waiting(self) -> bool:
        return self.cpu.irq_raised

    def _after_wfi(self) -> bool:
        if self._standby:
            self._standby = False
            return True
        if self.cpu.timer_writes() != self._timer_writes:
            return False        # the run ended on a timer register write (P15), most do
        return self.cpu.read_instruction(self.cpu.pc - 4) == WFI

    # -- exceptions the engine leaves to the host ------------------------------------

    def _on_exception(self, index: int) -> None:
        cpu = self.cpu
        if index == EXCP_HVC:
            result = psci_call(cpu.x(0), (cpu.x(1), cpu.x(2), cpu.x(3)))
            cpu.set_x(0, result.x0)
            if result.power is not None:
                if result.power.kind == "reset":
                    self._note("the guest asked for a reset; vmsim stops instead")
                self._finish(0)
                cpu.stop()
            elif result.standby:
                self._standby = True
                cpu.stop()
        elif index == EXCP_SMC:
            cpu.set_x(0, NOT_SUPPORTED & MASK64)
        else:
            self._fatal = guest_error(
                f"guest died: exception {index} at pc {cpu.pc:#x} repeated "
                f"{cpu.native_trap_repeats()} times without progress", cpu)
            cpu.stop()

    def _fatal_trap(self) -> VmsimError | None:
        return self._fatal

    def _locate_access(self, access: Any) -> int:
        """--strict: the load or store in the running block that made `access`."""
        return locate_access(self.cpu, access, decode_memory_access, lambda _insn: 4)

    def _access_address(self, pc: int) -> int | None:
        """The engine keeps the address of the unmapped access that ended the run."""
        return self.cpu.unmapped_address()

    # -- host input --------------------------------------------------------------------

    def push_input(self, data: bytes) -> None:
        """Host keyboard input (any thread), to the PL011."""
        self.uart.push_input(data)
