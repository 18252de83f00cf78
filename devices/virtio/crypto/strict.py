"""virtio-crypto's driver rules for `--strict` (section 5.9), as data entries.

They look at a request's readable bytes as the checker's own chain walk found them
(`chains.ChainWalk`: queue, prefix, lengths) and at the device's advertised config,
negotiated features and live sessions, before the device takes the request.
"""
from __future__ import annotations

import struct
from typing import Any

from vmsim.devices.virtio.crypto.constants import (
    CREATE_SESSION_INPUT_SIZE, CTRL_FLF_LEGACY, CTRL_HEADER_SIZE, DATA_FLF_LEGACY,
    DATA_HEADER_SIZE, FLAG_SESSION_MODE, HW_READY, STATELESS_FEATURE, CryptoFeatures, Service,
    SymOp)
from vmsim.devices.virtio.crypto.control import CREATE_FLF_SIZES, DESTROY_FLF_SIZE
from vmsim.devices.virtio.crypto.requests import FLF_SIZES
from vmsim.devices.virtio.crypto.wire import RequestError
from vmsim.devices.virtio.spec import Reg, Status as DeviceStatus
from vmsim.devices.virtio.strict.rules import BASIC, DRIVER_OK, REQUEST, WRITE, Access, Rule, Values

_CRYPTO = "drivernormative:Device Types / Crypto Device"
_CONFIG = f"{_CRYPTO} / Device configuration layout"
_SESSION = f"{_CRYPTO} / Device Operation / Control Virtqueue / Session operation"
_SERVICE_LABELS = {
    Service.CIPHER: ("5.9.7.6", "Symmetric algorithms Operation"),
    Service.HASH: ("5.9.7.4", "HASH Service Operation"),
    Service.MAC: ("5.9.7.5", "MAC Service Operation"),
    Service.AEAD: ("5.9.7.7", "AEAD Service Operation"),
    Service.AKCIPHER: ("5.9.7.8", "AKCIPHER Service Operation"),
}
_CTRL = struct.Struct("<III")        # opcode, algo, flag
_DATA = struct.Struct("<IIQI")       # opcode, algo, session_id, flag
_U32 = struct.Struct("<I")
_STATELESS_BITS = int(CryptoFeatures.ALL) & ~int(CryptoFeatures.REVISION_1)
# Config offsets of each service's algorithm mask (low, high) as the driver reads them.
_MASKS = {Service.CIPHER: (12, 16), Service.HASH: (20, None), Service.MAC: (24, 28),
          Service.AEAD: (32, None), Service.AKCIPHER: (44, None)}
_CREATE, _DESTROY = 2, 3              # op of a control opcode (AKCIPHER: 4, 5)


def _device(view: Any) -> Any:
    return view.transport.device


def _control_op(opcode: int) -> tuple[Service, str] | None:
    """(service, "create" | "destroy") of a control opcode, or None."""
    service, op = opcode >> 8, opcode & 0xFF
    if service not in Service.__members__.values():
        return None
    base = 4 if service == Service.AKCIPHER else 2
    if op in (base, base + 1):
        return Service(service), ("create" if op == base else "destroy")
    return None


def _revision_1(view: Any) -> bool:
    return bool(view.driver_features & CryptoFeatures.REVISION_1)


def _is_control(view: Any, walk: Any) -> bool:
    return walk.queue == _device(view).control_queue


def _hw_ready(view: Any, walk: Any) -> Values | None:
    status = _device(view).read_config(0, 4)
    if not status & HW_READY:
        return {"config_status": status, "head": walk.head}
    return None


def _control_header_size(view: Any, walk: Any) -> Values | None:
    return _header_size(view, walk) if _is_control(view, walk) else None


def _data_header_size(view: Any, walk: Any) -> Values | None:
    return None if _is_control(view, walk) else _header_size(view, walk)


def _header_size(view: Any, walk: Any) -> Values | None:
    data = walk.prefix
    if _is_control(view, walk):
        if len(data) < CTRL_HEADER_SIZE:
            return {"readable": walk.readable_len, "needed": CTRL_HEADER_SIZE}
        kind = _control_op(_CTRL.unpack_from(data)[0])
        if kind is None:
            return None
        service, what = kind
        flf = CTRL_FLF_LEGACY if not _revision_1(view) else (
            CREATE_FLF_SIZES[service] if what == "create" else DESTROY_FLF_SIZE)
        needed, writable = CTRL_HEADER_SIZE + flf, 1 if what == "destroy" else CREATE_SESSION_INPUT_SIZE
    else:
        if len(data) < DATA_HEADER_SIZE:
            return {"readable": walk.readable_len, "needed": DATA_HEADER_SIZE}
        opcode, _algo, _sid, flag = _DATA.unpack_from(data)
        service = opcode >> 8
        if service not in Service.__members__.values():
            return None
        stateless = _stateless(view, Service(service), flag)
        flf = FLF_SIZES[Service(service)][stateless] if _revision_1(view) else DATA_FLF_LEGACY
        needed, writable = DATA_HEADER_SIZE + flf, 1
    if walk.readable_len < needed or walk.writable_len < writable:
        return {"readable": walk.readable_len, "needed": needed,
                "writable": walk.writable_len, "writable_needed": writable}
    return None


def _stateless(view: Any, service: Service, flag: int) -> bool:
    return (_revision_1(view) and bool(view.driver_features & STATELESS_FEATURE[service])
            and not flag & FLAG_SESSION_MODE)


def _control_opcode(view: Any, walk: Any) -> Values | None:
    if _is_control(view, walk) and len(walk.prefix) >= CTRL_HEADER_SIZE:
        opcode = _CTRL.unpack_from(walk.prefix)[0]
        if _control_op(opcode) is None:
            return {"opcode": opcode}
    return None


def _create_fields(view: Any, walk: Any) -> tuple[Service, bytes] | None:
    """The service and flf of a create-session request whose flf is all there."""
    if not _is_control(view, walk) or len(walk.prefix) < CTRL_HEADER_SIZE:
        return None
    kind = _control_op(_CTRL.unpack_from(walk.prefix)[0])
    if kind is None or kind[1] != "create":
        return None
    flf = walk.prefix[CTRL_HEADER_SIZE:CTRL_HEADER_SIZE + CREATE_FLF_SIZES[kind[0]]]
    return (kind[0], flf) if len(flf) == CREATE_FLF_SIZES[kind[0]] else None


def _algorithms(service: Service, flf: bytes) -> int | None:
    """The algorithm a create-session flf asks for (CIPHER: its cipher), or None."""
    if service == Service.CIPHER:
        op_type = _U32.unpack_from(flf, 48)[0]
        if op_type == SymOp.CIPHER:
            return _U32.unpack_from(flf, 0)[0]
        if op_type == SymOp.ALGORITHM_CHAINING:
            return _U32.unpack_from(flf, 8)[0]
        return None
    return _U32.unpack_from(flf, 0)[0]


def _advertised(view: Any, walk: Any) -> Values | None:
    found = _create_fields(view, walk)
    if found is None:
        return None
    service, flf = found
    device = _device(view)
    services = device.read_config(8, 4)
    if not services >> service & 1:
        return {"service": service.name, "crypto_services": services}
    algo = _algorithms(service, flf)
    low, high = _MASKS[service]
    mask = device.read_config(low, 4) | ((device.read_config(high, 4) << 32) if high else 0)
    if algo is not None and not (algo < 64 and mask >> algo & 1):
        return {"service": service.name, "algo": algo, "advertised_mask": mask}
    return None


def _key_lengths(view: Any, walk: Any) -> Values | None:
    found = _create_fields(view, walk)
    if found is None:
        return None
    service, flf = found
    cipher_key = auth_key = 0
    if service == Service.CIPHER:
        op_type = _U32.unpack_from(flf, 48)[0]
        if op_type == SymOp.CIPHER:
            cipher_key = _U32.unpack_from(flf, 4)[0]
        elif op_type == SymOp.ALGORITHM_CHAINING:
            cipher_key = _U32.unpack_from(flf, 12)[0]
            if _U32.unpack_from(flf, 4)[0] == 2:        # hash_mode AUTH: a MAC key follows
                auth_key = _U32.unpack_from(flf, 32)[0]
    elif service == Service.AEAD:
        cipher_key = _U32.unpack_from(flf, 4)[0]
    elif service == Service.MAC:
        auth_key = _U32.unpack_from(flf, 8)[0]
    limits = _device(view).limits
    if cipher_key > limits.max_cipher_key_len or auth_key > limits.max_auth_key_len:
        return {"service": service.name, "key_len": cipher_key, "auth_key_len": auth_key,
                "max_cipher_key_len": limits.max_cipher_key_len,
                "max_auth_key_len": limits.max_auth_key_len}
    return None


def _destroy_session(view: Any, walk: Any) -> Values | None:
    if not _is_control(view, walk) or len(walk.prefix) < CTRL_HEADER_SIZE + 8:
        return None
    kind = _control_op(_CTRL.unpack_from(walk.prefix)[0])
    if kind is None or kind[1] != "destroy":
        return None
    session_id = struct.unpack_from("<Q", walk.prefix, CTRL_HEADER_SIZE)[0]
    if not _live(view, session_id, kind[0]):
        return {"service": kind[0].name, "session_id": session_id}
    return None


def _live(view: Any, session_id: int, service: Service) -> bool:
    try:
        _device(view).sessions.get(session_id, service)
    except RequestError:
        return False
    return True


def _data_fields(view: Any, walk: Any) -> tuple[int, Service, int, int] | None:
    if _is_control(view, walk) or len(walk.prefix) < DATA_HEADER_SIZE:
        return None
    opcode, _algo, session_id, flag = _DATA.unpack_from(walk.prefix)
    if opcode >> 8 not in Service.__members__.values():
        return None
    return opcode, Service(opcode >> 8), session_id, flag


def _data_session(view: Any, walk: Any) -> Values | None:
    fields = _data_fields(view, walk)
    if fields is None:
        return None
    opcode, service, session_id, flag = fields
    if not _stateless(view, service, flag) and not _live(view, session_id, service):
        return {"opcode": opcode, "session_id": session_id}
    return None


def _data_flag(view: Any, walk: Any) -> Values | None:
    fields = _data_fields(view, walk)
    if fields is None or not _revision_1(view):
        return None
    opcode, service, _sid, flag = fields
    stateless_ok = bool(view.driver_features & STATELESS_FEATURE[service])
    if flag not in (FLAG_SESSION_MODE, 0) or (flag != FLAG_SESSION_MODE and not stateless_ok):
        return {"opcode": opcode, "flag": flag, "stateless_negotiated": stateless_ok}
    return None


def _stateless_needs_revision_1(view: Any, access: Access) -> Values | None:
    if (access.offset == Reg.STATUS and access.value is not None
            and access.value & DeviceStatus.FEATURES_OK
            and not view.status & DeviceStatus.FEATURES_OK
            and view.driver_features & _STATELESS_BITS
            and not view.driver_features & CryptoFeatures.REVISION_1):
        return {"accepted": view.driver_features}
    return None


def _all_queues(view: Any, _event: Any) -> Values | None:
    queues = view.transport.queues
    missing = [queue.index for queue in queues if not queue.ready]
    if missing:
        return {"not_ready": ",".join(map(str, missing)), "queues": len(queues)}
    return None


def _service_rule(rule_id: str, text: str, check: Any) -> Rule:
    """A data-queue rule: every service's drivernormative says it; CIPHER's is cited."""
    section, title = _SERVICE_LABELS[Service.CIPHER]
    return Rule(rule_id, text, section, f"{_CRYPTO} / Device Operation / {title}", (REQUEST,),
                check)


RULES: tuple[Rule, ...] = (
    Rule("crypto-stateless-needs-revision-1", "accept a STATELESS_MODE feature only with "
         "VIRTIO_CRYPTO_F_REVISION_1", "2.2.1", f"{BASIC} / Feature Bits", (WRITE,),
         _stateless_needs_revision_1),
    Rule("crypto-all-queues", "set up all max_dataqueues data queues and the control queue "
         "before DRIVER_OK", "5.9.5.1", f"{_CRYPTO} / Device Initialization", (DRIVER_OK,),
         _all_queues),
    Rule("crypto-hw-ready", "send no request while the config status has HW_READY clear",
         "5.9.4.2", _CONFIG, (REQUEST,), _hw_ready),
    Rule("crypto-header-size", "give each control request its whole header and fixed-length "
         "fields, and room for its answer", "5.9.7.2.1", f"{_SESSION} / Session operation: "
         "create session", (REQUEST,), _control_header_size),
    _service_rule("crypto-data-header-size", "give each data request its whole header and "
                  "fixed-length fields, and room for its status", _data_header_size),
    Rule("crypto-control-opcode", "use only create-session and destroy-session opcodes on "
         "the control queue", "5.9.7.2.1", f"{_SESSION} / Session operation: create session",
         (REQUEST,), _control_opcode),
    Rule("crypto-advertised", "create sessions only for services and algorithms the config "
         "space advertises", "5.9.4.2", _CONFIG, (REQUEST,), _advertised),
    Rule("crypto-key-len", "keep key_len within max_cipher_key_len and auth_key_len within "
         "max_auth_key_len", "5.9.4.2", _CONFIG, (REQUEST,), _key_lengths),
    Rule("crypto-destroy-session", "destroy only a session_id the device handed out",
         "5.9.7.2.1", f"{_SESSION} / Session operation: destroy session", (REQUEST,),
         _destroy_session),
    _service_rule("crypto-session-id", "in session mode, name a live session of the "
                  "opcode's service", _data_session),
    _service_rule("crypto-stateless-flag", "with REVISION_1, set flag to SESSION_MODE "
                  "unless the service's STATELESS_MODE was negotiated", _data_flag),
)
