"""The kernel build fails loudly when the final .config lacks a fragment option."""
import pytest

from vmsim.build import guest
from vmsim.errors import VmsimError

FRAGMENT = """\
# comment
CONFIG_FPU=y
CONFIG_VIRTIO_MMIO=y
# CONFIG_CRYPTO_MANAGER_DISABLE_TESTS is not set
"""


def test_a_config_that_has_every_option_passes():
    config = "CONFIG_FPU=y\nCONFIG_VIRTIO_MMIO=y\n# CONFIG_CRYPTO_MANAGER_DISABLE_TESTS is not set\n"
    assert guest.missing_options(FRAGMENT, config) == []


def test_an_option_absent_from_the_config_counts_as_n():
    assert guest.missing_options(FRAGMENT, "CONFIG_FPU=y\n") == ["CONFIG_VIRTIO_MMIO=y (got n)"]


def test_a_wrong_value_is_reported_with_what_the_config_has():
    config = "CONFIG_FPU=y\nCONFIG_VIRTIO_MMIO=m\nCONFIG_CRYPTO_MANAGER_DISABLE_TESTS=y\n"
    assert guest.missing_options(FRAGMENT, config) == [
        "CONFIG_VIRTIO_MMIO=y (got m)", "CONFIG_CRYPTO_MANAGER_DISABLE_TESTS=n (got y)"]


def test_the_real_fragment_asks_for_what_the_guest_needs():
    wanted = guest.parse_config(guest.CONFIG_FRAGMENT.read_text())
    for option in ("FPU", "DEVMEM", "VIRTIO_MMIO", "CRYPTO_DEV_VIRTIO", "KEYS",
                   "ASYMMETRIC_KEY_TYPE", "PKCS8_PRIVATE_KEY_PARSER", "CRYPTO_USER_API_AEAD"):
        assert wanted[f"CONFIG_{option}"] == "y"
    assert wanted["CONFIG_CRYPTO_MANAGER_DISABLE_TESTS"] == "n"


def test_the_cpio_list_links_init_and_every_program_to_one_binary(tmp_path):
    programs = guest.program_names()
    assert {"busy", "idle", "sanity", "virtio-algs"} <= set(programs)
    binary = tmp_path / "vmsim-programs"
    listing = guest.cpio_list(binary, programs).splitlines()
    assert f"file {guest.MULTICALL_PATH} {binary} 0755 0 0" in listing
    assert f"slink /init {guest.MULTICALL_PATH} 0777 0 0" in listing
    assert "nod /dev/console 0600 0 0 c 5 1" in listing
    for name in programs:
        assert f"slink /bin/{name} {guest.MULTICALL_PATH} 0777 0 0" in listing


def test_the_program_table_names_each_entry_point_once():
    table = guest.program_table(["busy", "virtio-algs"])
    assert '{"init", vmsim_main_init},' in table
    assert '{"virtio-algs", vmsim_main_virtio_algs},' in table
    assert "int vmsim_main_busy(void);" in table
    assert table.rstrip().endswith("{0, 0},\n};")


def test_program_names_must_be_plain_distinct_and_not_init():
    guest.check_program_names(["busy", "virtio-algs", "rsa_keyctl"])
    for bad in (["init"], ["has space"], ["Upper"], ["a-b", "a_b"]):
        with pytest.raises(VmsimError):
            guest.check_program_names(bad)


def test_the_arm64_fragment_asks_for_the_virt_board_and_the_device():
    wanted = guest.parse_config(guest.ARM64.fragment.read_text())
    for option in ("SERIAL_AMBA_PL011_CONSOLE", "SERIAL_EARLYCON", "ARM_GIC", "ARM_ARCH_TIMER",
                   "ARM_PSCI_FW", "BLK_DEV_INITRD", "DEVMEM", "VIRTIO_MMIO",
                   "CRYPTO_DEV_VIRTIO", "CRYPTO_USER_API_SKCIPHER", "ASYMMETRIC_KEY_TYPE",
                   "PKCS8_PRIVATE_KEY_PARSER"):
        assert wanted[f"CONFIG_{option}"] == "y"
    assert wanted["CONFIG_MODULES"] == "n"
    assert wanted["CONFIG_CRYPTO_MANAGER_DISABLE_TESTS"] == "n"
