"""The Debian kernel's initramfs: the default guest's layout with the module loader as
/init, and what `--distro` accepts."""
from pathlib import Path

import pytest

from vmsim.build import cpio, distro, guest
from vmsim.errors import VmsimError


def test_the_loader_is_init_and_the_programs_keep_their_links(tmp_path):
    modules = [tmp_path / "crypto_engine.ko", tmp_path / "virtio_crypto.ko"]
    entries = distro.distro_entries(tmp_path / "programs", ["busy", "sanity"],
                                    tmp_path / "modload", tmp_path / "load.list", modules)
    by_path = {e.path: e for e in entries}
    assert len(by_path) == len(entries)
    assert by_path["/init"] == cpio.File("/init", tmp_path / "modload")
    assert by_path[guest.MULTICALL_PATH] == cpio.File(guest.MULTICALL_PATH, tmp_path / "programs")
    assert by_path["/bin/busy"] == cpio.Symlink("/bin/busy", guest.MULTICALL_PATH)
    assert by_path[distro.MODULE_LIST].source == tmp_path / "load.list"
    for module in modules:
        assert by_path[f"{distro.MODULES_DIR}/{module.name}"].source == module
    assert {"/dev/console", "/proc", "/sys", "/lib", distro.MODULES_DIR} <= set(by_path)


def test_the_guest_loads_the_transport_the_driver_and_af_alg():
    assert {"virtio_mmio", "virtio_crypto", "algif_skcipher", "algif_hash",
            "pkcs8_key_parser"} <= set(distro.GUEST_MODULES)


@pytest.mark.parametrize("arch, message", [
    ("riscv64", "no distribution kernel for riscv64"),
    ("mips", "no default guest for architecture 'mips'"),
])
def test_only_arm64_has_a_distribution_kernel(arch, message):
    with pytest.raises(VmsimError, match=message):
        distro.distro_guest_paths(arch)
