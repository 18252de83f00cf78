"""What virtio-crypto's trace events say about a request, decoded from its own header.

Only called when something observes the device: the fields are read again from the
chain (a copy of the header, never the parser's state), so tracing cannot change how
a request is handled, and costs nothing when it is off.
"""
from __future__ import annotations

import struct
from typing import Any

from vmsim.devices.bus import GuestMemory
from vmsim.devices.virtio.crypto.constants import (
    AeadAlgo,
    AkcipherAlgo,
    CipherAlgo,
    CryptoFeatures,
    HashAlgo,
    MacAlgo,
    Op,
    Service,
)
from vmsim.devices.virtio.queue import MAX_LISTED, PREVIEW_BYTES, DescriptorChain

_DATA_HEADER = struct.Struct("<IIQII")     # opcode, algo, session_id, flag, padding
_CTRL_HEADER = struct.Struct("<IIII")      # opcode, algo, flag, queue_id
_U64 = struct.Struct("<Q")
_ALGOS = {Service.CIPHER: CipherAlgo, Service.HASH: HashAlgo, Service.MAC: MacAlgo,
          Service.AEAD: AeadAlgo, Service.AKCIPHER: AkcipherAlgo}

FEATURE_BIT_NAMES = {flag.value.bit_length() - 1: str(flag.name) for flag in CryptoFeatures
                     if flag.value and flag.value & (flag.value - 1) == 0}


# Names by number, looked up per traced request (an Enum call costs microseconds).
_OP_NAMES = {int(op): op.name for op in Op}
_ALGO_NAMES = {(int(service), int(algo)): algo.name
               for service, enum in _ALGOS.items() for algo in enum}


def opcode_name(opcode: int) -> str:
    name = _OP_NAMES.get(opcode)
    return name if name is not None else f"{opcode:#x}"


def algo_name(opcode: int, algo: int) -> str:
    name = _ALGO_NAMES.get((opcode >> 8, algo))
    return name if name is not None else str(algo)


def _header(chain: DescriptorChain, layout: struct.Struct) -> tuple[int, ...] | None:
    if chain.readable_len < layout.size:
        return None
    try:
        return chain.unpack_from(layout)
    except Exception:  # noqa: BLE001 - a trace must never fail a request
        return None


# The fields of a data request's events, in the order the device sends their values
# (vmsim.devices.events.Fields).
_SHORT_REQUEST = ("head", "kind", "readable", "writable")
_DATA_REQUEST = _SHORT_REQUEST + ("opcode", "opcode_value", "algo", "session", "mode")
COMPLETE_FIELDS = ("head", "kind", "service", "status", "used", "duration_us", "where",
                   "written")


def data_request(chain: DescriptorChain, revision_1: bool) -> tuple:
    """opcode, algorithm, session, mode and lengths of a data request, as a
    (names, values...) tuple. Made for every traced request: the header read and the
    names are inline (each call here costs the CPU thread a microsecond or so)."""
    header = None
    if chain.readable_len >= _DATA_HEADER.size:
        try:
            header = chain.unpack_from(_DATA_HEADER)
        except Exception:  # noqa: BLE001 - a trace must never fail a request
            pass
    if header is None:
        return (_SHORT_REQUEST, chain.head, "data", chain.readable_len, chain.writable_len)
    opcode, algo, session, flag, _ = header
    return (_DATA_REQUEST, chain.head, "data", chain.readable_len, chain.writable_len,
            _OP_NAMES.get(opcode) or f"{opcode:#x}", opcode,
            _ALGO_NAMES.get((opcode >> 8, algo)) or str(algo),
            session, "stateless" if revision_1 and not flag & 1 else "session")


def control_request(chain: DescriptorChain) -> dict[str, Any]:
    """opcode, algorithm and (for a destroy) the session of a control request."""
    fields: dict[str, Any] = {"head": chain.head, "kind": "control",
                              "readable": chain.readable_len, "writable": chain.writable_len}
    header = _header(chain, _CTRL_HEADER)
    if header is not None:
        opcode, algo, _flag, queue_id = header
        if not algo and opcode & 0xFF in (2, 4) and chain.readable_len >= 20:
            try:  # *_CREATE_SESSION: the session parameters start with the algorithm
                algo = struct.unpack("<I", chain.read(16, 4))[0]
            except Exception:  # noqa: BLE001
                pass
        fields.update(opcode=opcode_name(opcode), opcode_value=opcode,
                      algo=algo_name(opcode, algo), queue_id=queue_id)
        if opcode & 0xFF in (3, 5) and chain.readable_len >= 24:  # *_DESTROY_SESSION
            try:
                fields["session"] = _U64.unpack(chain.read(16, 8))[0]
            except Exception:  # noqa: BLE001
                pass
    return fields


def written(mem: GuestMemory, chain: DescriptorChain) -> tuple[bytes, ...]:
    """The start of each writable buffer after the device wrote it: one per writable
    descriptor the chain's listing in the pop event shows (chain_entries lists a long
    indirect table's first MAX_LISTED entries and its last), so a 64 KiB request costs
    a few previews instead of one per page. Raw bytes: observers show them in hex."""
    first, count = chain.readable_count, chain.writable_count
    if chain.indirect and count and first + count > MAX_LISTED + 1:
        listed = max(0, MAX_LISTED - first)           # (fewer than `count`)
        buffers = [chain.segment(first + i) for i in range(listed)] + [chain.segment(-1)]
    else:
        buffers = chain.writable
    return mem.previews(buffers, PREVIEW_BYTES)
