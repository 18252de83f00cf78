"""Modular exponentiation for raw RSA, through the host's OpenSSL when it has one.

`cryptography` has no raw (unpadded) RSA, so the device computes it from the key's
integers (vmsim.devices.virtio.crypto.akcipher). Python's `pow` is about ten times
slower than OpenSSL's Montgomery exponentiation: a 4096-bit private operation without
CRT values (one of the kernel's RSA self-tests at boot) took about 250-360 ms against
about 25 ms. This calls libcrypto's BN_mod_exp through ctypes, and falls back to `pow`
where libcrypto cannot be loaded; both give the same result.

`UNIT_SPEEDUP` is how many times cheaper a unit of `akcipher.cost` (one 64-bit limb
product) is here than with `pow`, conservatively, so that the device's inline budget
stays a budget of time. The library is opened on first use, by its soname (Python's
own ssl and hashlib modules link it), not found with `ctypes.util.find_library`, which
runs ldconfig: `vmsim run` imports this module on every start.
"""
from __future__ import annotations

import ctypes
from typing import Any

SONAMES = ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so")
_UNLOADED = object()
_lib: Any = _UNLOADED


def _load() -> Any:
    """libcrypto with the few BN prototypes used, or None."""
    for name in SONAMES:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return None
    try:
        ptr, size = ctypes.c_void_p, ctypes.c_int
        lib.BN_new.restype = ptr
        lib.BN_new.argtypes = []
        lib.BN_free.argtypes = [ptr]
        lib.BN_free.restype = None
        lib.BN_bin2bn.restype = ptr
        lib.BN_bin2bn.argtypes = [ctypes.c_char_p, size, ptr]
        lib.BN_bn2binpad.restype = size
        lib.BN_bn2binpad.argtypes = [ptr, ctypes.c_char_p, size]
        lib.BN_CTX_new.restype = ptr
        lib.BN_CTX_new.argtypes = []
        lib.BN_CTX_free.argtypes = [ptr]
        lib.BN_CTX_free.restype = None
        lib.BN_mod_exp.restype = size
        lib.BN_mod_exp.argtypes = [ptr, ptr, ptr, ptr, ptr]
    except (OSError, AttributeError):
        return None
    return lib


def _library() -> Any:
    global _lib
    if _lib is _UNLOADED:
        _lib = _load()
    return _lib


def has_openssl() -> bool:
    return _library() is not None


UNIT_SPEEDUP = 8                 # with libcrypto; akcipher.cost asks has_openssl() first


def modexp(base: int, exponent: int, modulus: int) -> int:
    """base ** exponent mod modulus, for non-negative integers and modulus > 1."""
    lib = _library()
    if lib is None or modulus < 2 or base < 0 or exponent < 0:
        return pow(base, exponent, modulus)
    numbers = []
    ctx = lib.BN_CTX_new()
    result = lib.BN_new()
    try:
        if not ctx or not result:
            return pow(base, exponent, modulus)
        for value in (base, exponent, modulus):
            raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
            number = lib.BN_bin2bn(raw, len(raw), None)
            if not number:
                return pow(base, exponent, modulus)
            numbers.append(number)
        if lib.BN_mod_exp(result, numbers[0], numbers[1], numbers[2], ctx) != 1:
            return pow(base, exponent, modulus)
        size = (modulus.bit_length() + 7) // 8
        out = ctypes.create_string_buffer(size)
        if lib.BN_bn2binpad(result, out, size) != size:
            return pow(base, exponent, modulus)
        return int.from_bytes(out.raw, "big")
    finally:
        for number in numbers:
            lib.BN_free(number)
        if result:
            lib.BN_free(result)
        if ctx:
            lib.BN_CTX_free(ctx)
