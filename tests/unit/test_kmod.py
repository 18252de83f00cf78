"""The module load order comes from each module's .modinfo `depends=`, read from real
ELF objects (made here with the host's gcc, as a .ko is a relocatable ELF)."""
import lzma
import subprocess
from pathlib import Path

import pytest

from tests.support.guest import HOST_CC, require_tools
from vmsim.build import kmod
from vmsim.errors import VmsimError


def make_module(tree: Path, relative: str, depends: str | None) -> Path:
    """A relocatable object with a .modinfo section, as a module file of the tree."""
    info = ["license=GPL"] + ([f"depends={depends}"] if depends is not None else [])
    body = "".join(f'static const char info{i}[] __attribute__((used, section(".modinfo"))) '
                   f'= "{entry}";\n' for i, entry in enumerate(info))
    source = tree / "m.c"
    source.write_text(body)
    path = tree / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-c", "-o", str(path), str(source)], check=True)
    source.unlink()
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    require_tools(HOST_CC)
    make_module(tmp_path, "kernel/crypto/crypto_engine.ko", "")
    make_module(tmp_path, "kernel/drivers/crypto/virtio/virtio_crypto.ko", "crypto_engine")
    make_module(tmp_path, "kernel/crypto/af_alg.ko", None)
    make_module(tmp_path, "kernel/crypto/algif_hash.ko", "af_alg")
    make_module(tmp_path, "kernel/crypto/algif_skcipher.ko", "af_alg")
    return tmp_path


def names(paths: list[Path]) -> list[str]:
    return [kmod.module_name(p) for p in paths]


def test_each_module_comes_after_what_it_depends_on(tree):
    order = kmod.load_order(tree, ["virtio_crypto", "algif_skcipher", "algif_hash"])
    assert names(order) == ["crypto_engine", "virtio_crypto", "af_alg", "algif_skcipher",
                            "algif_hash"]


def test_a_compressed_module_is_read_and_handed_out_plain(tree):
    plain = tree / "kernel/crypto/af_alg.ko"
    (tree / "kernel/crypto/af_alg.ko.xz").write_bytes(lzma.compress(plain.read_bytes(),
                                                                    format=lzma.FORMAT_XZ))
    elf = plain.read_bytes()
    plain.unlink()
    (found,) = [p for p in kmod.load_order(tree, ["algif_hash"]) if p.name.endswith(".xz")]
    assert kmod.module_bytes(found) == elf


def test_a_dependency_the_tree_lacks_is_one_error_naming_it(tree):
    make_module(tree, "kernel/drivers/virtio/virtio-rng.ko", "virtio_ring")
    with pytest.raises(VmsimError, match="no module virtio_ring .needed by virtio_rng."):
        kmod.load_order(tree, ["virtio_rng"])


def test_a_file_that_is_not_elf_is_refused(tree):
    with pytest.raises(VmsimError, match="not a kernel module"):
        kmod.module_depends(b"not an ELF file at all")
