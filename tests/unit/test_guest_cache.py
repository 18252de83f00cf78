"""Cache keys: each input of a build changes its key, and only its own artifact's key."""
import shutil
from pathlib import Path

import pytest

from vmsim.build import guest

KERNEL_VERSION = "6.1.192-2"
COMPILER = "riscv64-linux-gnu-gcc (Debian 12.2.0-13) 12.2.0"


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    copy = tmp_path / "initramfs"
    shutil.copytree(guest.INITRAMFS_SOURCES, copy)
    return copy


def initramfs_key(root: Path, kernel: str = KERNEL_VERSION, compiler: str = COMPILER) -> str:
    return guest.initramfs_key(guest.read_initramfs_sources(root), kernel, compiler)


def kernel_key(fragment: bytes | None = None, kernel: str = KERNEL_VERSION,
               compiler: str = COMPILER) -> str:
    if fragment is None:
        fragment = guest.CONFIG_FRAGMENT.read_bytes()
    return guest.kernel_key(fragment, kernel, compiler)


def test_keys_are_stable_for_the_same_inputs(sources):
    assert initramfs_key(sources) == initramfs_key(sources)
    assert kernel_key() == kernel_key()


def test_editing_an_init_source_changes_only_the_initramfs_key(sources):
    before = initramfs_key(sources)
    init = sources / "init.c"
    init.write_text(init.read_text() + "\n/* edited */\n")
    assert initramfs_key(sources) != before


def test_adding_a_program_changes_the_initramfs_key(sources):
    before = initramfs_key(sources)
    (sources / "programs" / "extra.c").write_text("int main(void) { return 0; }\n")
    assert initramfs_key(sources) != before
    assert "extra" in guest.program_names(sources)


def test_editing_the_shared_header_changes_the_initramfs_key(sources):
    before = initramfs_key(sources)
    (sources / "vmsim.h").write_text((sources / "vmsim.h").read_text() + "\n")
    assert initramfs_key(sources) != before


def test_editing_the_fragment_changes_the_kernel_key():
    fragment = guest.CONFIG_FRAGMENT.read_bytes()
    assert kernel_key(fragment + b"CONFIG_PRINTK_TIME=y\n") != kernel_key(fragment)


@pytest.mark.parametrize("changed", ["kernel", "compiler"])
def test_toolchain_and_kernel_source_change_both_keys(sources, changed):
    other = {changed: "something else"}
    assert kernel_key(**other) != kernel_key()
    assert initramfs_key(sources, **other) != initramfs_key(sources)


def test_a_file_renamed_is_a_different_input(sources):
    before = initramfs_key(sources)
    (sources / "programs" / "idle.c").rename(sources / "programs" / "sleepy.c")
    assert initramfs_key(sources) != before


def test_cache_lives_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    paths = guest.guest_paths()
    assert paths.kernel.is_relative_to(tmp_path / "vmsim" / "guest")
    assert paths.initrd.is_relative_to(tmp_path / "vmsim" / "guest")
    assert paths.kernel.parent != paths.initrd.parent
