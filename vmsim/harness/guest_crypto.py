"""Host side of the guest crypto programs (guests/initramfs/programs/crypto-reg.c,
afalg-kat.c, rsa-keyctl.c, afalg-stress.c, afalg-bench.c): the expected values
recomputed with `cryptography`, and the checks of their result lines (booting them is
vmsim.harness.runs).

Shared by `vmsim demo`, tests/e2e/test_crypto_guest.py and bench/guest_crypto.py. Every `check_*`
function returns a list of problems, empty when the run is right, so a failing test
names every wrong line at once.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmsim.harness.results import GuestRun, check_result

MASK64 = (1 << 64) - 1

# ------------------------------------------------ deterministic data (testgen.h)


class DataGen:
    """SplitMix64 byte stream, the same as guests/initramfs/testgen.h: each output
    word gives 8 bytes, least significant first, consumed in order."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64
        self.pending = b""

    def next64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def fill(self, n: int) -> bytes:
        out = bytearray(self.pending[:n])
        self.pending = self.pending[n:]
        while len(out) < n:
            word = self.next64().to_bytes(8, "little")
            take = min(8, n - len(out))
            out += word[:take]
            self.pending = word[take:]
        return bytes(out)


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a, the digest the guest prints for long outputs."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def digest_hex(data: bytes) -> str:
    return f"{fnv1a64(data):016x}"


# -------------------------------------------------------------- registration


REQUIRED_DRIVERS = ("virtio_crypto_aes_cbc", "virtio-crypto-rsa", "virtio-pkcs1-rsa")


def check_registration(run: GuestRun, failing: tuple[str, ...] = ()) -> list[str]:
    """crypto-reg found every driver of the 6.1 virtio_crypto with a passed self-test,
    except exactly the drivers in `failing` (QEMU 7.2: its raw RSA)."""
    found = {e.get("driver"): e.get("selftest") for e in run.events("reg")}
    problems = []
    for driver in REQUIRED_DRIVERS:
        selftest = found.get(driver)
        want_pass = driver not in failing
        if selftest is None:
            problems.append(f"crypto-reg: no line for {driver}")
        elif (selftest == "passed") != want_pass:
            problems.append(f"crypto-reg: {driver} selftest={selftest} "
                            f"(want {'passed' if want_pass else 'not passed'})")
    if failing:
        problems += check_result(run, "crypto-reg", "fail")
        said = (run.result("crypto-reg") or {}).get("failed", "")
        if sorted(said.split(",")) != sorted(failing):
            problems.append(f"crypto-reg: failed={said} (want {','.join(failing)})")
    else:
        problems += check_result(run, "crypto-reg")
    return problems


def check_no_algorithms(run: GuestRun) -> list[str]:
    """crypto-reg with vmsim.expect_algs=none: no virtio algorithm registered."""
    algs = [f"crypto-reg: unexpected {e}" for e in run.events("alg")]
    return algs + check_result(run, "crypto-reg")


# ------------------------------------------------------ AES-CBC known answers


KAT_KEY_SIZES = (16, 24, 32)
KAT_LENGTHS = (0, 16, 32, 48, 80, 208, 1040, 4096, 4112, 12304, 65536)
KAT_MODES = ("single", "iov", "more", "splice")


def kat_case(key_bytes: int, length: int, mode: str) -> tuple[bytes, bytes, bytes]:
    """(key, iv, plaintext) of one afalg-kat case, drawn as the guest draws them: one
    stream seeded with (key bytes << 56) | (mode index << 48) | length gives the key,
    then the 16-byte IV, then the plaintext."""
    gen = DataGen((key_bytes << 56) | (KAT_MODES.index(mode) << 48) | length)
    return gen.fill(key_bytes), gen.fill(16), gen.fill(length)


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


@lru_cache(maxsize=1)
def expected_kat() -> dict[tuple[str, str, str], tuple[str, str]]:
    """(key bits, length, mode) -> (ciphertext digest, plaintext digest), as printed."""
    table = {}
    for key_bytes in KAT_KEY_SIZES:
        for length in KAT_LENGTHS:
            for mode in KAT_MODES:
                key, iv, plain = kat_case(key_bytes, length, mode)
                table[str(key_bytes * 8), str(length), mode] = (
                    digest_hex(aes_cbc_encrypt(key, iv, plain)), digest_hex(plain))
    return table


def check_kat(run: GuestRun) -> list[str]:
    """Every expected afalg-kat line is there, once, with the right digests."""
    want = expected_kat()
    seen: set[tuple[str, str, str]] = set()
    problems = []
    for line in run.events("kat"):
        case = (line.get("key", ""), line.get("len", ""), line.get("mode", ""))
        name = f"afalg-kat key={case[0]} len={case[1]} mode={case[2]}"
        if case not in want:
            problems.append(f"{name}: not an expected case")
            continue
        if case in seen:
            problems.append(f"{name}: reported twice")
        seen.add(case)
        got = (line.get("ct"), line.get("pt"))
        if got != want[case] or line.get("err") != "0":
            problems.append(f"{name}: ct={got[0]} pt={got[1]} err={line.get('err')}, "
                            f"want ct={want[case][0]} pt={want[case][1]} err=0")
    problems += [f"afalg-kat key={k} len={n} mode={m}: missing"
                 for k, n, m in sorted(want.keys() - seen)]
    return problems + check_result(run, "afalg-kat")


# -------------------------------------------------------------------- RSA


# RSA-2048 test key, PKCS#8; the same DER bytes are in rsa-keyctl.c. Generated once with
# `cryptography`; a test only, never a secret.
TEST_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCi3mLqxku2wFsz
9viWgS3AlCzA1T4Ht8hMyQY/wAgg5IThNVWNx7kfYp0MT3u5VQDAMcPe6vkaoBhw
qLvR4j+4uz6BYhFFv6UtIyyGoW7s/z5ub8mudWkCVPf1xVMcnpc6mUvWBplez0rl
L5cVQLelP6S4AK32Zc/fmh76DjF0swkcvYFaSZpO84rBxi2vZHHscDosXtcgtoi5
oK8qx1D3UGTYhRtqn9g00rs2JIXthWxFXjM9B63ZkpNc5kVwHPApmzwecmzckvyg
CihmfuiRrLz1j+/izupXT7evIRpq3uy1ONqdrj9F+Y9gR2K47KmObJAQSPEjklBq
UNsCTv2lAgMBAAECggEAHhgtG3gaJ/HpuFOnkfnbKCVJErWkcV0kegnAKZn0do17
PzjxbtILkzDP16U9NZzvF1Rqvr9Y2bJg6bpIAEuH3jzdGx+xlNuJbCp+cP8V5d1x
HgtybxXbWja0nbmBNr3YMFgAoxLTlqkDjA9L4b20YWi96VEY0/lynHzYQfjK6ybZ
bwcE6tKiDY6pfgaAZBp0+osVgLHfEwlfdZMdv3HHbR4Za3U2wqeqottvxZyPtSk4
ytibQMBIMMKpYFLkM+TnIP2aab7RJVf4W9KqtOhMVVZJC9+Vy4WEvnBRapUQ3eLu
FeCp6x61Z6WKvOBmNgbx41sdeAX07g14G/UmQilI6QKBgQDNZh2f4PO4lVP68lbl
YwPNSQ8pF0Fu6zVlS5RAWIBfpQ1LcQnSfOIV99i6vFMdy6MbDEqF2oCZEoeb/v50
CEZk0vFLwZpcpqZ4AsniX+6aIOT+NPpwqiZj9jySrVHb+RxJPEhgBz0h1IBNUw0R
r0vQT6qe6VUx6vIeN9jjF1NGaQKBgQDK/gVDl+G2/0UMwnBjhOdd1cfmt6LxVIim
AeZql5TUlW240dbeiKwoqTOCrmr1/itmMprZfb6iDMVcJuuIZIL2KUFoszIswb3I
pwRniqFh5v9zkzsKaPjvkpwZBzCnHWEJK6AKS+5n6s7Jnm4iVJJSayK5fjAY6wB5
iRxWfdzt3QKBgQCSM8KYf+3bkGdjs8YIp28YW42wCP6pbkDmpmKTXquZ6QlKjt6X
9g6T5oRdfxmGluG1qg0NtBdfXeIrNtl2TEGXGNNqwhcXJgROXmXHfdN/4DQ/ggRV
17dV5fr9yOMAuhPZSVCXEfAAuZrN73TZBrbnQx3G2X2r93l56vS1yG+dKQKBgBMG
8nlegDLGBLPoed5qM8Gw6zbuGaDjWpes7+sn4DR4+TrsuGZNi02YZpKmRLJgK7M9
pRQj3D2WUt2LbGJxgXEPdukYeuiFFIP9W8VU0kG6BFHSCCO2qTbTmDwkV2QitdjF
NRAiA+vLr6xoZExlfv2ouy2F7X44cOfzeSuGSrIlAoGAHpsdQbXtJKmTglfbuuj5
a84ZJHP2dthjGXZGp/lJ3LuSvQPOXTjfe0yml+em79XySQw5FML9XDbEt+SVf7AR
gze6ZH4/O/sx3XN4usoVAFCRu5wmDhA/5SC07T+10340AK7aRnRsWNmJD0oKtpGf
RibC7AyXPvqZgwxWFXyBhoY=
-----END PRIVATE KEY-----
"""

RSA_SEED = 0x7273612D32303438          # "rsa-2048", as in rsa-keyctl.c
RSA_KEY_BYTES = 256
RSA_OPS = ("encrypt-pkcs1", "decrypt-pkcs1", "sign-pkcs1-sha1", "verify-pkcs1-sha1",
           "verify-corrupt", "encrypt-raw", "decrypt-raw")


def rsa_key_der() -> bytes:
    """The test key as the PKCS#8 DER that the guest loads."""
    body = b"".join(TEST_KEY_PEM.strip().splitlines()[1:-1])
    return base64.b64decode(body)


@lru_cache(maxsize=1)
def rsa_test_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(TEST_KEY_PEM, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@dataclass(frozen=True)
class RsaInputs:
    message: bytes      # encrypted with PKCS#1 v1.5
    digest: bytes       # signed as a SHA-1 digest
    raw: bytes          # encrypted raw; first byte 0, so below the modulus


def rsa_inputs() -> RsaInputs:
    gen = DataGen(RSA_SEED)
    message, digest, raw = gen.fill(32), gen.fill(20), gen.fill(RSA_KEY_BYTES)
    return RsaInputs(message, digest, b"\0" + raw[1:])


def rsa_hex(run: GuestRun, what: str) -> bytes:
    """Reassemble one output that rsa-keyctl printed as numbered hex parts."""
    parts = sorted((int(e["part"]), e["hex"]) for e in run.events("rsa-hex")
                   if e.get("what") == what and "part" in e and "hex" in e)
    return bytes.fromhex("".join(text for _, text in parts))


# What the kernel must have instantiated when the device's RSA serves every keyctl
# operation: the signature template sits on the device's raw RSA.
DEVICE_RSA_DRIVERS = {"rsa": "virtio-crypto-rsa", "pkcs1pad(rsa)": "virtio-pkcs1-rsa",
                      "pkcs1pad(rsa,sha1)": "pkcs1pad(virtio-crypto-rsa,sha1)"}


def check_rsa_on_device(run: GuestRun) -> list[str]:
    """Each RSA algorithm keyctl used has a device driver among its passed instances.

    The kernel picks the highest-priority tested driver, and the device's (150) beat
    the generic ones (100), so a passed device driver is the one that ran."""
    passed = {(e.get("name"), e.get("driver")) for e in run.events("rsa-alg")
              if e.get("selftest") == "passed"}
    return [f"rsa-keyctl: {name} not served by {driver}"
            for name, driver in DEVICE_RSA_DRIVERS.items() if (name, driver) not in passed]


def check_rsa(run: GuestRun) -> list[str]:
    """The guest's RSA outputs are right by the host's RSA: the signature is the one
    PKCS#1 v1.5 defines (it is deterministic) and verifies, the PKCS#1 ciphertext
    decrypts to the message, and the raw ciphertext is m^e mod n."""
    problems = check_result(run, "rsa-keyctl")
    ops = {e.get("op"): e for e in run.events("rsa")}
    problems += [f"rsa-keyctl: {op} missing or not ok: {ops.get(op)}" for op in RSA_OPS
                 if ops.get(op, {}).get("ok") != "1"]
    key, inputs = rsa_test_key(), rsa_inputs()
    public = key.public_key().public_numbers()

    sig = rsa_hex(run, "sig-pkcs1-sha1")
    want_sig = key.sign(inputs.digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    if sig != want_sig:
        problems.append(f"rsa-keyctl: signature {sig.hex()[:32]}... is not the PKCS#1 v1.5 "
                        f"SHA-1 signature {want_sig.hex()[:32]}...")

    ct = rsa_hex(run, "ct-pkcs1")
    try:
        plain = key.decrypt(ct, padding.PKCS1v15())
    except ValueError:
        plain = None
    if plain != inputs.message:
        problems.append(f"rsa-keyctl: PKCS#1 ciphertext ({len(ct)} bytes) does not decrypt "
                        f"to the message")

    raw_ct = rsa_hex(run, "ct-raw")
    want_raw = pow(int.from_bytes(inputs.raw, "big"), public.e, public.n)
    if not raw_ct or int.from_bytes(raw_ct, "big") != want_raw:
        problems.append("rsa-keyctl: raw ciphertext is not m^e mod n")

    for op, data in (("encrypt-pkcs1", ct), ("sign-pkcs1-sha1", sig), ("encrypt-raw", raw_ct),
                     ("decrypt-pkcs1", inputs.message)):
        if op in ops and ops[op].get("digest") != digest_hex(data):
            problems.append(f"rsa-keyctl: {op} digest {ops[op].get('digest')} does not match "
                            f"its output")
    return problems


# ------------------------------------------------------------------ stress


def check_stress(run: GuestRun, procs: int, ops: int) -> list[str]:
    """Every process did all its requests right, and the kernel log stayed clean."""
    problems = check_result(run, "afalg-stress")
    done = {e.get("id"): e for e in run.events("stress-proc")}
    for i in range(procs):
        line = done.get(str(i))
        if not line or line.get("ok") != "1" or line.get("ops") != str(ops):
            problems.append(f"afalg-stress: process {i}: {line}")
    problems += [f"afalg-stress: kernel log: {e.get('text')}" for e in run.events("kmsg-bad")]
    problems += [f"afalg-stress: hang: {e}" for e in run.events("stress-hang")]
    return problems


# ---------------------------------------------------------------- benchmark


@dataclass(frozen=True)
class BenchPoint:
    size: int
    procs: int
    ops: int
    ms: int
    ops_per_s: float
    mb_per_s: float
    ok: bool
    pattern: str = "persistent"     # or "oneshot": an operation socket per request


def bench_points(run: GuestRun) -> list[BenchPoint]:
    """The afalg-bench lines, in order."""
    return [BenchPoint(int(e["size"]), int(e["procs"]), int(e["ops"]), int(e["ms"]),
                       float(e["ops_per_s"]), float(e["mb_per_s"]),
                       e.get("err") == "0" and e.get("hung") == "0",
                       e.get("pattern", "persistent"))
            for e in run.events("bench")]
