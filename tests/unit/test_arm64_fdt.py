"""The arm64 `virt` board's device tree: decompiled with dtc, and compared property by
property with the one `qemu-system-aarch64 -M virt -cpu cortex-a72` generates."""
from __future__ import annotations

import re
import subprocess

import pytest
from tests.support.guest import DTC, QEMU_AARCH64, require_tools
from tests.unit.test_fdt import DtsNode, decompile

from vmsim.boards.arm64_virt import BOARD, device_tree, timer_interrupt_id
from vmsim.boards.layout import BootInfo

RAM_SIZE = 256 << 20
BOOTARGS = "console=ttyAMA0 earlycon=pl011,0x9000000"
INITRD = (0x4F00_0000, 0x4F12_3400)


def build(**changes: object) -> bytes:
    boot = dict(ram_size=RAM_SIZE, bootargs=BOOTARGS, initrd=INITRD, virtio_slots=(0, 3, 31))
    boot.update(changes)
    return device_tree(BOARD, BootInfo(**boot))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tree() -> DtsNode:
    require_tools(DTC)
    root, warnings = decompile(build())
    assert warnings == ""
    return root


@pytest.fixture(scope="module")
def qemu_tree(tmp_path_factory: pytest.TempPathFactory) -> DtsNode:
    """QEMU 7.2's own tree for the same machine (every virtio-mmio slot is in it)."""
    require_tools(DTC, QEMU_AARCH64)
    folder = tmp_path_factory.mktemp("qemu")
    dtb, kernel = folder / "virt.dtb", folder / "kernel"
    kernel.write_bytes(bytes(4096))      # -append needs a -kernel; QEMU exits before running it
    subprocess.run(["qemu-system-aarch64", "-M", f"virt,dumpdtb={dtb}", "-cpu", "cortex-a72",
                    "-m", "256M", "-nodefaults", "-nographic", "-kernel", str(kernel),
                    "-append", BOOTARGS],
                   check=True, capture_output=True, timeout=60)
    root, _ = decompile(dtb.read_bytes())
    return root


def phandles_resolved(props: dict[str, str], root: DtsNode) -> dict[str, str]:
    """The node's properties with each phandle cell replaced by the name of its node,
    so trees with different phandle numbers compare equal."""
    names = {}

    def collect(node: DtsNode, name: str) -> None:
        if "phandle" in node.props:
            names[node.props["phandle"].strip("<>")] = name
        for child_name, child in node.children.items():
            collect(child, child_name)

    collect(root, "/")
    resolved = {}
    for key, value in props.items():
        if key in ("clocks", "interrupt-parent", "phandle"):
            value = re.sub(r"0x[0-9a-f]+", lambda m: names.get(m.group(0), m.group(0)), value)
        resolved[key] = value
    return resolved


def test_root_memory_and_chosen(tree: DtsNode) -> None:
    assert tree.props["#address-cells"] == tree.props["#size-cells"] == "<0x02>"
    assert tree.props["interrupt-parent"] == tree.at("intc@8000000").props["phandle"]
    assert tree.at("memory@40000000").props == {
        "reg": "<0x00 0x40000000 0x00 0x10000000>", "device_type": '"memory"'}
    chosen = tree.at("chosen").props
    assert chosen["bootargs"] == f'"{BOOTARGS}"'
    assert chosen["stdout-path"] == '"/pl011@9000000"'
    assert chosen["linux,initrd-start"] == "<0x00 0x4f000000>"
    assert chosen["linux,initrd-end"] == "<0x00 0x4f123400>"


def test_cpu_psci_and_timer(tree: DtsNode) -> None:
    cpu = tree.at("cpus/cpu@0").props
    assert cpu["compatible"] == '"arm,cortex-a72"'
    assert cpu["enable-method"] == '"psci"'
    assert tree.at("psci").props == {"method": '"hvc"',
                                     "compatible": '"arm,psci-1.0\\0arm,psci-0.2"'}
    timer = tree.at("timer").props
    assert timer["interrupts"] == ("<0x01 0x0d 0x104 0x01 0x0e 0x104 "
                                   "0x01 0x0b 0x104 0x01 0x0a 0x104>")
    assert timer_interrupt_id(BOARD) == 27 and timer_interrupt_id(BOARD, "physical") == 30


def test_gic_uart_and_populated_slots_only(tree: DtsNode) -> None:
    gic = tree.at("intc@8000000").props
    assert gic["reg"] == "<0x00 0x8000000 0x00 0x10000 0x00 0x8010000 0x00 0x10000>"
    assert gic["compatible"] == '"arm,cortex-a15-gic"' and gic["#interrupt-cells"] == "<0x03>"
    uart = tree.at("pl011@9000000").props
    assert uart["interrupts"] == "<0x00 0x01 0x04>"
    assert uart["clocks"] == "<{0} {0}>".format(tree.at("apb-pclk").props["phandle"][1:-1])
    slots = sorted(name for name in tree.children if name.startswith("virtio_mmio"))
    assert slots == ["virtio_mmio@a000000", "virtio_mmio@a000600", "virtio_mmio@a003e00"]
    assert tree.at("virtio_mmio@a003e00").props["interrupts"] == "<0x00 0x2f 0x01>"


def test_no_initrd_means_no_initrd_properties() -> None:
    require_tools(DTC)
    root, _ = decompile(build(initrd=None))
    assert not any(name.startswith("linux,initrd") for name in root.at("chosen").props)


@pytest.mark.parametrize("path", [
    "memory@40000000", "intc@8000000", "pl011@9000000", "apb-pclk", "timer",
    "virtio_mmio@a000000", "virtio_mmio@a000600", "virtio_mmio@a003e00"])
def test_node_matches_qemu(tree: DtsNode, qemu_tree: DtsNode, path: str) -> None:
    ours = phandles_resolved(tree.at(path).props, tree)
    theirs = phandles_resolved(qemu_tree.at(path).props, qemu_tree)
    assert ours == theirs


def test_cpu_psci_and_chosen_match_qemu(tree: DtsNode, qemu_tree: DtsNode) -> None:
    for key in ("reg", "compatible", "device_type"):
        assert tree.at("cpus/cpu@0").props[key] == qemu_tree.at("cpus/cpu@0").props[key]
    qemu_psci = qemu_tree.at("psci").props
    assert tree.at("psci").props["method"] == qemu_psci["method"]
    # QEMU adds the PSCI 0.1 fallback ("arm,psci") with its function IDs; ours is 0.2+.
    assert qemu_psci["compatible"].startswith(tree.at("psci").props["compatible"][:-1])
    for key in ("bootargs", "stdout-path"):
        assert tree.at("chosen").props[key] == qemu_tree.at("chosen").props[key]
    assert tree.props["compatible"] == qemu_tree.props["compatible"]
    assert tree.props["interrupt-parent"] == tree.at("intc@8000000").props["phandle"]
    assert qemu_tree.props["interrupt-parent"] == qemu_tree.at("intc@8000000").props["phandle"]


def test_slot_row_span_covers_every_slot() -> None:
    span = BOARD.virtio.span
    assert (span.base, span.size) == (0x0A00_0000, 0x4000)
    last = BOARD.virtio[31]
    assert last.base + last.size == span.base + span.size and last.irq == 47


def test_board_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BOARD.ram_base = 0  # type: ignore[misc]
