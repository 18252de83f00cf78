"""What the unmodified Linux 6.1 virtio_crypto driver does when the device misbehaves on
purpose: one boot per fault action (docs/faults.md, "What Linux 6.1's driver does").

Each boot runs guests/initramfs/programs/afalg-faults.c: it keys one cbc(aes) tfm of
the virtio driver (two sessions on the control queue), prints `event=fault-ready`
and waits for the console to have sent it; the test arms its rules from the console
callback, on the CPU thread, so they fire on the program's own requests and never on
the boot's self-tests. Then come a few encryptions of the same 64 bytes, one after
the other, each reported with its errno, its time and its output, and a fresh bind.

Every test asserts three things: what the driver hands user space (an errno, a
success, or a hang it cannot get out of, seen as `fault-wait done=0` and never waited
out), that vmsim keeps working (the program ends, the init powers the machine off,
the run ends with status 0, every injected fault is in the trace), and that no
output returned with err=0 differs from the host's own AES-CBC.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.support.guest import built_default_guest
from vmsim.devices.events import TraceEvent
from vmsim.devices.virtio.crypto.faults import FaultControl
from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO
from vmsim.harness.results import parse_result_lines

pytestmark = pytest.mark.linux

KEY, IV, PLAIN = bytes(range(0xA0, 0xB0)), bytes(16), bytes(range(64))   # as afalg-faults.c
READY = b"@vmsim event=fault-ready"
HUNG = None             # an op whose request the driver never sees completed
KEPT = frozenset({"fault", "complete", "irq"})     # trace events a test looks at


def host_aes() -> str:
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
    return (encryptor.update(PLAIN) + encryptor.finalize()).hex()


@dataclass
class FaultRun:
    status: int
    text: str
    listing: str                                   # `monitor fault` at the end
    events: list[TraceEvent] = field(default_factory=list)     # KEPT, once armed

    @property
    def lines(self) -> list[dict[str, str]]:
        return parse_result_lines(self.text)

    def event(self, name: str) -> list[dict[str, str]]:
        return [line for line in self.lines if line.get("event") == name]

    def errors(self) -> list[int | None]:
        """Per op, its errno, or HUNG if its child never finished within the wait."""
        ops = {int(line["n"]): int(line["err"]) for line in self.event("fault-op")}
        return [ops.get(int(line["n"]), HUNG) if line["done"] == "1" else HUNG
                for line in self.event("fault-wait")]

    def micros(self, n: int) -> int:
        return next(int(line["us"]) for line in self.event("fault-op") if line["n"] == str(n))

    def bind_error(self) -> int:
        return int(self.event("fault-bind")[0]["err"])

    def kind(self, kind: str, queue: int = 0) -> list[TraceEvent]:
        """The program's events of `kind` on `queue` (0: its data queue)."""
        return [e for e in self.events if e.kind == kind and e.queue == queue]

    def fired(self) -> int:
        return sum(int(n) for n in re.findall(r"fired (\d+)\)", self.listing))


def run_with_faults(rules: list[str], ops: int = 3, wait_ms: int = 1000,
                    workers: int = 0) -> FaultRun:
    """Boot the default guest on afalg-faults with `rules` armed at its ready line."""
    from vmsim.core.machine import Machine, MachineConfig

    paths = built_default_guest()
    output = bytearray()
    events: list[TraceEvent] = []
    state: dict[str, FaultControl] = {}

    def on_output(data: bytes) -> None:
        output.extend(data)
        if b"\n" in data and "armed" not in state and READY in output[-200:]:
            state["armed"] = control = state["control"]    # the program waits in tcdrain()
            for rule in rules:
                assert control.add(rule).startswith("fault rule added")

    def on_event(event: TraceEvent) -> None:
        if "armed" in state and event.kind in KEPT:
            events.append(event)

    machine = Machine(MachineConfig(
        kernel=paths.kernel, initrd=paths.initrd, trace=on_event,
        append=(f"console=ttyS0 vmsim.run=afalg-faults vmsim.fault_ops={ops} "
                f"vmsim.fault_wait_ms={wait_ms}"),
        virtio=[CRYPTO.configure(queues=1, workers=workers)]), output=on_output)
    state["control"] = FaultControl(machine.virtio)
    try:
        status = machine.run()
        listing = state["control"].describe()
    finally:
        machine.close()
    return FaultRun(status, output.decode(errors="replace"), listing, events)


def check_vmsim_kept_working(run: FaultRun, ops: int = 3) -> None:
    """The program and the init ended, the machine powered off, vmsim's run ended
    normally, and every fault the rules fired is in the trace."""
    tail = run.text[-3000:]
    assert run.status == 0, tail
    assert any(line.get("test") == "afalg-faults" and line.get("result") == "pass"
               and line.get("ops") == str(ops) for line in run.lines), tail
    assert {"prog": "afalg-faults", "exit": "0"}.items() <= run.event("program")[0].items(), tail
    assert run.event("done") and run.event("done")[0]["exit"] == "0", tail
    assert len(run.event("fault-wait")) == ops, tail
    assert run.fired() >= 1 and len(run.kind("fault")) == run.fired(), (run.listing, run.events)


def check_no_wrong_ciphertext(run: FaultRun) -> None:
    """Whatever failed, nothing came back as a success with other bytes than AES's."""
    expected = host_aes()
    successes = [line for line in run.event("fault-op") if line["err"] == "0"]
    assert all(line["ct"] == expected for line in successes), successes


def test_status_codes_reach_user_space_as_errnos() -> None:
    """status=...: the driver maps the request's status byte to an errno for the
    skcipher request, and AF_ALG returns it from recvmsg(); the output buffer is left
    as it was. ERR and INVSESS give EINVAL (22), BADMSG gives EBADMSG (74), NOTSUPP,
    NOSPC and KEY_REJECTED give EIO (5). The next request succeeds: nothing is retried
    and nothing else changes."""
    rules = [f"op=CIPHER_ENCRYPT,after={n},once,status={name}" for n, name in
             enumerate(["ERR", "BADMSG", "NOTSUPP", "INVSESS", "NOSPC", "KEY_REJECTED"])]
    run = run_with_faults(rules, ops=7)
    check_vmsim_kept_working(run, ops=7)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [22, 74, 5, 22, 5, 5, 0]
    assert [e.fields["status"] for e in run.kind("fault")] == [
        "ERR", "BADMSG", "NOTSUPP", "INVSESS", "NOSPC", "KEY_REJECTED"]
    failed = [line["ct"] for line in run.event("fault-op") if line["err"] != "0"]
    assert failed == ["00" * 64] * 6                       # the buffer stayed untouched
    assert run.bind_error() == 0


def test_a_delayed_completion_is_waited_for() -> None:
    """delay=MS: the driver has no timeout on data requests; the encryption returns
    the right ciphertext, that much later."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,after=1,once,delay=400"], wait_ms=3000)
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, 0, 0]
    assert run.micros(2) >= 400_000
    assert run.bind_error() == 0


def test_a_dropped_interrupt_hangs_the_queue() -> None:
    """irq=drop: the used entry is written but no interrupt comes. The driver looks at
    its used ring only from the interrupt's callback, and its crypto engine sends a
    queue nothing more until the request in flight completes, so the encryption
    hangs for good (an uninterruptible wait) and so does every later one on that
    queue, which never reaches the device. A fresh bind still works (binding sends
    no request)."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,after=1,once,irq=drop"])
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, HUNG, HUNG]
    assert "(matched 2, fired 1)" in run.listing           # op 3 never got to the device
    assert run.bind_error() == 0


def test_a_late_interrupt_delays_the_answer() -> None:
    """irq=late: the completion is in the used ring at once but the interrupt comes
    delay= later (100 ms without one). The driver does not poll, so user space gets
    its (right) answer when the interrupt comes."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,after=1,once,irq=late,delay=300"], wait_ms=3000)
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, 0, 0]
    assert run.micros(2) >= 300_000
    assert run.bind_error() == 0


def test_a_duplicated_interrupt_is_harmless() -> None:
    """irq=dup: every completion's interrupt comes twice. The second finds nothing new
    in the used ring; the virtio core ignores it, no request is completed twice and
    the kernel does not complain about the interrupt."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,irq=dup"])
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, 0, 0] and run.fired() == 3
    assert len([e for e in run.kind("irq") if e.fields.get("raised")]) == 6
    assert "nobody cared" not in run.text and "spurious" not in run.text
    assert run.bind_error() == 0


def test_a_wrong_used_len_is_ignored() -> None:
    """used-len=N: the driver's skcipher completion does not read used.len at all, so
    a used.len of 0 or of more than the buffers hold changes nothing: the ciphertext
    the device wrote is returned as a success (and it is right)."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,once,used-len=0",
                           "op=CIPHER_ENCRYPT,after=1,once,used-len=4096"])
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, 0, 0]
    assert [e.fields["used_len"] for e in run.kind("fault")] == [0, 4096]
    assert [e.fields["used"] for e in run.kind("complete")] == [0, 4096, 65]    # as written
    assert run.bind_error() == 0


def test_withdrawing_hw_ready_unregisters_the_algorithms() -> None:
    """hw-ready=off (with a config-change interrupt): the driver reads the status
    field, logs "Accelerator is not ready" and unregisters its algorithms. A tfm
    bound before keeps sending requests to the device, which still serves them, but
    a fresh bind of the virtio driver's cbc(aes) finds nothing (ENOENT)."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,after=1,once,hw-ready=off"])
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, 0, 0]
    assert "virtio_crypto virtio0: Accelerator is not ready" in run.text
    assert run.bind_error() == 2


def test_needs_reset_is_ignored_and_the_request_hangs() -> None:
    """needs-reset: the device sets DEVICE_NEEDS_RESET and leaves the request
    unanswered. Linux 6.1's virtio core does not act on NEEDS_RESET (the driver's
    config-change handler reads only HW_READY), so the encryption hangs for good, and
    the ones behind it never reach the device, as with a dropped interrupt."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,after=1,once,needs-reset"])
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, HUNG, HUNG]
    assert "(matched 2, fired 1)" in run.listing
    assert run.bind_error() == 0


def test_a_killed_worker_is_an_error_for_its_request_only(capfd) -> None:
    """kill-worker: the worker process holding the request is killed; the device
    answers it ERR, which user space gets as EINVAL, and a new worker takes its
    place. The next request succeeds and vmsim reports no internal error."""
    run = run_with_faults(["op=CIPHER_ENCRYPT,after=1,once,kill-worker"], wait_ms=10_000,
                          workers=1)
    check_vmsim_kept_working(run)
    check_no_wrong_ciphertext(run)
    assert run.errors() == [0, 22, 0]
    assert "internal" not in capfd.readouterr().err        # a fault, not vmsim's bug
    assert run.bind_error() == 0
