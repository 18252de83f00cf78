"""The vocabulary boards are written in: register windows, rows of slots, RAM.

A board module declares one frozen value of these; the machine maps devices and builds
the device tree from it, so no address, size or interrupt number is written twice.
"""
from __future__ import annotations

from dataclasses import dataclass

PAGE = 0x1000


@dataclass(frozen=True)
class Window:
    """A device's registers: where they start, how far they extend (what the device tree
    says), and the interrupt controller input the device drives, if any."""

    base: int
    size: int
    irq: int | None = None

    @property
    def mapped_size(self) -> int:
        """The size to map: the engine maps whole pages only."""
        return -(-self.size // PAGE) * PAGE


@dataclass(frozen=True)
class SlotRow:
    """Identical windows one after another (virtio-mmio transports): slot i starts at
    base + i * stride and drives interrupt first_irq + i."""

    base: int
    stride: int
    size: int
    first_irq: int
    count: int

    def __getitem__(self, index: int) -> Window:
        if not 0 <= index < self.count:
            raise IndexError(f"slot {index} is not one of the board's {self.count}")
        return Window(self.base + self.stride * index, self.size, self.first_irq + index)

    def __len__(self) -> int:
        return self.count

    @property
    def span(self) -> Window:
        """The whole row as one window: slots closer than a page (arm64 `virt`'s are
        0x200 apart) can only be mapped together, the offset choosing the slot."""
        return Window(self.base, self.stride * self.count)


@dataclass(frozen=True)
class BootInfo:
    """What varies between boots of one board: RAM size, command line, initrd, and the
    populated slots."""

    ram_size: int
    bootargs: str
    initrd: tuple[int, int] | None = None       # (start, end) guest-physical
    virtio_slots: tuple[int, ...] = ()           # indexes into the board's slot row
