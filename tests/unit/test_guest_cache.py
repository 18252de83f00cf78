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


def test_riscv64_keys_stay_what_they_were_before_there_were_other_arches():
    """Guests cached for riscv64 before arm64 existed stay valid: the values are those
    the single-architecture code computed for these inputs."""
    assert guest.kernel_key(b"CONFIG_X=y\n", "6.1.192-2", "gcc 12") == "1427025f64c20217"
    assert guest.initramfs_key({"init.c": b"x"}, "6.1.192-2", "gcc 12") == "7e9a3be343a6d019"


def test_each_arch_has_its_own_keys_and_cache_entries(sources, monkeypatch, tmp_path):
    tag = guest.ARM64.key_tag
    assert kernel_key() != guest.kernel_key(guest.CONFIG_FRAGMENT.read_bytes(), KERNEL_VERSION,
                                             COMPILER, tag)
    read = guest.read_initramfs_sources(sources)
    assert initramfs_key(sources) != guest.initramfs_key(read, KERNEL_VERSION, COMPILER, tag)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    riscv, arm64 = guest.guest_paths("riscv64"), guest.guest_paths("arm64")
    assert riscv.kernel.parent.name.startswith("kernel-")
    assert arm64.kernel.parent.name.startswith("kernel-arm64-")
    assert arm64.initrd.parent.name.startswith("initramfs-arm64-")
    assert {riscv.kernel.parent, riscv.initrd.parent}.isdisjoint(
        {arm64.kernel.parent, arm64.initrd.parent})


def test_an_unknown_arch_is_one_error_naming_the_choices():
    with pytest.raises(guest.VmsimError, match="choose from riscv64, arm64"):
        guest.guest_paths("mips")
