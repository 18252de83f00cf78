"""The devices' trace events and queue snapshots, driven through the transport by the
Python driver: what each event says, that tracing changes nothing the guest sees, and
that with no observer no event is even built."""
from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmsim import log
from vmsim.devices import events as events_module
from vmsim.devices.virtio import mmio as mmio_module
from vmsim.devices.virtio import queue as queue_module
from vmsim.devices.virtio.crypto import device as crypto_device_module
from vmsim.devices.virtio.crypto.constants import CipherAlgo, Op, Status, SymOp
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.spec import feature_names
from vmsim.testing.crypto_rig import CryptoRig, sym_flf, u32
from vmsim.devices.virtio.queue import chain_dicts, describe_chain
from vmsim.trace.hub import Record, TraceHub, plain_fields, tee

KEY, IV = bytes(range(16)), bytes(16)


@pytest.fixture
def traced():
    hub = TraceHub(guest_time=lambda: 1234)
    sub = hub.subscribe()
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    yield rig, sub
    rig.close()


def of(records: list[Record], kind: str) -> list[Record]:
    return [r for r in records if r.kind == kind]


def test_negotiation_and_queue_setup_are_named(traced) -> None:
    rig, sub = traced
    records = sub.drain()
    features = of(records, "features")[0].fields
    assert "VERSION_1" in features["offered_names"] and features["ok"] is True
    assert features["accepted_names"] == feature_names(features["accepted"])
    setups = of(records, "queue_setup")
    assert [r.queue for r in setups] == [0, 1]            # dataq0, then the control queue
    assert setups[0].fields["size"] == 64 and setups[0].fields["desc"] == rig.driver.queues[0].desc
    assert [r.fields["names"] for r in of(records, "status")][-1].endswith("DRIVER_OK|FEATURES_OK")
    assert all(r.g == 1234 and r.device == "virtio-crypto" for r in records)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))


def test_a_cipher_request_from_kick_to_interrupt(traced) -> None:
    rig, sub = traced
    sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
    control = sub.drain()
    created = of(control, "session_create")[0].fields
    assert created == {"session": sid, "opcode": "CIPHER_CREATE_SESSION", "algo": "AES_CBC"}
    reply = rig.cipher(sid, IV, b"p" * 32)
    assert reply.status == Status.OK
    records = sub.drain()
    kinds = [r.kind for r in records]
    assert kinds == ["notify", "pop", "request", "complete", "fill", "irq"], kinds
    notify, pop, request, complete, fill, irq = records
    assert notify.queue == 0 and notify.fields["avail_idx"] == 1
    head = pop.fields["head"]
    chain = pop.fields["chain"]
    # header+flf, iv, src readable; dst and status writable; each with its table index
    assert [d["len"] for d in chain] == [72, 16, 32, 32, 1]
    assert [bool(d["flags"] & 2) for d in chain] == [False, False, False, True, True]
    assert chain[0]["index"] == head and all(not d["indirect"] for d in chain)
    assert bytes.fromhex(chain[2]["data"]) == b"p" * 32
    assert request.fields["opcode"] == "CIPHER_ENCRYPT" and request.fields["session"] == sid
    # the header's own algo field, as sent (Linux fills it in; the rig leaves it 0)
    assert request.fields["algo"] == "NO_CIPHER" and request.fields["mode"] == "session"
    assert complete.fields["status"] == "OK" and complete.fields["where"] == "inline"
    assert complete.fields["duration_us"] > 0
    assert bytes.fromhex(complete.fields["written"][0]) == reply.output
    assert fill.fields == {"head": head, "len": 33, "used_idx": 1, "in_flight": 0}
    assert irq.fields["raised"] is True and irq.queue == 0
    rig.driver.ack_interrupt()
    ack = sub.drain()
    assert [r.kind for r in ack] == ["irq_ack"] and ack[0].fields["interrupt_status"] == 0
    rig.destroy(Op.CIPHER_DESTROY_SESSION, sid)
    destroyed = of(sub.drain(), "session_destroy")[0].fields
    assert destroyed["session"] == sid and destroyed["status"] == "OK"


def test_indirect_chains_list_the_table_entries(traced) -> None:
    rig, sub = traced
    rig.indirect = True
    sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
    rig.cipher(sid, IV, b"q" * 16)
    pops = of(sub.drain(), "pop")
    chain = pops[-1].fields["chain"]
    assert chain[0]["flags"] & 4 and not chain[0]["indirect"]      # the main-table slot
    assert all(d["indirect"] for d in chain[1:]) and len(chain) == 6


def test_config_reads_and_errors_are_traced() -> None:
    hub = TraceHub()
    sub = hub.subscribe()
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), sink=hub)
    try:
        reads = of(sub.drain(), "config_read")
        rig.rig.transport.read(0x100 + 4, 4)                        # max_dataqueues
        last = of(sub.drain(), "config_read")[-1].fields
        assert last == {"offset": 4, "size": 4, "value": 1}
        bad = rig.data([struct.pack("<IIQII", 0x7777, 0, 0, 0, 0) + bytes(48)], 0)
        assert bad.status == Status.NOTSUPP
        records = sub.drain()
        assert of(records, "error") and of(records, "complete")[0].fields["status"] == "NOTSUPP"
        assert of(records, "request")[0].fields["opcode"] == "0x7777"
        del reads
    finally:
        rig.close()


def test_snapshot_is_shaped_like_qemus_queries(traced) -> None:
    rig, _ = traced
    sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
    rig.cipher(sid, IV, b"x" * 16)
    status = rig.rig.transport.query_status()
    assert status["device-id"] == 20 and "DRIVER_OK" in status["status-names"]
    assert "VERSION_1" in status["guest-features"] and status["num-vqs"] == 2
    dq = status["queues"][0]
    assert dq["vring-num"] == 64 and dq["last-avail-idx"] == dq["shadow-avail-idx"] == 1
    assert dq["used-idx"] == 1 and dq["inuse"] == 0 and dq["vring-desc"] == rig.driver.queues[0].desc
    element = rig.rig.transport.queues[0].query_element(0)
    assert element["index"] == 0 and element["descs"][0]["len"] == 72


def test_descriptor_owners_follow_the_rings(traced) -> None:
    """Chains published but not popped are 'avail'; popped and held, 'device'; used
    past the driver's used_event, 'used'; the rest 'free'."""
    rig, _ = traced
    sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
    queue = rig.rig.transport.queues[0]
    dq = rig.driver.queues[0]
    flf = struct.pack("<III", 16, 16, 16) + bytes(28)
    dq.submit([rig.hdr(Op.CIPHER_ENCRYPT, sid, flf), IV, b"a" * 16], [16, 1], kick=False)
    owners = queue.descriptor_owners()
    assert owners.count("avail") == 5 and owners.count("device") == 0
    held = queue.pop()                                # the device takes it, keeps it
    owners = queue.descriptor_owners()
    assert owners.count("device") == 5 and owners.count("avail") == 0
    queue.add_used(held.head, 17)                     # returned; the driver has not looked
    owners = queue.descriptor_owners()
    assert owners.count("used") == 5 and owners.count("device") == 0
    dq.collect()                                      # reclaimed: used_event moves past it
    assert queue.descriptor_owners().count("used") == 0


def test_no_observer_builds_no_event(monkeypatch) -> None:
    """With `discard`, no device, queue or transport reports an event (their emitter
    for a plain sink builds a TraceEvent: that would fail here)."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("a TraceEvent was built with nothing observing")
    monkeypatch.setattr(events_module, "TraceEvent", refuse)
    for module in (queue_module, mmio_module, crypto_device_module):
        assert module.event_log is events_module.event_log
    rig = CryptoRig(CryptoDevice(workers=0), trace=False)
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
        assert rig.cipher(sid, IV, b"z" * 64).status == Status.OK
        rig.driver.ack_interrupt()
        rig.destroy(Op.CIPHER_DESTROY_SESSION, sid)
    finally:
        rig.close()


def test_a_long_indirect_table_is_listed_in_part(traced) -> None:
    """Linux's 64 KiB requests carry ~270 indirect entries: the event lists the first
    16 and the last, and counts the rest, so tracing them stays cheap."""
    rig, sub = traced
    rig.indirect = True
    sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
    src = [bytes([n]) * 16 for n in range(30)]
    flf = struct.pack("<III", 16, 480, 480) + bytes(28)
    request = rig.driver.queues[0].submit([rig.hdr(Op.CIPHER_ENCRYPT, sid, flf), IV, *src],
                                          [480, 1], indirect=True)
    rig.wait(0)
    del request
    chain = of(sub.drain(), "pop")[-1].fields["chain"]
    table = chain[1:]
    assert chain[0]["flags"] & 4 and len(table) == 16 + 2
    assert table[16] == {"indirect": True, "more": 34 - 16 - 1}
    assert table[-1]["index"] == 33 and table[-1]["flags"] & 2      # the status byte


def test_a_long_indirect_tables_written_previews_follow_its_listing(traced) -> None:
    """The completion previews the writable buffers the pop event lists, and no more: a
    64 KiB request writes ~135 buffers, and one preview each cost tracing more per request
    than everything else it does."""
    rig, sub = traced
    rig.indirect = True
    sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
    src = b"".join(bytes([n]) * 16 for n in range(30))
    flf = sym_flf(u32(16, len(src), len(src)), SymOp.CIPHER)
    rig.driver.queues[0].submit([rig.hdr(Op.CIPHER_ENCRYPT, sid, flf), IV, src],
                                [16] * 30 + [1], indirect=True)
    rig.wait(0)
    records = sub.drain()
    listed = [d for d in of(records, "pop")[-1].fields["chain"][1:] if "more" not in d]
    listed_writable = [d for d in listed if d["flags"] & 2]
    complete = of(records, "complete")[-1].fields
    written = complete["written"]
    assert complete["status"] == "OK" and len(listed_writable) == 16 - 3 + 1
    assert len(written) == len(listed_writable) and written[-1] == "00"      # the status
    encrypted = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor().update(src)
    assert bytes.fromhex("".join(written[:-1])) == encrypted[:16 * (len(written) - 1)]


def raw_bytes(value: object) -> list[bytes]:
    """Every bytes object inside nested tuples (and no dict or str of hex on the way)."""
    assert not isinstance(value, dict)
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value)]
    if isinstance(value, tuple):
        return [b for item in value for b in raw_bytes(item)]
    return []


def linux_table(ram, at: int, lengths: list[int], writable_from: int) -> bytes:
    """An indirect table chained in order, as Linux writes one, its buffers 4 KiB apart
    and each filled with its own index."""
    entries = []
    for i, length in enumerate(lengths):
        addr = at + 0x1000 * (i + 1)
        ram.write(addr, bytes([i & 0xFF]) * length)
        flags = (1 if i < len(lengths) - 1 else 0) | (2 if i >= writable_from else 0)
        entries.append(struct.pack("<QIHH", addr, length, flags, i + 1 if flags & 1 else 0))
    return b"".join(entries)


@pytest.mark.parametrize("count", [1, 2, 5, 16, 17, 18, 40, 276])
def test_the_pop_events_short_form_lists_what_the_walk_lists(count) -> None:
    """chain_capture leaves Linux's in-order tables to be listed by the observer: that
    listing must be chain_entries' own, previews included, at every table length
    around the MAX_LISTED cut."""
    from vmsim.devices.memory import Ram

    ram = Ram(0x8000_0000, 4 << 20)
    table = linux_table(ram, 0x8001_0000, [72, 16, 40, 1] * 69,
                        writable_from=max(count - 2, 1))
    table = table[:16 * count]
    table = table[:-4] + bytes([table[-4] & ~1]) + table[-3:]     # the last ends the chain
    ram.write(0x8000_8000, table)
    ram.write(0x8000_0000 + 16 * 3, struct.pack("<QIHH", 0x8000_8000, len(table), 4, 0))
    capture = queue_module.chain_capture(ram, 0x8000_0000, 8, 3)
    walked = queue_module.chain_entries(ram, 0x8000_0000, 8, 3)
    assert (capture[0] == "table") == (count <= 17)       # short tables: the observer lists
    assert chain_dicts(capture) == chain_dicts(walked)


def test_the_pop_events_short_form_follows_a_table_out_of_order() -> None:
    """The observer walks a short table's next fields as chain_entries does: entries
    the chain skips are not listed; a chain not in one indirect table is listed on the
    CPU thread."""
    from vmsim.devices.memory import Ram

    ram = Ram(0x8000_0000, 4 << 20)
    table = bytearray(linux_table(ram, 0x8001_0000, [8, 8, 8], writable_from=2))
    struct.pack_into("<H", table, 14, 2)            # entry 0 goes to 2: entry 1 is skipped
    ram.write(0x8000_8000, bytes(table))
    ram.write(0x8000_0000, struct.pack("<QIHH", 0x8000_8000, len(table), 4, 0))
    ram.write(0x8000_0010, struct.pack("<QIHH", 0x8001_1000, 8, 0, 0))
    out_of_order = queue_module.chain_capture(ram, 0x8000_0000, 8, 0)
    assert out_of_order[0] == "table"
    listed = chain_dicts(out_of_order)
    assert listed == chain_dicts(queue_module.chain_entries(ram, 0x8000_0000, 8, 0))
    assert [d["index"] for d in listed] == [0, 0, 2] and listed[2]["data"] == "02" * 8
    direct = queue_module.chain_capture(ram, 0x8000_0000, 8, 1)
    assert direct == queue_module.chain_entries(ram, 0x8000_0000, 8, 1)


def test_a_requests_events_reach_the_hub_as_tuples_and_observers_read_dicts() -> None:
    """Every request brings notify, pop, request, complete, fill, irq and irq_ack. On the
    CPU thread each is a (names, values...) tuple, cheaper to build and to pickle than a
    dict; a Record (what every observer reads) has the same fields as a dict."""
    hub = TraceHub()
    sub = hub.subscribe()
    rig = CryptoRig(CryptoDevice(workers=0, trace=hub), trace=False, sink=hub)
    sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
    sub.drain()
    rig.cipher(sid, IV, b"t" * 32)
    rig.rig.transport.write(0x64, 4, 1)                    # InterruptACK
    items = sub.drain_items()
    kinds = {"notify", "pop", "request", "complete", "fill", "irq", "irq_ack"}
    raw = {item[4]: item[6] for item in items if item[4] in kinds}
    assert set(raw) == kinds
    for kind, fields in raw.items():
        assert type(fields) is tuple and len(fields[0]) == len(fields) - 1, kind
        record = Record.from_item(next(item for item in items if item[4] == kind))
        assert list(record.fields) == list(fields[0]), kind
    assert Record.from_item([i for i in items if i[4] == "request"][0]).fields["opcode"] == \
        "CIPHER_ENCRYPT"
    rig.close()


def test_the_pop_event_keeps_raw_bytes_and_observers_see_hex() -> None:
    """On the CPU thread the chain and the written previews stay tuples and bytes (no
    dicts, no hex per request); a Record, the trace file and the log show them as
    describe_chain lists them."""
    events: list = []
    hub = TraceHub()
    sub = hub.subscribe()
    rig = CryptoRig(CryptoDevice(workers=0, trace=tee([hub, events.append])),
                    sink=tee([hub, events.append]), indirect=True)
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
        reply = rig.cipher(sid, IV, b"r" * 16)
        pop = [e for e in events if e.kind == "pop"][-1]
        complete = [e for e in events if e.kind == "complete"][-1]
        raw = pop.fields["chain"]
        assert type(raw) is tuple and b"r" * 16 in b"".join(raw_bytes(raw))
        written = complete.fields["written"]                        # bytes, not hex
        assert type(written) is tuple and reply.output in b"".join(raw_bytes(written))
        assert plain_fields(complete.fields)["written"][0] == reply.output.hex()
        queue = rig.rig.transport.queues[0]
        head = pop.fields["head"]
        def readable_part(chain: list[dict]) -> list[dict]:   # the device wrote the rest
            return [d if not d.get("flags", 0) & 2 else {**d, "data": None} for d in chain]
        assert readable_part(chain_dicts(pop.fields["chain"])) == readable_part(
            describe_chain(queue._mem, queue.desc_addr, queue.size, head))
        records = sub.drain()
        chain = of(records, "pop")[-1].fields["chain"]
        assert chain[3]["data"] == (b"r" * 16).hex() and "data" not in chain[0]
        assert of(records, "complete")[-1].fields["written"][0] == reply.output.hex()
        assert plain_fields(plain_fields(pop.fields)) == plain_fields(pop.fields)
    finally:
        rig.close()


def test_the_trace_log_shows_previews_in_hex(tmp_path) -> None:
    path = tmp_path / "log"
    log.configure((), ("virtio_crypto_pop", "virtio_crypto_complete"), path)
    rig = CryptoRig(CryptoDevice(workers=0, trace=log.trace_sink), sink=log.trace_sink)
    try:
        sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
        reply = rig.cipher(sid, IV, b"t" * 16)
    finally:
        rig.close()
        log.close()
    text = path.read_text()
    assert (b"t" * 16).hex() in text and reply.output.hex() in text and "b'" not in text


def test_the_hub_takes_device_events_without_a_trace_event_object(monkeypatch) -> None:
    """A device hands the hub (kind, device, queue, fields) through its emit(); a plain
    sink still gets TraceEvents, saying the same."""
    built = []
    real = events_module.TraceEvent

    def counting(*args, **kwargs):
        built.append(args[0])
        return real(*args, **kwargs)
    monkeypatch.setattr(events_module, "TraceEvent", counting)
    hub, plain = TraceHub(), []
    sub = hub.subscribe()
    for device_sink in (hub, plain.append):
        rig = CryptoRig(CryptoDevice(workers=0, trace=device_sink), trace=False)
        try:
            sid = rig.create_cipher(CipherAlgo.AES_CBC, KEY)
            rig.cipher(sid, IV, b"e" * 16)
        finally:
            rig.close()
        if device_sink is hub:
            assert built == []                        # the hub got no TraceEvent
    records = sub.drain()
    assert built == [e.kind for e in plain] == [r.kind for r in records]
    assert "request" in built and "complete" in built
    def timeless(fields: dict) -> dict:
        return {k: v for k, v in fields.items() if k != "duration_us"}
    assert ([timeless(plain_fields(e.fields)) for e in plain]
            == [timeless(r.fields) for r in records])
