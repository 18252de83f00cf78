"""Installs everything under one import name, `vmsim`.

The device models and the firmware keep their own top-level folders (`devices/`,
`firmware/`) and are installed as `vmsim.devices` and `vmsim.firmware`; the rest of
the metadata is in pyproject.toml.
"""
from setuptools import find_packages, setup

MAPPED_FOLDERS = ("devices", "firmware")

packages = find_packages(include=["vmsim", "vmsim.*"])
for folder in MAPPED_FOLDERS:
    packages += [f"vmsim.{name}" for name in find_packages(include=[folder, f"{folder}.*"])]

setup(packages=packages, package_dir={f"vmsim.{folder}": folder for folder in MAPPED_FOLDERS})
