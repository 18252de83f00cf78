"""CBC through one long-lived context per key and direction (cipher.CbcStream): every
request, whatever came before it on that context, gives what a fresh CBC context gives."""
from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from vmsim.devices.virtio.crypto import cipher
from vmsim.devices.virtio.crypto.constants import CipherAlgo, Op, Status
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.testing.crypto_rig import ServiceRig

KEYS = [algorithms.AES(bytes(range(16))), algorithms.AES(bytes(range(1, 25))),
        algorithms.AES(bytes(range(2, 34))), decrepit.TripleDES(bytes(range(3, 27)))]


def fresh_cbc(algorithm: object, iv: bytes, encrypt: bool, data: bytes) -> bytes:
    context = Cipher(algorithm, modes.CBC(iv))  # type: ignore[arg-type]
    ctx = context.encryptor() if encrypt else context.decryptor()
    return ctx.update(data) + ctx.finalize()


request = st.tuples(st.integers(0, len(KEYS) - 1), st.booleans(), st.integers(1, 70),
                    st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=16 * 70))


@settings(max_examples=150, deadline=None)
@given(st.lists(request, min_size=1, max_size=12))
def test_a_stream_of_requests_over_a_few_keys_matches_fresh_contexts(requests):
    """Keys, directions, IVs and lengths interleaved, so each context carries the state
    of some earlier, unrelated request into the next one."""
    for key_index, encrypt, blocks, iv, payload in requests:
        algorithm = KEYS[key_index]
        block = algorithm.block_size // 8
        iv = iv[:block]
        data = (payload * (blocks * block // len(payload) + 1))[:blocks * block]
        assert cipher._cbc(algorithm, iv, encrypt, data) == fresh_cbc(algorithm, iv, encrypt, data)


@pytest.mark.parametrize("encrypt", [True, False])
def test_a_short_iv_or_a_partial_block_is_refused_and_the_stream_stays_right(encrypt):
    """Its callers check lengths first; if one did not, the stream must refuse rather
    than run a partial block into its state and corrupt every later request."""
    algorithm = KEYS[0]
    stream = cipher.cbc_stream(type(algorithm), algorithm.key, encrypt)
    for iv, data in ((bytes(8), bytes(16)), (bytes(16), bytes(20)), (bytes(16), b"")):
        with pytest.raises(ValueError):
            stream.run(iv, data)
    iv, data = bytes(range(16)), bytes(range(64))
    assert stream.run(iv, data) == fresh_cbc(algorithm, iv, encrypt, data)


def test_a_sessions_requests_reuse_one_context():
    """Through the device: the second request on a session finds its key's context
    (a cache hit) instead of building one, and still answers as a fresh context would."""
    rig = ServiceRig(CryptoDevice(workers=0))
    try:
        key = bytes(range(16))
        session = rig.create_cipher(CipherAlgo.AES_CBC, key)
        before = cipher.cbc_stream.cache_info()
        for iv, data in ((bytes(16), bytes(32)), (bytes(range(16)), bytes(range(48)))):
            reply = rig.cipher(session, iv, data)
            assert reply.status == Status.OK
            assert reply.output == fresh_cbc(algorithms.AES(key), iv, True, data)
        after = cipher.cbc_stream.cache_info()
        assert after.hits >= before.hits + 1
        rig.destroy(Op.CIPHER_DESTROY_SESSION, session)
    finally:
        rig.close()
