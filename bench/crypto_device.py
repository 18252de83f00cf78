"""virtio-crypto device throughput, no CPU: AES-CBC requests through real virtqueues.

For 16 B, 256 B, 4 KiB and 64 KiB requests it prints requests/s and MB/s for the device
with 1 and 4 data queues, inline and on the worker pool, beside raw `cryptography`
AES-CBC in one process (a fresh cipher context per request, as the device needs), and
the ratio of the best device figure to raw. The guest side is the Python test driver:
the same pre-built indirect chains are made available again each round, and its cost
(a few µs per request) is included in the device figures.

Run: .venv/bin/python bench/crypto_device.py [seconds-per-cell]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from vmsim.devices.virtio.crypto.constants import CipherAlgo, Op, SymOp  # noqa: E402
from vmsim.devices.virtio.crypto.device import CryptoDevice  # noqa: E402
from vmsim.devices.virtio.spec import Desc  # noqa: E402
from vmsim.testing.virtio_driver import Descriptor  # noqa: E402
from vmsim.testing.crypto_rig import ServiceRig, sym_flf, u32  # noqa: E402

SIZES = [16, 256, 4096, 65536]
KEY, IV = bytes(range(16)), bytes(16)


class EventWaker:
    """The machine's side of Waker: the collector thread sets it, the 'CPU' polls."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


def raw_rate(size: int, seconds: float) -> float:
    data = os.urandom(size)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(64):
            enc = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
            enc.update(data)
            enc.finalize()
        count += 64
    return count / (time.perf_counter() - start)


def device_rate(size: int, queues: int, pooled: bool, seconds: float) -> float:
    waker = EventWaker()
    device = CryptoDevice(max_dataqueues=queues, workers=None if pooled else 0, waker=waker,
                          inline_max_bytes=0 if pooled else 1 << 30)
    per_queue = max(4, min(128, (8 << 20) // (size * 2 * queues)))
    # No trace sink, as in the machine: recording events would be measured too.
    rig = ServiceRig(device, queue_size=256, ram_size=64 << 20, trace=False)
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
        header = rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, size, size), SymOp.CIPHER))
        heads: list[list[int]] = []
        for q in range(queues):
            dq = rig.driver.queues[q]
            heads.append([])
            for i in range(per_queue):
                readable = [rig.driver.heap.put(header), rig.driver.heap.put(IV), rig.driver.heap.put(os.urandom(size))]
                segs = [Descriptor(a, n) for a, n in zip(readable, (len(header), 16, size))]
                segs += [Descriptor(rig.driver.heap.alloc(size), size, Desc.WRITE),
                         Descriptor(rig.driver.heap.alloc(1), 1, Desc.WRITE)]
                table, length = dq.indirect_table(segs)
                dq.write_desc(i, Descriptor(table, length, Desc.INDIRECT))
                heads[q].append(i)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            targets = []
            for q in range(queues):
                dq = rig.driver.queues[q]
                for head in heads[q]:
                    dq.make_available(head)
                targets.append((dq.used_idx() + per_queue) & 0xFFFF)
                dq.kick()
            while any(rig.driver.queues[q].used_idx() != targets[q] for q in range(queues)):
                waker.event.wait(0.05)
                waker.event.clear()
                device.poll()
            done += per_queue * queues
        return done / (time.perf_counter() - start)
    finally:
        rig.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("seconds", nargs="?", type=float, default=1.0,
                        help="measuring time per point (default 1)")
    seconds = parser.parse_args().seconds
    cols = [("inline 1q", 1, False), ("inline 4q", 4, False), ("pool 1q", 1, True), ("pool 4q", 4, True)]
    print(f"AES-CBC, {os.cpu_count()} CPUs, pool workers = CPU count; req/s and MB/s (MB = 10^6 B)")
    print(f"{'size':>7} | {'raw cryptography':>20} | " + " | ".join(f"{c[0]:>20}" for c in cols) + " | best/raw")
    for size in SIZES:
        raw = raw_rate(size, seconds)
        rates = [device_rate(size, q, pooled, seconds) for _, q, pooled in cols]
        cells = [f"{r:>9.0f} {r * size / 1e6:>8.1f}MB/s" for r in [raw, *rates]]
        print(f"{size:>7} | " + " | ".join(f"{c:>20}" for c in cells) + f" | {max(rates) / raw:>7.0%}")


if __name__ == "__main__":
    main()
