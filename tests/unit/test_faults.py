"""Fault injection: the rule language, the plan's conditions, and every action on the
crypto device, driven through the MMIO transport and real virtqueues."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmsim import log
from vmsim.devices.virtio.crypto.constants import CipherAlgo, CipherDirection, Op, Status, SymOp
from vmsim.devices.virtio.crypto.device import CryptoDevice
from vmsim.devices.virtio.crypto.fault_rules import FaultRuleError, parse_rule, parse_rule_file
from vmsim.devices.virtio.crypto.faults import FaultPlan
from vmsim.devices.virtio.spec import Interrupt, Reg, Status as DeviceStatus
from vmsim.testing.crypto_rig import CryptoRig, ctrl_header, sym_flf, u32

KEY, IV, SRC = bytes(range(16)), bytes(16), bytes(range(64))


def aes_cbc(data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


# ---- the rule language --------------------------------------------------------------------

def test_rules_parse_in_any_order_and_print_back():
    rule = parse_rule("status=ERR, every=3,op=cipher_encrypt")
    assert (rule.op, rule.every, rule.status) == (Op.CIPHER_ENCRYPT, 3, Status.ERR)
    assert parse_rule(str(rule)) == rule
    rule = parse_rule("queue=0,once,irq=drop")
    assert (rule.queue, rule.once, rule.irq) == (0, True, "drop")
    rule = parse_rule("after=2,at=1.5,probability=0.25,seed=7,delay=20,used-len=3,hw-ready=off,"
                      "needs-reset,kill-worker")
    assert (rule.after, rule.at, rule.probability, rule.seed, rule.delay_ms, rule.used_len,
            rule.hw_ready, rule.needs_reset, rule.kill_worker) == (2, 1.5, 0.25, 7, 20, 3, False,
                                                                   True, True)
    assert parse_rule(str(rule)) == rule


@pytest.mark.parametrize("text, named", [
    ("op=CIPHER_FOO,status=ERR", "op='CIPHER_FOO'"),
    ("status=OK", "status='OK'"),
    ("status=ERR,color=red", "unknown key 'color'"),
    ("status=ERR,every=0", "every=0 is out of range"),
    ("status=ERR,every=x", "every='x' is not a whole number"),
    ("status=ERR,probability=1.5", "probability=1.5 is out of range"),
    ("status=ERR,probability=nan", "probability=nan is out of range"),
    ("status=ERR,seed=3", "seed= only makes sense with probability="),
    ("irq=sometimes", "irq='sometimes'"),
    ("hw-ready=maybe", "hw-ready='maybe'"),
    ("delay=1000000", "delay=1000000 is out of range"),
    ("status=ERR,once=1", "once takes no value"),
    ("status", "'status' needs a value"),
    ("status=ERR,status=BADMSG", "status is given twice"),
    ("op=HASH,every=2", "no action"),
    ("", "no action"),
])
def test_bad_rules_name_the_bad_item(text, named):
    with pytest.raises(FaultRuleError) as raised:
        parse_rule(text)
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_rule_files_skip_comments_and_name_the_bad_line():
    rules = parse_rule_file("# every third encryption fails\nop=CIPHER_ENCRYPT,every=3,status=ERR\n\n"
                            "queue=0,once,irq=drop   # and one interrupt is lost\n", "rules.txt")
    assert [r.status for r in rules] == [Status.ERR, None] and rules[1].irq == "drop"
    with pytest.raises(FaultRuleError, match=r"^rules.txt line 2: unknown key 'x'"):
        parse_rule_file("status=ERR\nx=1\n", "rules.txt")


@pytest.mark.parametrize("args, message", [
    (["--fault", "op=NOPE,status=ERR"], "vmsim: error: --fault op=NOPE,status=ERR: op='NOPE'"),
    (["--fault-file", "/nonexistent/rules"], "vmsim: error: --fault-file /nonexistent/rules: "),
])
def test_the_command_line_reports_a_bad_rule_in_one_line(args, message):
    run = subprocess.run([sys.executable, "-m", "vmsim.cli.main", "run", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and run.stdout == ""
    assert run.stderr.startswith(message) and run.stderr.count("\n") == 1


# ---- conditions ----------------------------------------------------------------------------

def fired(plan: FaultPlan, requests: list[tuple[int, int]]) -> list[int]:
    return [n for n, (op, queue) in enumerate(requests, 1) if plan.match(op, queue)]


def test_every_after_once_and_the_selectors():
    enc = [(Op.CIPHER_ENCRYPT, 0)] * 9
    assert fired(FaultPlan([parse_rule("op=CIPHER_ENCRYPT,every=3,status=ERR")]), enc) == [3, 6, 9]
    assert fired(FaultPlan([parse_rule("after=2,status=ERR")]), enc[:5]) == [3, 4, 5]
    assert fired(FaultPlan([parse_rule("after=2,every=2,once,status=ERR")]), enc) == [4]
    mixed = [(Op.CIPHER_ENCRYPT, 0), (Op.CIPHER_DECRYPT, 0), (Op.CIPHER_ENCRYPT, 1), (Op.HASH, 1)]
    assert fired(FaultPlan([parse_rule("op=CIPHER_DECRYPT,status=ERR")]), mixed) == [2]
    assert fired(FaultPlan([parse_rule("queue=1,status=ERR")]), mixed) == [3, 4]


def test_probability_is_deterministic_for_a_seed():
    requests = [(Op.CIPHER_ENCRYPT, 0)] * 400
    first = fired(FaultPlan([parse_rule("probability=0.25,seed=42,status=ERR")]), requests)
    again = fired(FaultPlan([parse_rule("probability=0.25,seed=42,status=ERR")]), requests)
    other = fired(FaultPlan([parse_rule("probability=0.25,seed=43,status=ERR")]), requests)
    assert first == again != other
    assert 50 < len(first) < 150


def test_at_arms_a_rule_after_that_much_run_time():
    now = [100.0]
    plan = FaultPlan([parse_rule("at=2.5,status=ERR")], clock=lambda: now[0])
    assert plan.match(Op.HASH, 0) is None
    now[0] = 102.5
    assert plan.match(Op.HASH, 0).status == Status.ERR


def test_rules_merge_and_are_listed_with_counts():
    plan = FaultPlan([parse_rule("every=2,status=BADMSG"), parse_rule("status=ERR,irq=dup")])
    assert plan.match(Op.HASH, 0).status == Status.ERR
    fault = plan.match(Op.HASH, 0)
    assert (fault.status, fault.irq, len(fault.rules)) == (Status.BADMSG, "dup", 2)
    assert "every=2,status=BADMSG  (matched 2, fired 1)" in plan.describe()
    assert plan.clear() == 2 and not plan.active and plan.describe() == "no fault rules\n"


# ---- actions on the device -----------------------------------------------------------------

class FaultRig(CryptoRig):
    """A CryptoRig with an encryption session, whose device then gets these rules (so
    they do not fire on the session's creation) and records its trace events."""

    def __init__(self, *rules: str, workers: int = 0) -> None:
        self.events: list = []
        self.plan = FaultPlan()
        super().__init__(CryptoDevice(workers=workers, faults=self.plan, trace=self.events.append))
        self.session = self.create_cipher(CipherAlgo.AES_CBC, KEY, CipherDirection.ENCRYPT)
        self.driver.ack_interrupt()             # the session's, so each test sees its own
        for rule in rules:
            self.plan.add(parse_rule(rule))

    def encrypt(self):
        flf = sym_flf(u32(16, len(SRC), len(SRC)), SymOp.CIPHER)
        return self.submit(0, [self.hdr(Op.CIPHER_ENCRYPT, self.session, flf), IV, SRC],
                           [len(SRC), 1])

    @property
    def irq(self):
        return self.rig.irq

    def reg(self, offset: int) -> int:
        return self.driver.read_reg(offset)

    def faults(self) -> list:
        return [e for e in self.events if e.kind == "fault"]


@pytest.fixture
def make_rig():
    rigs: list[FaultRig] = []

    def make(*rules: str, workers: int = 0) -> FaultRig:
        rigs.append(FaultRig(*rules, workers=workers))
        return rigs[-1]
    yield make
    for rig in rigs:
        rig.close()


def test_status_replaces_the_answer_every_third_request_and_is_traced(make_rig, tmp_path):
    log.configure([log.FAULT], path=tmp_path / "log")
    try:
        rig = make_rig("op=CIPHER_ENCRYPT,every=3,status=BADMSG")
        replies = [rig.cipher(rig.session, IV, SRC) for _ in range(6)]
    finally:
        log.close()
    assert [r.status for r in replies] == [0, 0, Status.BADMSG, 0, 0, Status.BADMSG]
    assert all(r.output == aes_cbc(SRC) for r in replies if r.status == Status.OK)
    assert all(r.output != aes_cbc(SRC) and r.used_len == 0 for r in replies if r.status)
    events = rig.faults()
    assert len(events) == 2 and events[0].fields["status"] == "BADMSG"
    assert events[0].fields["opcode"] == "CIPHER_ENCRYPT" and events[0].queue == 0
    logged = (tmp_path / "log").read_text().splitlines()
    assert len(logged) == 2 and "vmsim.fault: virtio-crypto: queue 0" in logged[0]
    assert "status=BADMSG (rule op=CIPHER_ENCRYPT,every=3,status=BADMSG)" in logged[0]


def test_a_faulted_create_session_fails_and_leaves_no_session(make_rig):
    rig = make_rig("op=CIPHER_CREATE_SESSION,once,status=NOSPC")
    flf = sym_flf(u32(CipherAlgo.AES_CBC, 16, CipherDirection.ENCRYPT, 0), SymOp.CIPHER, 48)
    status, _ = rig.create(Op.CIPHER_CREATE_SESSION, flf, KEY)
    assert status == Status.NOSPC and len(rig.device.sessions) == 1
    assert rig.create(Op.CIPHER_CREATE_SESSION, flf, KEY)[0] == Status.OK


def wait_until(condition, what: str, rig: FaultRig, timeout: float = 20.0) -> None:
    """Poll the device as the run loop would, until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        rig.device.poll()
        time.sleep(0.001)


def test_delay_holds_the_completion_back(make_rig):
    rig = make_rig("delay=300")
    request = rig.encrypt()
    rig.device.poll()
    assert rig.driver.queues[0].collect() == []          # not yet
    (used,) = rig.wait(0)
    assert request.written()[:len(SRC)] == aes_cbc(SRC) and request.written()[-1] == Status.OK
    assert used.len == len(SRC) + 1 and rig.irq.level       # the status byte follows


def test_irq_drop_writes_the_used_entry_but_never_interrupts(make_rig):
    rig = make_rig("irq=drop")
    rig.encrypt()
    rig.device.poll()
    assert rig.driver.queues[0].used_idx() == 1 and not rig.irq.level
    assert rig.reg(Reg.INTERRUPT_STATUS) == 0


def test_irq_late_interrupts_after_the_delay(make_rig):
    rig = make_rig("irq=late,delay=200")
    rig.encrypt()
    assert rig.driver.queues[0].used_idx() == 1 and not rig.irq.level
    wait_until(lambda: rig.irq.level, "the late interrupt", rig)
    assert rig.reg(Reg.INTERRUPT_STATUS) == Interrupt.USED_BUFFER


def test_irq_dup_interrupts_again_after_the_acknowledgement(make_rig):
    rig = make_rig("irq=dup")
    rig.encrypt()
    assert rig.irq.level
    assert rig.driver.ack_interrupt() == Interrupt.USED_BUFFER and not rig.irq.level
    assert len(rig.driver.queues[0].collect()) == 1
    wait_until(lambda: rig.irq.level, "the duplicate interrupt", rig)
    assert rig.driver.queues[0].collect() == []          # nothing new behind it


def test_used_len_is_replaced(make_rig):
    rig = make_rig("used-len=4096")
    reply = rig.cipher(rig.session, IV, SRC)
    assert reply.used_len == 4096 and reply.output == aes_cbc(SRC) and reply.status == Status.OK


def test_hw_ready_off_withdraws_readiness_with_a_config_change(make_rig):
    rig = make_rig("hw-ready=off")
    generation = rig.reg(Reg.CONFIG_GENERATION)
    reply = rig.cipher(rig.session, IV, SRC)
    assert reply.status == Status.OK and reply.output == aes_cbc(SRC)
    assert rig.reg(Reg.CONFIG) == 0 and rig.reg(Reg.CONFIG_GENERATION) == generation + 1
    assert rig.reg(Reg.INTERRUPT_STATUS) & Interrupt.CONFIG_CHANGE


def test_needs_reset_stops_the_device_and_leaves_the_request_unanswered(make_rig):
    rig = make_rig("op=CIPHER_ENCRYPT,needs-reset")
    rig.encrypt()
    rig.device.poll()
    assert rig.reg(Reg.STATUS) & DeviceStatus.DEVICE_NEEDS_RESET
    assert rig.driver.queues[0].used_idx() == 0
    assert rig.reg(Reg.INTERRUPT_STATUS) == Interrupt.CONFIG_CHANGE


def test_kill_worker_answers_err_and_a_new_worker_serves_the_next(make_rig, tmp_path):
    log.configure([log.FAULT], path=tmp_path / "log")
    try:
        rig = make_rig("op=CIPHER_ENCRYPT,once,kill-worker", workers=1)
        killed = rig.cipher(rig.session, IV, SRC)
        assert killed.status == Status.ERR and killed.output != aes_cbc(SRC)
        assert rig.cipher(rig.session, IV, SRC).output == aes_cbc(SRC)
        assert rig.device.stats[0].pooled == 1
        wait_until(lambda: rig.device.wait_for_workers(0.1), "the replacement worker", rig)
    finally:
        log.close()
    text = (tmp_path / "log").read_text()
    assert "kill_worker=True" in text and "internal" not in text      # expected, not a bug


def test_no_rule_never_consults_the_plan(make_rig, monkeypatch):
    rig = make_rig()
    monkeypatch.setattr(rig.plan, "match", lambda *_: pytest.fail("matched with no rule"))
    assert rig.cipher(rig.session, IV, SRC).output == aes_cbc(SRC)
    rig.plan.add(parse_rule("status=INVSESS"))
    monkeypatch.undo()
    assert rig.cipher(rig.session, IV, SRC).status == Status.INVSESS


def test_a_reset_forgets_a_delayed_completion(make_rig):
    rig = make_rig("delay=60000")
    queue = rig.driver.queues[0]
    rig.encrypt()
    assert len(rig.device._deferred) == 1
    rig.driver.reset()
    assert len(rig.device._deferred) == 0 and queue.used_idx() == 0


@pytest.mark.parametrize("status", [s for s in Status if s != Status.OK])
def test_every_status_code_reaches_the_driver_without_output(make_rig, status):
    rig = make_rig(f"op=CIPHER_ENCRYPT,status={status.name}")
    reply = rig.cipher(rig.session, IV, SRC)
    assert reply.status == status and reply.used_len == 0
    assert reply.output != aes_cbc(SRC)                  # no ciphertext with an error
    assert rig.faults()[0].fields["status"] == status.name


@pytest.mark.parametrize("rule, fields", [
    ("status=NOTSUPP", {"status": "NOTSUPP"}),
    ("delay=1", {"delay_ms": 1}),
    ("irq=drop", {"irq": "drop"}),
    ("irq=late,delay=1", {"irq": "late", "delay_ms": 1}),
    ("irq=dup", {"irq": "dup"}),
    ("used-len=7", {"used_len": 7}),
    ("hw-ready=off", {"hw_ready": False}),
    ("needs-reset", {"needs_reset": True}),
    ("kill-worker", {"kill_worker": True}),
])
def test_every_action_is_recorded_in_the_trace(make_rig, rule, fields):
    rig = make_rig(f"op=CIPHER_ENCRYPT,once,{rule}")
    rig.encrypt()
    rig.device.poll()
    (event,) = rig.faults()
    assert event.queue == 0 and event.fields["opcode"] == "CIPHER_ENCRYPT"
    assert {k: event.fields.get(k) for k in fields} == fields
    assert event.fields["rules"] == [str(parse_rule(f"op=CIPHER_ENCRYPT,once,{rule}"))]


def test_a_control_request_can_lose_its_interrupt(make_rig):
    rig = make_rig("queue=1,once,irq=drop")
    flf = sym_flf(u32(CipherAlgo.AES_CBC, 16, CipherDirection.ENCRYPT, 0), SymOp.CIPHER, 48)
    request = rig.ctrlq.submit([ctrl_header(Op.CIPHER_CREATE_SESSION, flf), KEY], [16])
    rig.device.poll()
    assert [used.head for used in rig.ctrlq.collect()] == [request.head]
    assert not rig.irq.level                                # answered, never told
    assert int.from_bytes(request.written()[8:12], "little") == Status.OK
    (event,) = rig.faults()
    assert event.queue == 1 and event.fields["opcode"] == "CIPHER_CREATE_SESSION"


def test_fault_control_finds_each_plan_through_wrappers_and_adds_to_all():
    from types import SimpleNamespace

    from vmsim.devices.virtio.crypto.faults import FaultControl

    shared, own = FaultPlan(), FaultPlan()
    slots = [SimpleNamespace(device=SimpleNamespace(faults=shared)),
             SimpleNamespace(_inner=SimpleNamespace(device=SimpleNamespace(faults=shared))),
             SimpleNamespace(device=SimpleNamespace(faults=own)), SimpleNamespace()]
    control = FaultControl(slots)
    assert [slots for slots, _ in control.plans] == [[0, 1], [2]]
    assert control.command("") == "slot 0,1:\n  no fault rules\nslot 2:\n  no fault rules\n"
    assert control.command(" op=HASH , once, irq=late ") == "fault rule added: op=HASH,irq=late,once\n"
    assert shared.listing()[0].rule == own.listing()[0].rule == parse_rule("op=HASH,once,irq=late")
    assert control.command("every=0,status=ERR").startswith("fault: every=0 is out of range")
    assert control.command("clear") == "cleared 1 fault rule\n" and not shared.active
    assert FaultControl([SimpleNamespace()]).command("status=ERR") == \
        "no device here takes fault rules\n"


def test_the_docs_name_every_key_status_and_action():
    """docs/faults.md's tables keep up with the language: every key, every status,
    every irq action, and a row of what Linux 6.1 does for each action."""
    from pathlib import Path

    from vmsim.devices.virtio.crypto.fault_rules import IRQ_ACTIONS, KEYS

    text = (Path(__file__).resolve().parents[2] / "docs" / "faults.md").read_text()
    tables = [line for line in text.splitlines() if line.startswith("| `")]
    rows = {line.split("|")[1].strip() for line in tables}
    for key in KEYS:
        assert any(row.startswith(f"`{key}") for row in rows), key
    linux = text.split("## What Linux 6.1's driver does", 1)[1]
    for status in Status:
        if status != Status.OK:
            assert f"`{status.name}`" in text and f"`status={status.name}`" in linux, status
    for action in [f"irq={a}" for a in IRQ_ACTIONS] + ["delay=MS", "used-len=N", "hw-ready=off",
                                                       "needs-reset", "kill-worker"]:
        assert f"| `{action}` |" in linux, action
