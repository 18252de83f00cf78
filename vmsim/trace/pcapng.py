"""`vmsim trace export --pcapng`: each request and each completion as a packet.

The capture has one interface of link type 252 (WIRESHARK_UPPER_PDU, "exported PDU"):
each packet starts with the exported-PDU tag EXP_PDU_TAG_DISSECTOR_NAME naming
"vmsim_virtio", which the Lua dissector shipped beside this module registers
(`vmsim/trace/wireshark/vmsim_virtio.lua`; `tshark -X lua_script:FILE` or copy it to
Wireshark's plugin folder). The vmsim_virtio PDU, little-endian:

    0  u8   version (1)            1  u8  direction (0 request, 1 completion)
    2  u16  queue                  4  u16 head
    6  u16  flags (1: control queue, 2: ran in a worker)
    8  u32  opcode                12  u32 status (0xffffffff in a request)
    16 u64  session (all ones: none)
    24 u32  length (readable bytes of a request, used.len of a completion)
    28 u32  latency in µs (completions; pop to used entry)
    32 u8 n, n bytes: algorithm name; u8 m, m bytes: queue name
    then the first bytes of each buffer (readable ones for a request, written ones
    for a completion), as the trace recorded them
"""
from __future__ import annotations

import struct
from pathlib import Path

from vmsim.devices.virtio.crypto.constants import Op, Status
from vmsim.trace.model import Request, TraceModel
from vmsim.trace.record import Trace, TraceFileError

LINKTYPE_WIRESHARK_UPPER_PDU = 252
EXP_PDU_TAG_END_OF_OPT = 0
EXP_PDU_TAG_DISSECTOR_NAME = 12
DISSECTOR = "vmsim_virtio"
DIRECTION_REQUEST, DIRECTION_COMPLETION = 0, 1
FLAG_CONTROL, FLAG_POOLED = 1, 2
NO_STATUS = 0xFFFF_FFFF
NO_SESSION = 0xFFFF_FFFF_FFFF_FFFF
_OPCODES = {op.name: int(op) for op in Op}
_STATUSES = {status.name: int(status) for status in Status}
_FIXED = struct.Struct("<BBHHHIIQII")


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def _section_header() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _interface() -> bytes:
    tsresol = struct.pack("<HHB3x", 9, 1, 9)              # if_tsresol: nanoseconds
    end = struct.pack("<HH", 0, 0)
    return _block(1, struct.pack("<HHI", LINKTYPE_WIRESHARK_UPPER_PDU, 0, 0) + tsresol + end)


def _packet(ns: int, data: bytes) -> bytes:
    body = struct.pack("<IIIII", 0, ns >> 32, ns & 0xFFFF_FFFF, len(data), len(data)) + data
    return _block(6, body)


def _exported_pdu_header() -> bytes:
    name = DISSECTOR.encode()
    name += b"\0" * (-len(name) % 4)
    return (struct.pack(">HH", EXP_PDU_TAG_DISSECTOR_NAME, len(name)) + name
            + struct.pack(">HH", EXP_PDU_TAG_END_OF_OPT, 0))


def _short(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:255]
    return bytes([len(raw)]) + raw


def _hexes(items: list[str]) -> bytes:
    out = b""
    for item in items:
        try:
            out += bytes.fromhex(item)
        except ValueError:
            pass
    return out


def pdu(req: Request, direction: int, queue_name: str, control: bool) -> bytes:
    """One request (direction 0) or its completion (1) as a vmsim_virtio PDU."""
    flags = (FLAG_CONTROL if control else 0) | (FLAG_POOLED if req.where == "pool" else 0)
    opcode = _OPCODES.get(req.opcode)
    if opcode is None:
        try:
            opcode = int(req.opcode, 16)
        except ValueError:
            opcode = 0
    if direction == DIRECTION_REQUEST:
        status, length, latency = NO_STATUS, req.readable, 0
        data = _hexes([str(d.get("data", "")) for d in req.chain
                       if not int(d.get("flags", 0)) & 2 and "data" in d])
    else:
        status = _STATUSES.get(req.status or "", NO_STATUS)
        length = req.used or 0
        latency = int(req.latency_us or 0)
        data = _hexes(req.written)
    session = NO_SESSION if req.session is None else int(req.session) & NO_SESSION
    return (_FIXED.pack(1, direction, req.queue, req.head, flags, opcode, status, session,
                        length & 0xFFFF_FFFF, latency & 0xFFFF_FFFF)
            + _short(req.algo) + _short(queue_name) + data)


def pcapng_bytes(trace: Trace) -> bytes:
    model = TraceModel(trace.devices, keep_requests=1)
    model.all_requests = []
    model.apply_all(trace.records)
    base = int(float(trace.header.get("wall_t0", 0.0)) * 1e9)
    packets: list[tuple[int, int, bytes]] = []
    prefix = _exported_pdu_header()
    for n, req in enumerate(model.all_requests):
        name = model.queue_name(req.device, req.queue)
        control = req.kind == "control" or name == "controlq"
        packets.append((base + int(req.t_pop * 1e9), 2 * n,
                        prefix + pdu(req, DIRECTION_REQUEST, name, control)))
        if req.t_fill is not None:
            packets.append((base + int(req.t_fill * 1e9), 2 * n + 1,
                            prefix + pdu(req, DIRECTION_COMPLETION, name, control)))
    packets.sort()
    return _section_header() + _interface() + b"".join(_packet(ns, data) for ns, _, data in packets)


def write_pcapng(trace: Trace, path: Path) -> None:
    try:
        path.write_bytes(pcapng_bytes(trace))
    except OSError as error:
        raise TraceFileError(f"cannot write {path}: {error.strerror or error}") from None


def dissector_path() -> Path:
    """The Lua dissector that decodes these packets."""
    return Path(__file__).with_name("wireshark") / "vmsim_virtio.lua"
