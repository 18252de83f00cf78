"""A missing build tool is one clear error that names the packages to install."""
import pytest

from vmsim.build import guest
from vmsim.errors import VmsimError


def test_missing_tools_name_their_apt_packages(tmp_path):
    with pytest.raises(VmsimError) as err:
        guest.require(guest.BUILD_REQUIREMENTS, search_path=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert "riscv64-linux-gnu-gcc" in message
    assert "apt-get install" in message
    for package in ("gcc-riscv64-linux-gnu", "binutils-riscv64-linux-gnu", "flex", "bison"):
        assert package in message.split("apt-get install", 1)[1].split()


def test_each_package_is_named_once(tmp_path):
    with pytest.raises(VmsimError) as err:
        guest.require(guest.BUILD_REQUIREMENTS, search_path=str(tmp_path))
    packages = str(err.value).split("apt-get install", 1)[1].split()
    assert len(packages) == len(set(packages))


def test_a_missing_file_names_its_package(tmp_path):
    absent = guest.Requirement(str(tmp_path / "linux-source-9.9.tar.xz"), "linux-source-9.9")
    with pytest.raises(VmsimError, match="apt-get install linux-source-9.9$"):
        guest.require((absent,))


def test_present_tools_pass(tmp_path):
    tool = tmp_path / "riscv64-linux-gnu-gcc"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    guest.require((guest.Requirement(tool.name, "gcc-riscv64-linux-gnu"),),
                  search_path=str(tmp_path))
