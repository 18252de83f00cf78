"""Gzip-compressed kernels (`Image.gz`), which QEMU's arm loader accepts and vmsim's
loaders accept on both boards.

Decompression is bounded by the guest's RAM, so a small hostile file cannot make vmsim
allocate or inflate more than it could load anyway.
"""
from __future__ import annotations

import zlib
from pathlib import Path

from vmsim.errors import VmsimError

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(data: bytes) -> bool:
    return data.startswith(GZIP_MAGIC)


def gunzip(data: bytes, limit: int, path: Path, *, head_only: bool = False) -> bytes:
    """The content of a gzip stream, at most `limit` bytes of it; more is an error,
    unless `head_only` asks for just the first `limit` bytes of a stream that may be
    cut short."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + (0 if head_only else 1))
    except zlib.error as error:
        raise VmsimError(f"{path}: corrupt gzip data ({error})") from None
    if head_only:
        return out
    if len(out) > limit:
        raise VmsimError(f"{path}: decompresses to more than the guest's {limit} bytes of RAM")
    if not inflater.eof:
        raise VmsimError(f"{path}: truncated gzip data")
    return out
