"""The small contracts between devices and the machine.

Devices depend on these protocols only, so a unit test can drive any device over a
plain bytearray with a recording interrupt line, and the machine can wire the same
device to the CPU engine without the device knowing.
"""
from __future__ import annotations

import functools
import struct
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable


class GuestMemoryError(Exception):
    """A guest-physical range that is not entirely inside RAM."""

    def __init__(self, addr: int, size: int) -> None:
        super().__init__(f"guest range {addr:#x}+{size:#x} is outside RAM")
        self.addr = addr
        self.size = size


class GuestMemory(Protocol):
    """Guest-physical RAM as a device sees it (DMA).

    Only RAM is reachable: a range touching MMIO or unmapped space raises
    GuestMemoryError, so a device can never re-enter itself through DMA.
    """

    def contains(self, addr: int, size: int) -> bool:
        """Whether [addr, addr+size) is all RAM; lets a device validate a buffer once
        without copying it."""
        ...

    def read(self, addr: int, size: int) -> bytes: ...

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...

    def unpack_from(self, layout: struct.Struct, addr: int) -> tuple[Any, ...]:
        """Decode the `layout.size`-byte record at `addr` (a descriptor, a ring index)
        straight from RAM: the same check as `read`, without an intermediate copy."""
        ...

    def gather(self, ranges: Sequence[tuple[int, int]]) -> bytes:
        """The bytes of every (addr, length) range, concatenated (a chain's scattered
        buffers in one call)."""
        ...

    def scatter(self, ranges: Sequence[tuple[int, int]],
                data: bytes | bytearray | memoryview) -> None:
        """Write `data` across the (addr, length) ranges in order; their lengths add up
        to len(data)."""
        ...

    def previews(self, ranges: Iterable[tuple[int, int]], cap: int) -> tuple[bytes, ...]:
        """The first `cap` bytes of each (addr, length) range (b"" for one not all in
        RAM), for trace events: one call for all of a chain's buffers."""
        ...


class IrqLine(Protocol):
    """A level-triggered interrupt input of the interrupt controller."""

    def set_level(self, level: bool) -> None: ...


class ControllerInput:
    """The IrqLine a device holds for one input of an interrupt controller (a PLIC
    source, a GIC PPI or SPI): it passes the level on with the input's number.

    `set_level` is a partial of the controller's, not a method: a virtio request raises
    and lowers its line once each, and a Python frame between the device and the
    controller cost about a microsecond each time, right after the guest had run."""

    __slots__ = ("set_level",)

    def __init__(self, set_level: Callable[[int, bool], None], number: int) -> None:
        self.set_level: Callable[[bool], None] = functools.partial(set_level, number)


class Waker(Protocol):
    """Lets a device's helper thread tell the machine that work is ready.

    `wake()` is the only call that may come from a foreign thread. The machine answers
    by calling the device's `poll()` on the CPU thread soon after, even if the guest is
    spinning without trapping.
    """

    def wake(self) -> None: ...


@runtime_checkable
class FdWaker(Waker, Protocol):
    """A Waker that can watch file descriptors without a thread of the device's own.

    Whenever one of the named fds is readable the machine stops the CPU and calls the
    device's `poll()`, which must then read it (or the machine stops again). A device
    whose helper would only sit waiting on fds (a worker pool's result pipes) names
    them instead: the answer then reaches the guest with no Python thread, and no GIL,
    in the way.
    """

    def watch(self, fds: Sequence[int]) -> None:
        """Watch exactly these from now on (replaces the device's previous set)."""


@runtime_checkable
class MmioDevice(Protocol):
    """A register window. Offsets are relative to the window's base.

    A device must not raise on any offset or size: an unknown register reads as 0 and
    ignores writes.
    """

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class RegisterMirror(Protocol):
    """Where a device says which register accesses the machine may handle without
    calling it (after the guest has run, a call into Python is the slow part of a
    register access).

    - `publish(offset, value)`: `offset` reads as `value` (4 bytes) until published
      again; only for a register whose read changes nothing, and only while `read`
      would return exactly that. None: the device answers the reads again.
    - `offer(offset, value)`: a 4-byte write of exactly `value` to `offset` may be
      taken now and applied later, because nothing the guest can see changes until the
      device is next called. None withdraws the offer. A taken write withdraws it too.
    - `take_posted(offset)`: the value of the write taken since the last call, or None;
      the device calls this first whenever it is called, and applies the write.
    - `publish_once(offset, value)`: the next 4-byte read of `offset` may be answered
      `value` and have its effect applied later, because nothing the guest can see
      changes until the device is next called except the device's output line, which
      the read drops: the machine drops it as it answers (GICC_IAR of the one
      signalled interrupt, acknowledged, drops the CPU's IRQ line). A mirror that
      cannot drop the line hands the read to the device instead.
    - `taken_once(offset)`: whether that read was answered since the last call; the
      device calls this first whenever it is called, and applies the read."""

    def publish(self, offset: int, value: int | None) -> None: ...

    def offer(self, offset: int, value: int | None) -> None: ...

    def take_posted(self, offset: int) -> int | None: ...

    def publish_once(self, offset: int, value: int) -> None: ...

    def taken_once(self, offset: int) -> bool: ...


@runtime_checkable
class Mirrored(Protocol):
    """A device some of whose register accesses a RegisterMirror may handle:
    `mirrored_registers` may be published (reads), `posted_registers` offered
    (writes); 4-byte registers, by offset. `attach_mirror` hands over the mirror; the
    device then publishes and offers at once and on every change."""

    mirrored_registers: tuple[int, ...]
    posted_registers: tuple[int, ...]

    def attach_mirror(self, mirror: RegisterMirror) -> None: ...


class MirrorRecorder:
    """A RegisterMirror that keeps what was published and offered; `read` and `write`
    stand in for the guest's accesses as the machine would handle them, and
    `drop_line`, if given, for the line a read answered once drops. Used by unit tests."""

    def __init__(self, drop_line: Callable[[], None] | None = None) -> None:
        self.values: dict[int, int] = {}
        self.once: dict[int, int] = {}
        self.offers: dict[int, int] = {}
        self.posted: dict[int, int] = {}
        self.read_once: set[int] = set()
        self._drop_line = drop_line

    def publish(self, offset: int, value: int | None) -> None:
        self.once.pop(offset, None)
        self._set(self.values, offset, value)

    def publish_once(self, offset: int, value: int) -> None:
        self.values.pop(offset, None)
        self._set(self.once, offset, value if self._drop_line is not None else None)

    def offer(self, offset: int, value: int | None) -> None:
        self._set(self.offers, offset, value)

    def take_posted(self, offset: int) -> int | None:
        return self.posted.pop(offset, None)

    def taken_once(self, offset: int) -> bool:
        if offset not in self.read_once:
            return False
        self.read_once.discard(offset)
        return True

    def read(self, offset: int) -> int | None:
        """The answer if the mirror gives it (None: the device is called), as the
        machine's mirror would."""
        if offset in self.values:
            return self.values[offset]
        if offset not in self.once:
            return None
        self.read_once.add(offset)
        assert self._drop_line is not None
        self._drop_line()
        return self.once.pop(offset)

    def write(self, offset: int, value: int) -> bool:
        """Take the write if it is offered (True), as the machine's mirror would."""
        if self.offers.get(offset) != value:
            return False
        del self.offers[offset]
        self.posted[offset] = value
        return True

    @staticmethod
    def _set(table: dict[int, int], offset: int, value: int | None) -> None:
        if value is None:
            table.pop(offset, None)
        else:
            table[offset] = value


@runtime_checkable
class Pollable(Protocol):
    """A device with asynchronous work (worker completions, host input)."""

    def poll(self) -> None:
        """Finish ready work on the CPU thread: write guest memory, raise interrupts."""
        ...


@runtime_checkable
class HostResources(Protocol):
    """A device that holds host resources (processes, threads, files). The machine
    starts it once it is built and closes it when it shuts down; neither happens in
    the device's constructor or on import."""

    def start(self) -> None: ...

    def close(self) -> None: ...


class NullWaker:
    """For tests and devices that are polled synchronously."""

    def wake(self) -> None:
        pass


class LevelRecorder:
    """An IrqLine that remembers its level and every change; used by unit tests."""

    def __init__(self) -> None:
        self.level = False
        self.history: list[bool] = []

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.history.append(level)
        self.level = level
