"""The generated device tree, checked by decompiling it with dtc and by reading its header."""
from __future__ import annotations

import dataclasses
import struct
import subprocess
from dataclasses import dataclass, field

import pytest
from tests.support.guest import require_tools

from vmsim.boards.fdt import Node, cells, flatten, string
from vmsim.boards.layout import BootInfo
from vmsim.boards.riscv64_virt import BOARD, device_tree
from vmsim.build.cache import Requirement

RAM_SIZE = 256 << 20


@pytest.fixture(autouse=True, scope="module")
def _dtc() -> None:
    require_tools(Requirement("dtc", "device-tree-compiler"))


@dataclass
class DtsNode:
    props: dict[str, str] = field(default_factory=dict)
    children: dict[str, DtsNode] = field(default_factory=dict)

    def at(self, path: str) -> DtsNode:
        node = self
        for part in filter(None, path.split("/")):
            node = node.children[part]
        return node


def decompile(blob: bytes) -> tuple[DtsNode, str]:
    """Run dtc on the blob; return the parsed tree and dtc's warnings."""
    result = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", "-"], input=blob,
                            capture_output=True, check=True)
    return parse_dts(result.stdout.decode()), result.stderr.decode()


def parse_dts(text: str) -> DtsNode:
    """Parse dtc's own output layout: one node opening, property or closing per line."""
    root = DtsNode()
    stack: list[DtsNode] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("/dts-v1/", "/memreserve/")):
            continue
        if line.endswith("{"):
            name = line[:-1].strip()
            if name == "/":
                stack.append(root)
            else:
                node = DtsNode()
                stack[-1].children[name] = node
                stack.append(node)
        elif line == "};":
            stack.pop()
        else:
            name, _, value = line.rstrip(";").partition(" = ")
            stack[-1].props[name] = value
    assert stack == []
    return root


def build(board_changes: dict[str, object] | None = None, **boot_changes: object) -> bytes:
    boot = dict(ram_size=RAM_SIZE, bootargs="console=ttyS0 earlycon=sbi",
                initrd=(0x8F00_0000, 0x8F12_3400), virtio_slots=(0, 3))
    boot.update(boot_changes)
    board = dataclasses.replace(BOARD, **(board_changes or {}))
    return device_tree(board, BootInfo(**boot))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def blob() -> bytes:
    return build()


@pytest.fixture(scope="module")
def tree(blob: bytes) -> DtsNode:
    root, warnings = decompile(blob)
    assert warnings == ""
    return root


def test_header_fields(blob: bytes) -> None:
    (magic, total, off_struct, off_strings, off_rsvmap, version, last_comp, boot_cpu,
     size_strings, size_struct) = struct.unpack(">10I", blob[:40])
    assert magic == 0xD00DFEED
    assert total == len(blob)
    assert (version, last_comp, boot_cpu) == (17, 16, 0)
    assert off_rsvmap % 8 == 0 and off_struct % 4 == 0
    assert blob[off_rsvmap:off_rsvmap + 16] == bytes(16)  # empty reservation map
    assert off_rsvmap + 16 <= off_struct
    assert off_struct + size_struct <= off_strings
    assert off_strings + size_strings == total
    assert blob[off_struct:off_struct + 4] == cells(1)  # FDT_BEGIN_NODE
    assert blob[off_struct + size_struct - 4:off_struct + size_struct] == cells(9)  # FDT_END


def test_root_memory_and_chosen(tree: DtsNode) -> None:
    assert tree.props["#address-cells"] == "<0x02>"
    assert tree.props["#size-cells"] == "<0x02>"
    memory = tree.at("memory@80000000")
    assert memory.props == {"device_type": '"memory"', "reg": "<0x00 0x80000000 0x00 0x10000000>"}
    chosen = tree.at("chosen")
    assert chosen.props["bootargs"] == '"console=ttyS0 earlycon=sbi"'
    assert chosen.props["stdout-path"] == '"/soc/serial@10000000"'
    assert chosen.props["linux,initrd-start"] == "<0x00 0x8f000000>"
    assert chosen.props["linux,initrd-end"] == "<0x00 0x8f123400>"


def test_no_initrd_means_no_initrd_properties() -> None:
    tree, _ = decompile(build(initrd=None))
    assert not any(name.startswith("linux,initrd") for name in tree.at("chosen").props)


def test_cpu_and_its_interrupt_controller(tree: DtsNode) -> None:
    cpus = tree.at("cpus")
    assert cpus.props["timebase-frequency"] == "<0x989680>"
    cpu = cpus.at("cpu@0")
    assert cpu.props["device_type"] == '"cpu"'
    assert cpu.props["reg"] == "<0x00>"
    assert cpu.props["status"] == '"okay"'
    assert cpu.props["compatible"] == '"riscv"'
    assert cpu.props["riscv,isa"] == '"rv64imafdc"'
    assert cpu.props["mmu-type"] == '"riscv,sv39"'
    intc = cpu.at("interrupt-controller")
    assert intc.props["compatible"] == '"riscv,cpu-intc"'
    assert intc.props["interrupt-controller"] == ""
    assert intc.props["#interrupt-cells"] == "<0x01>"
    assert "phandle" in intc.props


def test_plic_routes_m_and_s_external_interrupts_to_the_cpu(tree: DtsNode) -> None:
    intc_phandle = tree.at("cpus/cpu@0/interrupt-controller").props["phandle"][1:-1]
    plic = tree.at("soc/plic@c000000")
    assert plic.props["compatible"] == '"sifive,plic-1.0.0\\0riscv,plic0"'
    assert plic.props["reg"] == "<0x00 0xc000000 0x00 0x600000>"
    assert plic.props["riscv,ndev"] == "<0x5f>"
    assert plic.props["interrupts-extended"] == f"<{intc_phandle} 0x0b {intc_phandle} 0x09>"
    assert plic.props["interrupt-controller"] == ""


def test_uart_and_virtio_slots_hang_off_the_plic(tree: DtsNode) -> None:
    soc = tree.at("soc")
    assert soc.props["compatible"] == '"simple-bus"'
    assert soc.props["ranges"] == ""
    plic_phandle = soc.at("plic@c000000").props["phandle"]
    uart = soc.at("serial@10000000")
    assert uart.props["compatible"] == '"ns16550a"'
    assert uart.props["reg"] == "<0x00 0x10000000 0x00 0x100>"
    assert uart.props["interrupts"] == "<0x0a>"
    assert uart.props["interrupt-parent"] == plic_phandle
    assert uart.props["clock-frequency"] == '"\\08@"'  # 3686400 = 0x00384000, shown as bytes
    slots = {name: node for name, node in soc.children.items() if name.startswith("virtio_mmio")}
    assert sorted(slots) == ["virtio_mmio@10001000", "virtio_mmio@10004000"]
    assert slots["virtio_mmio@10004000"].props == {
        "interrupts": "<0x04>", "interrupt-parent": plic_phandle,
        "reg": "<0x00 0x10004000 0x00 0x1000>", "compatible": '"virtio,mmio"'}


def test_power_device_and_syscon_actions(tree: DtsNode) -> None:
    test = tree.at("soc/test@100000")
    assert test.props["compatible"] == '"sifive,test1\\0sifive,test0\\0syscon"'
    assert test.props["reg"] == "<0x00 0x100000 0x00 0x1000>"
    for name, compatible, value in (("poweroff", "syscon-poweroff", "0x5555"),
                                    ("reboot", "syscon-reboot", "0x7777")):
        node = tree.at(name)
        assert node.props == {"value": f"<{value}>", "offset": "<0x00>",
                              "regmap": test.props["phandle"], "compatible": f'"{compatible}"'}


def test_timebase_and_isa_follow_the_board() -> None:
    tree, _ = decompile(build({"timebase_hz": 1_000_000, "isa": "rv64imac"}))
    assert tree.at("cpus").props["timebase-frequency"] == "<0xf4240>"
    assert tree.at("cpus/cpu@0").props["riscv,isa"] == '"rv64imac"'


def test_writer_pads_names_and_values_and_shares_property_names() -> None:
    root = Node("").prop("a", string("xyz")).prop("odd", b"\x01\x02\x03")
    root.child("n").prop("a", cells(5))
    blob = flatten(root, reserved=[(0x8000_0000, 0x1000)])
    tree, warnings = decompile(blob)
    assert warnings == ""
    assert tree.props == {"a": '"xyz"', "odd": "[01 02 03]"}
    assert tree.at("n").props == {"a": "<0x05>"}
    size_strings = struct.unpack(">I", blob[32:36])[0]
    assert size_strings == len(b"a\0odd\0")
    rsv = struct.unpack(">I", blob[16:20])[0]
    assert blob[rsv:rsv + 32] == struct.pack(">4Q", 0x8000_0000, 0x1000, 0, 0)
