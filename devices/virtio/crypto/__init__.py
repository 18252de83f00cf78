"""The virtio-crypto device (device ID 20).

Public API (everything else is internal):

    from vmsim.devices.virtio.crypto import CryptoDevice, CryptoFeatures, Limits
    device = CryptoDevice(max_dataqueues=1, workers=None, hw_ready=True,
                          features=CryptoFeatures.DEFAULT, waker=waker, trace=sink)
    ...                      # a VirtioDevice: give it to the virtio-mmio transport
    device.poll()            # on the CPU thread after waker.wake(): writes pooled results
    device.stats[i]          # per-queue counters (requests, bytes_in, inline, pooled, statuses)
    device.close()           # stops the worker processes; call at machine shutdown

Modules: constants (spec numbers), config (the 56-byte config space), wire (field access,
RequestError), cipher / digest / aead / akcipher / chaining (one service each, on
`cryptography`), sessions (the immutable session table), control (control queue),
requests (data-queue parsing into immutable Jobs), execute (runs a Job; the only thing
workers run), pool + worker (the worker processes), device (the VirtioDevice).

Decisions where the sources disagree or are silent:
- AKCIPHER algorithm IDs follow Linux/QEMU on the wire: RSA 1, DSA 2 (not offered),
  ECDSA 3; the spec text says ECDSA = 2. akcipher_algo advertises bits 1 and 3.
- Chaining, session mode: the variable fields are read in the spec's order iv, src, aad
  (QEMU reads iv, aad, src). The AAD is authenticated ahead of the hash region.
- GMAC-AES (a MAC request has no IV field): the first 12 bytes of the message are the IV.
- Destroying an unknown session is ERR (the spec's destroy statuses are OK and ERR);
  a data request on an unknown session, or one of another service, is INVSESS.
- A full session table is NOSPC with REVISION_1 and ERR without it.
- REVISION_1 drops the 56/48-byte flf padding; stateless requests (flag without
  FLAG_SESSION_MODE) are accepted per service only when that stateless bit was
  negotiated, else NOTSUPP. None of this is offered unless the constructor enables it,
  and a STATELESS bit without REVISION_1 (or an undefined bit) is a ValueError at
  construction: the spec makes every STATELESS bit require REVISION_1.
- A pooled result whose queue was stopped (QueueReady = 0), reset or put in
  NEEDS_RESET before it came back is dropped, counted and traced, never written.
- used.len claims only bytes written: the output, plus the status when it directly
  follows; AKCIPHER reports result + 1 and also writes the status right after the
  result, so it lies within used.len while Linux still finds it in the last byte.
- A request must agree with its session: a CIPHER/AEAD opcode for the other
  direction, or a SYM op_type of the other kind (plain vs chain), is INVSESS; an
  op_type the device does not know is NOTSUPP; a stateless sess_para.op that
  contradicts the opcode is NOTSUPP (there is no session to blame).
- AEAD IVs as the spec's request structure describes them: GCM takes a 12-byte IV or
  a 16-byte J0 (nothing else); CCM's IV field is 16 bytes with the nonce from iv[1];
  the per-request tag_len must equal the session's (INVSESS otherwise).
- A chain the queue refuses is answered ERR in its last writable byte, and the queue
  carries on, when the queue can still find that byte; only a chain whose end cannot
  be found (or a broken ring) gets DEVICE_NEEDS_RESET, which Linux 6.1 ignores. Each
  refusal is logged once per reason as a guest error.
- Bounded memory: pooled jobs hold at most `max_inflight_bytes` (the max-inflight
  option, 64 MiB by default; one request more at most); past it no chain is popped
  until completions free room. A reset drops every job, the pool's queue included.
- Bounded public-key work: RSA keys past OpenSSL's limits (modulus over 16384 bits;
  over 3072 bits, a public exponent over 64 bits) are NOTSUPP at session creation,
  inconsistent numbers ERR; a pooled job gets ERR past its time limit (10 s; its
  worker is replaced, the jobs behind it move on); the CPU thread runs only
  public-key jobs estimated within INLINE_WORK (2^20 limb products, tens of ms).

docs/virtio-crypto.md gives each decision with its spec section and its test.
"""
from vmsim.devices.virtio.crypto.config import Limits
from vmsim.devices.virtio.crypto.constants import CryptoFeatures
from vmsim.devices.virtio.crypto.device import CryptoDevice

__all__ = ["CryptoDevice", "CryptoFeatures", "Limits"]
