"""`monitor` commands (GDB's qRcmd): what GDB has no command for.

Physical memory (GDB's own addresses are virtual), a virtqueue's state as the transport
reports it (QEMU's x-query-virtio-queue-status and -element), and the crypto device's
sessions, and the findings of `--strict`. Every command only reads, except `wp` and
`fault`, which adds fault rules to the running machine (docs/faults.md).
"""
from __future__ import annotations

from typing import Any

from vmsim.core import strict
from vmsim.core.machine import BaseMachine
from vmsim.devices.virtio.crypto.faults import FaultControl
from vmsim.gdb.target import Target

HELP = """\
monitor commands:
  help                          this text
  xp ADDR [LEN]                 dump LEN (default 64) bytes of guest-physical memory
  wp ADDR HEXBYTES              write bytes to guest-physical memory
  virtio                        the virtio-mmio slots and their devices' status
  virtqueue SLOT QUEUE [HEAD]   one virtqueue's state, or the chain at HEAD
  crypto-sessions               the open sessions of each virtio-crypto device
  strict                        the virtio rules the drivers broke (vmsim run --strict)
  fault [RULE | clear]          inject faults (docs/faults.md): list the rules with how
                                often each fired, add RULE (op=CIPHER_ENCRYPT,every=3,
                                status=ERR), or clear them all
"""


def _transport(device: Any) -> Any:
    """The virtio-mmio transport of a slot's device, through any observer wrapper."""
    seen = 0
    while device is not None and not hasattr(device, "query_status") and seen < 4:
        device = getattr(device, "inner", None) or getattr(device, "device", None)
        seen += 1
    return device


class Monitor:
    def __init__(self, machine: BaseMachine, target: Target) -> None:
        self.machine = machine
        self.target = target

    def run(self, line: str) -> str:
        words = line.split()
        if not words or words[0] == "help":
            return HELP
        if words[0] == "fault":         # the rest of the line is a rule (it may have spaces)
            return FaultControl(self.machine.virtio).command(line.strip()[len("fault"):])
        command = {"xp": self._xp, "wp": self._wp, "virtio": self._virtio,
                   "virtqueue": self._virtqueue,
                   "crypto-sessions": self._sessions,
                   "strict": self._strict}.get(words[0])
        if command is None:
            return f"unknown monitor command {words[0]!r}; try 'monitor help'\n"
        try:
            return command(words[1:])
        except (ValueError, IndexError) as error:
            return f"{words[0]}: {error or 'bad arguments'}; try 'monitor help'\n"

    def _xp(self, args: list[str]) -> str:
        address = int(args[0], 0)
        length = int(args[1], 0) if len(args) > 1 else 64
        data = self.target.read_memory(address, min(length, 1 << 16), virtual=False)
        if data is None:
            return f"{address:#x}: not guest RAM\n"
        return "".join(f"{address + i:#018x}: {data[i:i + 16].hex(' ')}\n"
                       for i in range(0, len(data), 16))

    def _wp(self, args: list[str]) -> str:
        address, data = int(args[0], 0), bytes.fromhex(args[1])
        if not self.target.write_memory(address, data, virtual=False):
            return f"{address:#x}: not guest RAM\n"
        return f"wrote {len(data)} bytes at {address:#x}\n"

    def _slot(self, text: str) -> Any:
        index = int(text, 0)
        if not 0 <= index < len(self.machine.virtio):
            raise ValueError(f"no virtio slot {index}")
        transport = _transport(self.machine.virtio[index])
        if transport is None:
            raise ValueError(f"slot {index} has no virtio transport")
        return transport

    def _virtio(self, _args: list[str]) -> str:
        lines = []
        for index in range(len(self.machine.virtio)):
            status = self._slot(str(index)).query_status()
            names = status["status-names"]
            names = names if isinstance(names, str) else "|".join(names)
            lines.append(f"slot {index}: {status['name']} (device id {status['device-id']}) "
                         f"status {status['status']:#x} {names} "
                         f"live queues {len(status['queues'])} of {status['num-vqs']}")
        return "\n".join(lines) + "\n" if lines else "no virtio devices\n"

    def _virtqueue(self, args: list[str]) -> str:
        transport = self._slot(args[0])
        index = int(args[1], 0)
        queues = transport.queues
        if not 0 <= index < len(queues):
            return f"queue {index} is not live (the driver has not set it up)\n"
        queue = queues[index]
        if len(args) > 2:
            element = queue.query_element(int(args[2], 0))
            return f"chain at head {element['index']}:\n" + "".join(
                "  " + " ".join(f"{k}={_show(k, v)}" for k, v in desc.items()) + "\n"
                for desc in element["descs"])
        fields = dict(queue.query_status())
        owners: dict[str, list[int]] = {}
        for index, owner in enumerate(queue.descriptor_owners()):
            owners.setdefault(owner, []).append(index)
        lines = [f"{key}: {_show(key, value)}" for key, value in fields.items()]
        lines.append("descriptors: " + ", ".join(
            f"{owner} {len(held)}" + (f" {_indices(held)}" if owner != "free" else "")
            for owner, held in owners.items()))
        return "\n".join(lines) + "\n"

    def _strict(self, _args: list[str]) -> str:
        return strict.summary(self.machine.strict, self.machine.virtio)

    def _sessions(self, _args: list[str]) -> str:
        lines = []
        for index in range(len(self.machine.virtio)):
            backend = getattr(self._slot(str(index)), "device", None)
            table = getattr(backend, "sessions", None)
            if table is None:
                continue
            sessions = getattr(table, "_sessions", {})    # read only, never changed here
            lines.append(f"slot {index}: {len(sessions)} session(s)")
            for sid, session in sorted(sessions.items()):
                lines.append(f"  {sid}: {session.params}")
        return "\n".join(lines) + "\n" if lines else "no virtio-crypto device\n"


def _show(key: str, value: object) -> str:
    """Addresses in hex, the rest as they are."""
    if isinstance(value, int) and not isinstance(value, bool) and ("addr" in key
                                                                   or key.startswith("vring-") and key != "vring-num"):
        return f"{value:#x}"
    return str(value)


def _indices(held: list[int]) -> str:
    """[0-3,7]: runs of descriptor indices, short even for a full table."""
    runs: list[str] = []
    start = prev = held[0]
    for index in held[1:] + [-2]:
        if index != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = index
        prev = index
    return "[" + ",".join(runs) + "]"
