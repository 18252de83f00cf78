"""Device models: what `-device NAME,key=value,...` names, and how a model plugs in.

A model is a named recipe: typed options with defaults, and `create`, which builds the
device for one slot of the machine from a `SlotContext` (guest memory, an interrupt
line, a waker, a trace sink). Models are found by name through the `vmsim.devices`
entry-point group (vmsim.devices.registry), so a separate package can ship one; the
machine never needs to know which devices exist. docs/devices.md walks through writing
one.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from vmsim.devices.bus import GuestMemory, IrqLine, MmioDevice, Waker
from vmsim.devices.events import TraceSink, discard

_TRUE = frozenset({"on", "yes", "true", "1"})
_FALSE = frozenset({"off", "no", "false", "0"})


def _as_text(value: object) -> str:
    """A Python value as a command line would spell it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class OptionError(ValueError):
    """An option value or name the model does not accept; the message is one line."""


@dataclass(frozen=True)
class SlotContext:
    """What a device gets from the machine for its slot."""

    memory: GuestMemory
    irq: IrqLine
    waker: Waker
    trace: TraceSink = discard
    # `--strict`: where a device's transport reports the rules its driver broke
    # (vmsim.devices.virtio.strict); None keeps the device free of any checking.
    strict: Callable[[Any], None] | None = None
    faults: Any = None          # a fault plan (`--fault` rules) for the devices that take one


@dataclass(frozen=True)
class Option:
    """One typed option of a model. `kind` is int, bool or str; bools read as QEMU's
    on/off (also yes/no, true/false, 1/0); `default` None means "let the device decide"
    (shown as `auto`)."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    def parse(self, text: str) -> Any:
        """The value of `name=text`, checked; OptionError says why not."""
        if self.kind is bool:
            word = text.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise OptionError(f"{self.name}={text!r}: use on or off")
        if self.kind is int:
            try:
                value = int(text, 0)
            except ValueError:
                raise OptionError(f"{self.name}={text!r} is not a whole number") from None
            if self.minimum is not None and value < self.minimum or \
                    self.maximum is not None and value > self.maximum:
                raise OptionError(f"{self.name}={value} is out of range "
                                  f"({self.minimum} to {self.maximum})")
            return value
        if self.choices and text not in self.choices:
            raise OptionError(f"{self.name}={text!r}: use one of {', '.join(self.choices)}")
        return text

    def describe(self) -> str:
        """`name=<kind>` and its default, for `-device MODEL,help`."""
        kind = {bool: "on|off", int: "int"}.get(self.kind, "|".join(self.choices) or "str")
        if self.kind is int and self.minimum is not None:
            kind = f"{self.minimum}..{self.maximum}" if self.maximum is not None else f">={self.minimum}"
        default = "auto" if self.default is None else (
            ("on" if self.default else "off") if self.kind is bool else str(self.default))
        return f"{self.name}=<{kind}>  {self.help} (default: {default})"


@dataclass(frozen=True)
class DeviceModel(abc.ABC):
    """A device type the machine can instantiate by name. Subclasses set the fields and
    implement `create`; instances are what the entry points name."""

    name: str
    help: str
    options: tuple[Option, ...] = field(default=())

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        known = ", ".join(o.name for o in self.options) or "none"
        raise OptionError(f"{self.name} has no option {name!r} (its options: {known})")

    def resolve(self, given: Mapping[str, object]) -> dict[str, Any]:
        """Typed values for every option: the given ones checked (texts from a command
        line, or Python values), the rest defaults."""
        values = {option.name: option.default for option in self.options}
        for name, value in given.items():
            option = self.option(name)
            values[name] = None if value is None and option.default is None \
                else option.parse(_as_text(value))
        self.check(values)
        return values

    def configure(self, **given: object) -> Callable[[SlotContext], MmioDevice]:
        """A factory for the machine from Python values: `MODEL.configure(queues=4)`.
        Option names with a dash are written with an underscore here."""
        names = {option.name.replace("-", "_"): option.name for option in self.options}
        return self.factory(self.resolve({names.get(k, k): v for k, v in given.items()}))

    def check(self, values: Mapping[str, Any]) -> None:
        """Reject combinations of options that make no sense together (OptionError)."""

    @abc.abstractmethod
    def create(self, slot: SlotContext, values: Mapping[str, Any]) -> MmioDevice:
        """Build the device (with its transport) for one slot."""

    def factory(self, values: Mapping[str, Any]) -> Callable[[SlotContext], MmioDevice]:
        """What the machine calls for the slot this device gets."""
        frozen = dict(values)
        return lambda slot: self.create(slot, frozen)
