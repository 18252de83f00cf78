"""`-device` on the command line, as QEMU spells it.

    -device help                      the models, one line each
    -device virtio-crypto,help        one model's options
    -device virtio-crypto,queues=4,workers=2,stateless=on
    -device driver=virtio-rng         the name may also be given as driver=

A bare key means key=on, as in QEMU. Each -device takes the next virtio-mmio slot.
"""
from __future__ import annotations

from dataclasses import dataclass

from vmsim.devices.model import DeviceModel, OptionError
from vmsim.devices.registry import find_model, model_names

HELP_WORDS = ("help", "?")


@dataclass(frozen=True)
class DeviceRequest:
    """One parsed -device: the model and its option texts, in order."""

    model: DeviceModel
    given: dict[str, str]


class DeviceHelp(Exception):
    """-device asked for help; the text is what to print."""


def parse_device(text: str) -> DeviceRequest:
    """Parse one -device value; OptionError or DeviceHelp otherwise."""
    parts = [part.strip() for part in text.split(",")]
    if not parts[0]:
        raise OptionError("-device needs a model name (-device help lists them)")
    if parts[0] in HELP_WORDS:
        raise DeviceHelp(models_help())
    name = parts[0].removeprefix("driver=")
    model = find_model(name)
    given: dict[str, str] = {}
    for part in parts[1:]:
        if part in HELP_WORDS:
            raise DeviceHelp(model_help(model))
        key, sep, value = part.partition("=")
        if not key:
            raise OptionError(f"-device {name}: empty option in {text!r}")
        if key in given:
            raise OptionError(f"-device {name}: option {key!r} given twice")
        model.option(key)                       # an unknown key fails here, by name
        given[key] = value if sep else "on"
    model.resolve(given)                        # every value checked before the machine starts
    return DeviceRequest(model, given)


def models_help() -> str:
    """One line per installed model. A plugin that cannot be loaded is listed with the
    reason: only asking for that model by name is an error."""
    lines = ["Devices (-device NAME[,option=value...]; -device NAME,help for options):"]
    for name in model_names():
        try:
            text = find_model(name).help
        except OptionError as error:
            text = f"(unusable: {error})"
        lines.append(f"  {name:<16} {text}")
    return "\n".join(lines)


def model_help(model: DeviceModel) -> str:
    lines = [f"{model.name} options:"]
    lines += [f"  {option.describe()}" for option in model.options] or ["  (none)"]
    return "\n".join(lines)
