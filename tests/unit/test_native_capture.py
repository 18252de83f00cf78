"""The pop event's chain copy in C (vmsim/native/chain_capture.c) against the Python
reference, `queue.chain_capture`: the same chains taken, the same listing observers get."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmsim.devices.memory import Ram
from vmsim.devices.virtio.crypto.constants import CipherAlgo
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio import native_capture
from vmsim.devices.virtio.queue import MAX_LISTED, PREVIEW_BYTES, chain_capture, chain_dicts
from vmsim.testing.crypto_rig import CryptoRig
from vmsim.trace.hub import TraceHub, plain_fields

BASE, SIZE = 0x8000_0000, 64 << 10
DESC = BASE                       # the descriptor table: 8 entries
TABLE = BASE + 0x200              # where the indirect tables go

NEXT, WRITE, INDIRECT = 1, 2, 4
ADDRS = st.one_of(st.integers(BASE + 0x1000, BASE + SIZE - 1),        # in RAM
                  st.integers(BASE + SIZE - 40, BASE + SIZE + 8),      # at its end
                  st.sampled_from([0, BASE - 1, 2**64 - 8, 2**64 - 1]))
LENGTHS = st.sampled_from([0, 1, 16, 31, 32, 33, 72, 4096, 2**32 - 1])


@st.composite
def tables(draw) -> tuple[bytes, int, int]:
    """A table Linux-shaped or bent, short or long (a 64 KiB request's has ~276
    entries, listed in part): entries in order or not, any flags, buffers in RAM, past
    its end or nowhere; with the head descriptor's length and flags."""
    count = draw(st.one_of(st.integers(1, MAX_LISTED + 3), st.integers(MAX_LISTED + 3, 300)))
    writable_from = draw(st.integers(0, count))
    entries = []
    for i in range(count):
        linux = (NEXT if i < count - 1 else 0) | (WRITE if i >= writable_from else 0)
        flags = draw(st.one_of(st.just(linux), st.sampled_from([0, NEXT, WRITE, NEXT | WRITE,
                                                                INDIRECT, 0xFFFF])))
        nxt = draw(st.one_of(st.just(i + 1), st.integers(0, count + 2)))
        entries.append(struct.pack("<QIHH", draw(ADDRS), draw(LENGTHS), flags, nxt))
    length = draw(st.one_of(st.just(16 * count), st.integers(0, 16 * (count + 3))))
    head_flags = draw(st.one_of(st.just(INDIRECT), st.sampled_from([0, NEXT, INDIRECT | NEXT,
                                                                    INDIRECT | WRITE])))
    return b"".join(entries), length, head_flags


@settings(max_examples=400, deadline=None)
@given(table=tables(), head=st.integers(0, 7), at=st.sampled_from([TABLE, BASE + SIZE - 64]),
       fill=st.binary(min_size=64, max_size=64))
def test_the_c_copy_lists_every_chain_as_python_does(table, head, at, fill) -> None:
    entries, length, head_flags = table
    ram = Ram(BASE, SIZE)
    ram.write(BASE + 0x1000, fill * ((SIZE - 0x1000) // 64))
    ram.write(at, entries[:BASE + SIZE - at])
    ram.write(DESC + 16 * head, struct.pack("<QIHH", at, length, head_flags, 0))
    capture = native_capture.for_table(ram, DESC, MAX_LISTED, PREVIEW_BYTES)
    assert capture is not None, "vmsim's native library is not built"
    native = capture(head)
    python = chain_capture(ram, DESC, 8, head)
    one_table = (head_flags & (INDIRECT | NEXT) == INDIRECT and length and not length % 16
                 and at + length <= BASE + SIZE)
    assert (native is not None) == bool(one_table)      # any other chain: Python lists it
    if native is not None:
        assert chain_dicts(native) == chain_dicts(python)


def test_a_head_descriptor_outside_ram_is_left_to_python() -> None:
    ram = Ram(BASE, SIZE)
    capture = native_capture.for_table(ram, BASE + SIZE - 8, MAX_LISTED, PREVIEW_BYTES)
    assert capture is not None and capture(0) is None
    assert native_capture.for_table(object(), DESC, MAX_LISTED, PREVIEW_BYTES) is None


@pytest.mark.parametrize("size", [16, 32, 100, 4096, 65536])
def test_written_previews_copied_in_c_read_as_pythons(monkeypatch, size) -> None:
    """A completion's `written` previews, copied in C after the device wrote the chain,
    read as Python's own copy does, for Linux-shaped requests of several sizes."""
    def completions(native: bool) -> list:
        if not native:
            monkeypatch.setattr(native_capture, "for_table", lambda *args: None)
        hub = TraceHub()
        sub = hub.subscribe()
        rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub, indirect=True)
        try:
            sid = rig.create_cipher(CipherAlgo.AES_CBC, bytes(16))
            for n in range(3):
                rig.cipher(sid, bytes(16), bytes([n + 1]) * size)
            items = [item for item in sub.drain_items() if item[4] == "complete"]
        finally:
            rig.close()
        assert any(type(item[6]) is tuple and item[6][-1][:1] == (native_capture.PACKED,)
                   for item in items) == native
        return [plain_fields(item[6])["written"] for item in items]
    assert completions(True) == completions(False)


def test_a_long_table_copies_only_the_buffers_it_lists() -> None:
    """A 64 KiB request's table: all 276 entries (the observer walks them), but the start
    of only the 16 buffers listed first and the last."""
    ram = Ram(BASE, SIZE)
    count = 276
    table = b"".join(struct.pack("<QIHH", BASE + 0x1000 + 64 * (i % 800), 4096,
                                 NEXT if i < count - 1 else WRITE, i + 1 if i < count - 1 else 0)
                     for i in range(count))
    ram.write(TABLE, table)
    ram.write(DESC, struct.pack("<QIHH", TABLE, len(table), INDIRECT, 0))
    capture = native_capture.for_table(ram, DESC, MAX_LISTED, PREVIEW_BYTES)
    assert capture is not None
    packed = capture(0)
    assert packed is not None
    assert len(packed[2]) == 16 + len(table) + count + (MAX_LISTED + 1) * PREVIEW_BYTES
    assert chain_dicts(packed) == chain_dicts(chain_capture(ram, DESC, 8, 0))
