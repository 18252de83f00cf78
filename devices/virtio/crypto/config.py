"""The 56-byte device configuration space and the limits it advertises.

The algorithm masks are computed from the algorithm tables, so the device advertises
exactly what it implements.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from vmsim.devices.virtio.crypto import aead, akcipher, cipher, digest
from vmsim.devices.virtio.crypto.constants import HW_READY, Service

CONFIG_SIZE = 56


@dataclass(frozen=True, slots=True)
class Limits:
    """What the device accepts; the driver reads them from config space."""

    max_cipher_key_len: int = 64
    max_auth_key_len: int = 512
    max_size: int = 16 << 20       # bytes of variable-length data per request


def config_bytes(max_dataqueues: int, hw_ready: bool, limits: Limits) -> bytes:
    """The config space as the driver sees it (little-endian `struct virtio_crypto_config`)."""
    services = sum(1 << s for s in (Service.CIPHER, Service.HASH, Service.MAC, Service.AEAD, Service.AKCIPHER))
    cipher_mask, mac_mask = cipher.algorithm_mask(), digest.mac_mask()
    return struct.pack(
        "<12IQ",
        HW_READY if hw_ready else 0,
        max_dataqueues,
        services,
        cipher_mask & 0xFFFF_FFFF, cipher_mask >> 32,
        digest.hash_mask(),
        mac_mask & 0xFFFF_FFFF, mac_mask >> 32,
        aead.algorithm_mask(),
        limits.max_cipher_key_len,
        limits.max_auth_key_len,
        akcipher.algorithm_mask(),
        limits.max_size,
    )


def read_field(blob: bytes, offset: int, size: int) -> int:
    """A 1/2/4/8-byte little-endian read; bytes past the end read as zero."""
    if offset < 0 or size <= 0:
        return 0
    return int.from_bytes(blob[offset:offset + size], "little")
