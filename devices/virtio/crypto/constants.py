"""Numbers from the virtio-crypto specification (virtio 1.3, the crypto device section).

Where the spec and the Linux headers disagree, the wire follows Linux, because the
Linux driver is the one real user: the AKCIPHER algorithm IDs are RSA = 1, DSA = 2,
ECDSA = 3 (the spec text says ECDSA = 2).
"""
from __future__ import annotations

from enum import IntEnum, IntFlag

DEVICE_ID = 20


class Service(IntEnum):
    CIPHER = 0
    HASH = 1
    MAC = 2
    AEAD = 3
    AKCIPHER = 4


class Status(IntEnum):
    OK = 0
    ERR = 1
    BADMSG = 2
    NOTSUPP = 3
    INVSESS = 4
    NOSPC = 5
    KEY_REJECTED = 6


def opcode(service: Service, op: int) -> int:
    return (int(service) << 8) | op


class Op(IntEnum):
    """Control and data opcodes: (service << 8) | op."""

    CIPHER_ENCRYPT = opcode(Service.CIPHER, 0)
    CIPHER_DECRYPT = opcode(Service.CIPHER, 1)
    CIPHER_CREATE_SESSION = opcode(Service.CIPHER, 2)
    CIPHER_DESTROY_SESSION = opcode(Service.CIPHER, 3)
    HASH = opcode(Service.HASH, 0)
    HASH_CREATE_SESSION = opcode(Service.HASH, 2)
    HASH_DESTROY_SESSION = opcode(Service.HASH, 3)
    MAC = opcode(Service.MAC, 0)
    MAC_CREATE_SESSION = opcode(Service.MAC, 2)
    MAC_DESTROY_SESSION = opcode(Service.MAC, 3)
    AEAD_ENCRYPT = opcode(Service.AEAD, 0)
    AEAD_DECRYPT = opcode(Service.AEAD, 1)
    AEAD_CREATE_SESSION = opcode(Service.AEAD, 2)
    AEAD_DESTROY_SESSION = opcode(Service.AEAD, 3)
    AKCIPHER_ENCRYPT = opcode(Service.AKCIPHER, 0)
    AKCIPHER_DECRYPT = opcode(Service.AKCIPHER, 1)
    AKCIPHER_SIGN = opcode(Service.AKCIPHER, 2)
    AKCIPHER_VERIFY = opcode(Service.AKCIPHER, 3)
    AKCIPHER_CREATE_SESSION = opcode(Service.AKCIPHER, 4)
    AKCIPHER_DESTROY_SESSION = opcode(Service.AKCIPHER, 5)


CREATE_SESSION_OPS = {
    Op.CIPHER_CREATE_SESSION: Service.CIPHER,
    Op.HASH_CREATE_SESSION: Service.HASH,
    Op.MAC_CREATE_SESSION: Service.MAC,
    Op.AEAD_CREATE_SESSION: Service.AEAD,
    Op.AKCIPHER_CREATE_SESSION: Service.AKCIPHER,
}
DESTROY_SESSION_OPS = {
    Op.CIPHER_DESTROY_SESSION: Service.CIPHER,
    Op.HASH_DESTROY_SESSION: Service.HASH,
    Op.MAC_DESTROY_SESSION: Service.MAC,
    Op.AEAD_DESTROY_SESSION: Service.AEAD,
    Op.AKCIPHER_DESTROY_SESSION: Service.AKCIPHER,
}


class CipherAlgo(IntEnum):
    NO_CIPHER = 0
    ARC4 = 1
    AES_ECB = 2
    AES_CBC = 3
    AES_CTR = 4
    DES_ECB = 5
    DES_CBC = 6
    DES3_ECB = 7
    DES3_CBC = 8
    DES3_CTR = 9
    KASUMI_F8 = 10
    SNOW3G_UEA2 = 11
    AES_F8 = 12
    AES_XTS = 13
    ZUC_EEA3 = 14


class HashAlgo(IntEnum):
    NO_HASH = 0
    MD5 = 1
    SHA1 = 2
    SHA_224 = 3
    SHA_256 = 4
    SHA_384 = 5
    SHA_512 = 6
    SHA3_224 = 7
    SHA3_256 = 8
    SHA3_384 = 9
    SHA3_512 = 10
    SHAKE128 = 11
    SHAKE256 = 12


class MacAlgo(IntEnum):
    NO_MAC = 0
    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_SHA_224 = 3
    HMAC_SHA_256 = 4
    HMAC_SHA_384 = 5
    HMAC_SHA_512 = 6
    CMAC_3DES = 25
    CMAC_AES = 26
    KASUMI_F9 = 27
    SNOW3G_UIA2 = 28
    GMAC_AES = 41
    GMAC_TWOFISH = 42
    CBCMAC_AES = 49
    CBCMAC_KASUMI_F9 = 50
    XCBC_AES = 53
    ZUC_EIA3 = 54


class AeadAlgo(IntEnum):
    NO_AEAD = 0
    GCM = 1
    CCM = 2
    CHACHA20_POLY1305 = 3


class AkcipherAlgo(IntEnum):
    """Linux/QEMU numbering (the spec says ECDSA = 2; see the module docstring)."""

    NO_AKCIPHER = 0
    RSA = 1
    DSA = 2
    ECDSA = 3


class CipherDirection(IntEnum):
    ENCRYPT = 1
    DECRYPT = 2


class SymOp(IntEnum):
    NONE = 0
    CIPHER = 1
    ALGORITHM_CHAINING = 2


class ChainOrder(IntEnum):
    HASH_THEN_CIPHER = 1
    CIPHER_THEN_HASH = 2


class HashMode(IntEnum):
    PLAIN = 1
    AUTH = 2
    NESTED = 3


class KeyType(IntEnum):
    PUBLIC = 1
    PRIVATE = 2


class RsaPadding(IntEnum):
    RAW = 0
    PKCS1 = 1


class RsaHash(IntEnum):
    NO_HASH = 0
    MD2 = 1
    MD3 = 2
    MD4 = 3
    MD5 = 4
    SHA1 = 5
    SHA256 = 6
    SHA384 = 7
    SHA512 = 8
    SHA224 = 9


class Curve(IntEnum):
    UNKNOWN = 0
    NIST_P192 = 1
    NIST_P224 = 2
    NIST_P256 = 3
    NIST_P384 = 4
    NIST_P521 = 5


class CryptoFeatures(IntFlag):
    """Device feature bits 0..5. DEFAULT offers none, which is exactly what the Linux
    6.1 driver negotiates (its feature table is empty)."""

    NONE = 0
    REVISION_1 = 1 << 0
    CIPHER_STATELESS_MODE = 1 << 1
    HASH_STATELESS_MODE = 1 << 2
    MAC_STATELESS_MODE = 1 << 3
    AEAD_STATELESS_MODE = 1 << 4
    AKCIPHER_STATELESS_MODE = 1 << 5
    DEFAULT = 0
    ALL = 0x3F


STATELESS_FEATURE = {
    Service.CIPHER: CryptoFeatures.CIPHER_STATELESS_MODE,
    Service.HASH: CryptoFeatures.HASH_STATELESS_MODE,
    Service.MAC: CryptoFeatures.MAC_STATELESS_MODE,
    Service.AEAD: CryptoFeatures.AEAD_STATELESS_MODE,
    Service.AKCIPHER: CryptoFeatures.AKCIPHER_STATELESS_MODE,
}

# Config `status` bit; the only one defined.
HW_READY = 1 << 0
# Data header `flag` bit, meaningful only with REVISION_1.
FLAG_SESSION_MODE = 1

# Wire sizes.
CTRL_HEADER_SIZE = 16          # opcode, algo, flag, queue_id/reserved
CTRL_FLF_LEGACY = 56           # op_flf padding without REVISION_1
DATA_HEADER_SIZE = 24          # opcode, algo, session_id, flag, padding
DATA_FLF_LEGACY = 48           # op_flf padding without REVISION_1
CREATE_SESSION_INPUT_SIZE = 16  # session_id le64, status le32, padding
