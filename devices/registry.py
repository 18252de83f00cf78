"""Finding device models by name, through the `vmsim.devices` entry-point group.

vmsim's own models are registered in its pyproject.toml like anyone else's, so a model
from another installed package is found the same way:

    [project.entry-points."vmsim.devices"]
    my-device = "my_package.model:MODEL"      # a vmsim.devices.model.DeviceModel
"""
from __future__ import annotations

from importlib.metadata import entry_points

from vmsim.devices.model import DeviceModel, OptionError

GROUP = "vmsim.devices"


def model_names() -> list[str]:
    """The names of every installed model, without loading any."""
    return sorted({entry.name for entry in entry_points(group=GROUP)})


def _load(name: str) -> DeviceModel:
    """Load one model. A plugin that cannot be loaded is an OptionError naming it, not a
    traceback, and it does not stand in the way of the other models."""
    entry = next(e for e in entry_points(group=GROUP) if e.name == name)
    try:
        model = entry.load()
    except Exception as error:  # noqa: BLE001 - a third-party import can raise anything
        raise OptionError(f"device model {name!r} ({entry.value}) cannot be loaded: "
                          f"{error}") from None
    if not isinstance(model, DeviceModel):
        raise OptionError(f"device model {name!r} ({entry.value}) is not a DeviceModel")
    return model


def find_model(name: str) -> DeviceModel:
    """The model called `name`; OptionError lists the known ones otherwise."""
    names = model_names()
    if name not in names:
        raise OptionError(f"unknown device {name!r} (known: {', '.join(names) or 'none'}; "
                          "-device help lists them)")
    return _load(name)
