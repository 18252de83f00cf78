"""What a guest can make the host spend through the crypto device, bounded: the bytes
held in flight (a flood of large requests waits in the guest's own ring), and the
public-key work (key limits at session creation, a time limit per pooled job, and a
budget for anything that runs on the CPU thread)."""
from __future__ import annotations

import os
import time

import pytest

from vmsim.devices.virtio.crypto.constants import CipherAlgo, Op, Status, SymOp
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import Desc, Status as DevStatus
from vmsim.testing.crypto_rig import ServiceRig, sym_flf, u32
from vmsim.testing.virtio_driver import Descriptor

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """This process's resident set now (not the peak: earlier tests do not count)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


# ---- bytes in flight ----------------------------------------------------------------------

FLOOD_CHAINS = 200                # the red team's flood: 200 chains ...
FLOOD_SRC = 16 * MiB - 16         # ... on one 16 MiB buffer (max_size, the IV included)
CAP = 32 * MiB
# What one request can hold beyond its share of the cap while it moves between the
# device and a worker (the pickled copy going out, the result coming back and its
# unpickled copy), for each of the two requests that can be in flight at the cap.
SLACK = 2 * 4 * 16 * MiB


def flood(rig: ServiceRig, sid: int, chains: int) -> tuple[int, int]:
    """`chains` AES-CBC requests whose source is one 16 MiB guest buffer and whose
    destination is another, each in its own indirect table, made available with one
    kick. Returns the guest addresses of the first status byte and of the last."""
    heap, ram, q = rig.driver.heap, rig.rig.ram, rig.driver.queues[0]
    src, dst = heap.alloc(FLOOD_SRC, 4096), heap.alloc(FLOOD_SRC, 4096)
    ram.write(dst, bytes(FLOOD_SRC))                     # touched now, not during the flood
    header = heap.put(rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, FLOOD_SRC, FLOOD_SRC), SymOp.CIPHER)))
    iv = heap.put(bytes(16))
    statuses = []
    for head in range(chains):
        status = heap.alloc(1)
        ram.write(status, b"\xff")
        statuses.append(status)
        table = q.raw_table([Descriptor(header, 72, Desc.NEXT, 1), Descriptor(iv, 16, Desc.NEXT, 2),
                             Descriptor(src, FLOOD_SRC, Desc.NEXT, 3),
                             Descriptor(dst, FLOOD_SRC, Desc.WRITE | Desc.NEXT, 4),
                             Descriptor(status, 1, Desc.WRITE)])
        q.write_desc(head, Descriptor(table, 5 * 16, Desc.INDIRECT))
        q.make_available(head)
    return statuses


def test_a_flood_of_large_requests_is_held_to_the_in_flight_cap():
    """200 chains on one 16 MiB buffer, one doorbell: the device copies only as many
    as the cap allows and leaves the rest in the ring until completions free room.
    vmsim's memory stays under the cap plus a constant, and every chain is answered."""
    rig = ServiceRig(CryptoDevice(workers=2, max_inflight_bytes=CAP), queue_size=256, ram_size=48 * MiB)
    try:
        assert rig.device.wait_for_workers()
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        statuses = flood(rig, sid, FLOOD_CHAINS)
        q = rig.driver.queues[0]
        before = peak = rss()
        q.kick()
        assert rig.device.ctx.queues[0].pending() > 0, "the flood waits in the ring"
        answered, deadline = [], time.monotonic() + 600
        while len(answered) < FLOOD_CHAINS:
            assert time.monotonic() < deadline, f"{len(answered)} of {FLOOD_CHAINS} answered"
            rig.device.poll()
            answered += q.collect()
            peak = max(peak, rss())
            assert rig.device.inflight_bytes <= CAP + 2 * FLOOD_SRC + 4096
            time.sleep(0.001)
        assert sorted(u.head for u in answered) == list(range(FLOOD_CHAINS))
        assert {rig.rig.ram.read(s, 1) for s in statuses} == {bytes([Status.OK])}
        assert peak - before < CAP + SLACK, f"RSS grew by {(peak - before) / MiB:.0f} MiB"
        assert rig.device.inflight_bytes == 0
    finally:
        rig.close()


def test_a_reset_drops_every_queued_job():
    """Jobs waiting for a worker are dropped at a reset, not run for nobody."""
    rig = ServiceRig(CryptoDevice(workers=1, inline_max_bytes=0, max_inflight_bytes=1 << 40),
                     queue_size=64, ram_size=24 * MiB)
    try:
        assert rig.device.wait_for_workers()
        sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
        q = rig.driver.queues[0]
        size = 256 << 10
        header = rig.hdr(Op.CIPHER_ENCRYPT, sid, sym_flf(u32(16, size, size), SymOp.CIPHER))
        for _ in range(30):
            q.submit([header, bytes(16), bytes(size)], [size, 1], indirect=True, kick=False)
        q.kick()
        pool = rig.device._pool
        assert pool.queued() > 20 and rig.device.inflight_bytes > 20 * size
        rig.driver.reset()
        assert pool.queued() == 0 and rig.device.inflight_bytes == 0 and not rig.device._pending
    finally:
        rig.close()


def test_the_in_flight_cap_is_a_device_option():
    from vmsim.cli.device_option import parse_device
    from vmsim.devices.bus import LevelRecorder, NullWaker
    from vmsim.devices.memory import Ram
    from vmsim.devices.model import OptionError, SlotContext
    from vmsim.testing.virtio_driver import RAM_BASE
    request = parse_device("virtio-crypto,max-inflight=8,workers=0")
    ram = Ram(RAM_BASE, 1 << 20)
    transport = request.model.create(SlotContext(ram, LevelRecorder(), NullWaker()),
                                     request.model.resolve(request.given))
    assert transport.device.max_inflight_bytes == 8 * MiB
    assert CryptoDevice(workers=0).max_inflight_bytes == 64 * MiB       # the default
    for bad in ("0", "4097", "lots"):
        with pytest.raises(OptionError):
            parse_device(f"virtio-crypto,max-inflight={bad}")
    ram.close()
