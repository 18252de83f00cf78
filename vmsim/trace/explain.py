"""Teaching: what a trace event means, in plain words, with where the spec says so.

`explain(record, model)` builds the text from the event's own fields and the replay
model's state just after it (so "avail idx 7, head 3" are the numbers that happened),
says what happens next, and cites the section of the virtio 1.2 specification and the
conformance label behind it (labels as conformance.tex lists them, stable across
versions; the crypto service subsections are numbered as in 1.3, which added AKCIPHER). Nothing here is scripted per
run: the same function explains a live guest, a recorded trace and the lesson.
"""
from __future__ import annotations

from dataclasses import dataclass

from vmsim.trace.hub import Record
from vmsim.trace.model import CRYPTO_CONFIG, TraceModel

_BASIC = "Basic Facilities of a Virtio Device"
_MMIO = "Virtio Transport Options / Virtio Over MMIO / MMIO-specific Initialization And Device Operation"
_CRYPTO_OP = "Device Types / Crypto Device / Device Operation"
_SESSION = f"{_CRYPTO_OP} / Control Virtqueue / Session operation"

STATUS_MEANING = {
    "ACKNOWLEDGE": "the guest found the device and knows it is a virtio device",
    "DRIVER": "the guest has a driver for it",
    "FEATURES_OK": "the driver accepted its features and checks that the device agrees",
    "DRIVER_OK": "the driver is ready: the device may now use its queues",
    "FAILED": "the driver gave up on the device",
}
# Each data service's subsection of Device Operation (virtio 1.2/1.3 numbering) and the
# title its conformance label carries.
_SERVICE = {"HASH": ("5.9.7.4", "HASH Service Operation"),
            "MAC": ("5.9.7.5", "MAC Service Operation"),
            "CIPHER": ("5.9.7.6", "Symmetric algorithms Operation"),
            "AEAD": ("5.9.7.7", "AEAD Service Operation"),
            "AKCIPHER": ("5.9.7.8", "AKCIPHER Service Operation")}


def _service(name: str) -> tuple[str, str, str]:
    """(section, title, label) of the data service an opcode or service name belongs to."""
    service = name.split("_")[0] if name else ""
    section, title = _SERVICE.get(service, ("5.9.7.3", "Data Virtqueue"))
    label = (f"drivernormative:{_CRYPTO_OP} / {title}" if service in _SERVICE
             else f"drivernormative:{_CRYPTO_OP} / Symmetric algorithms Operation")
    return section, title, label


@dataclass(frozen=True)
class Explanation:
    actor: str          # "driver" or "device"
    what: str           # what it just did
    next: str           # what happens next
    section: str        # virtio 1.2 section number
    title: str          # that section's title
    label: str          # conformance label (drivernormative:... / devicenormative:...)

    def cite(self) -> str:
        return f"{self.section} {self.title}; {self.label}"

    def text(self) -> str:
        return f"{self.what}\nNext: {self.next}\n— virtio {self.cite()}"


def _q(model: TraceModel, r: Record) -> str:
    return model.queue_name(r.device, r.queue)


def _status(r: Record, model: TraceModel) -> Explanation:
    old, new = int(r.fields.get("old", 0)), int(r.fields.get("new", 0))
    label = "drivernormative:General Initialization And Device Operation / Device Initialization"
    if new == 0:
        return Explanation("driver", "The driver wrote 0 to Status: the device resets, "
                           "forgetting features, queues and sessions.",
                           "the driver starts again: ACKNOWLEDGE, then DRIVER.", "2.4",
                           "Device Reset", f"drivernormative:{_BASIC} / Device Reset")
    added = [name for name in str(r.fields.get("names", "")).split("|")
             if name in STATUS_MEANING and name not in _names(old)]
    meaning = "; ".join(f"{name}: {STATUS_MEANING[name]}" for name in added) or "no new bit"
    following = {
        "ACKNOWLEDGE": "the driver sets DRIVER, then reads the features the device offers.",
        "DRIVER": "the driver reads the device's feature bits and writes the ones it accepts.",
        "FEATURES_OK": "the driver reads Status back (FEATURES_OK must still be set), reads "
                       "the config space and sets up each virtqueue.",
        "DRIVER_OK": "the driver puts requests on the queues and notifies the device.",
    }
    nxt = following.get(added[-1] if added else "", "the driver goes on with initialization.")
    return Explanation("driver", f"The driver set Status to {new:#04x} "
                       f"({r.fields.get('names')}): {meaning}.", nxt, "3.1.1",
                       "Driver Requirements: Device Initialization", label)


def _names(status: int) -> set[str]:
    bits = {1: "ACKNOWLEDGE", 2: "DRIVER", 4: "DRIVER_OK", 8: "FEATURES_OK", 0x80: "FAILED"}
    return {name for bit, name in bits.items() if status & bit}


def _features(r: Record, model: TraceModel) -> Explanation:
    offered = ", ".join(r.fields.get("offered_names", [])) or "nothing"
    accepted = ", ".join(r.fields.get("accepted_names", [])) or "nothing"
    ok = r.fields.get("ok")
    what = (f"The device offered {offered}; the driver accepted {accepted} and set "
            f"FEATURES_OK, which the device {'kept' if ok else 'refused: ' + str(r.fields.get('reason'))}.")
    nxt = ("the driver reads the config space and sets up the queues." if ok else
           "the driver sees FEATURES_OK clear and must give up (FAILED) or reset.")
    return Explanation("driver", what, nxt, "2.2", "Feature Bits",
                       f"drivernormative:{_BASIC} / Feature Bits")


def _config_read(r: Record, model: TraceModel) -> Explanation:
    dev = model.devices.get(r.device)
    offset = int(r.fields.get("offset", 0))
    named = CRYPTO_CONFIG.get(offset) if dev and dev.device_id == 20 else None
    field = named[0] if named else f"offset {offset:#x}"
    return Explanation("driver", f"The driver read the config field {field} = "
                       f"{int(r.fields.get('value', 0)):#x}.",
                       "the driver uses it to size its queues and choose algorithms.", "2.5",
                       "Device Configuration Space",
                       f"drivernormative:{_BASIC} / Device Configuration Space")


def _queue_setup(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    return Explanation("driver", f"The driver set up {_q(model, r)}: {f.get('size')} entries "
                       f"(the device allows {f.get('max')}), descriptor table at "
                       f"{int(f.get('desc', 0)):#x}, driver area (avail ring) at "
                       f"{int(f.get('driver', 0)):#x}, device area (used ring) at "
                       f"{int(f.get('device', 0)):#x}, and wrote QueueReady.",
                       "with every queue ready the driver sets DRIVER_OK.", "4.2.3.2",
                       "Virtqueue Configuration", f"drivernormative:{_MMIO} / Device Initialization")


def _notify(r: Record, model: TraceModel) -> Explanation:
    q = model.queue(r.device, r.queue or 0)
    avail = r.fields.get("avail_idx")
    pending = ((int(avail) - q.last_avail) & 0xFFFF) if avail is not None else None
    what = (f"The driver published avail idx {avail} on {q.name} and wrote QueueNotify "
            f"({q.name} is queue {r.queue}).")
    nxt = (f"the device pops {pending} chain{'s' if pending != 1 else ''} starting at avail "
           f"ring slot {q.last_avail % max(q.size, 1)} (its last_avail_idx {q.last_avail})."
           if pending else "the device looks at the avail ring and finds what is new.")
    return Explanation("driver", what, nxt, "2.7.13.4", "Notifying The Device",
                       f"drivernormative:{_BASIC} / Virtqueues / Supplying Buffers to The Device "
                       "/ Notifying The Device")


def _pop(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    q = model.queue(r.device, r.queue or 0)
    chain = f.get("chain", [])
    direct = [d for d in chain if not d.get("indirect")]
    indirect = [d for d in chain if d.get("indirect")]
    shape = (f"through an indirect table of {len(indirect)} descriptors at "
             f"{int(direct[0].get('addr', 0)):#x}" if indirect and direct else
             f"{len(direct)} descriptor{'s' if len(direct) != 1 else ''}")
    slot = (int(f.get("last_avail_idx", 1)) - 1) % max(q.size, 1)
    what = (f"The driver published avail idx {f.get('avail_idx')}; the device popped the chain "
            f"at head {f.get('head')} from avail ring slot {slot} of {q.name}: {shape}, "
            f"{f.get('readable')} bytes to read and {f.get('writable')} to write.")
    label = (f"devicenormative:{_BASIC} / Virtqueues / The Virtqueue Descriptor Table / "
             "Indirect Descriptors" if indirect else
             f"drivernormative:{_BASIC} / Virtqueues / Supplying Buffers to The Device / Updating idx")
    return Explanation("device", what, "the device reads the request header from the readable "
                       "buffers and decodes it.", "2.7.13", "Supplying Buffers to The Device", label)


def _request(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    opcode = str(f.get("opcode", "?"))
    if f.get("kind") == "control":
        what = (f"The device read a control request on {_q(model, r)}: {opcode}"
                + (f" for {f.get('algo')}" if f.get("algo") else "")
                + (f", session {f.get('session')}" if f.get("session") is not None else "") + ".")
        kind = "destroy session" if "DESTROY" in opcode else "create session"
        return Explanation("device", what, "the device does it at once and writes the session "
                           "id and status into the writable buffer.", "5.9.7.2.1",
                           "Session operation", f"drivernormative:{_SESSION} / Session operation: {kind}")
    what = (f"The device decoded a data request on {_q(model, r)}: {opcode} with "
            f"{f.get('algo')} in session {f.get('session')} ({f.get('mode')} mode), "
            f"{f.get('readable')} bytes in, room for {f.get('writable')} out.")
    nxt = ("small symmetric work runs inline; public-key work goes to a worker process "
           "while the guest runs on.")
    return Explanation("device", what, nxt, *_service(opcode))


def _dispatch(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    request = next((q for q in reversed(model.requests)
                    if q.queue == r.queue and q.head == f.get("head")), None)
    return Explanation("device", f"The device handed head {f.get('head')} of {_q(model, r)} to its "
                       f"worker pool ({f.get('workers')} workers, {f.get('backlog')} job(s) "
                       "waiting or running).",
                       "the guest keeps running; when a worker answers, the machine stops the "
                       "CPU and the device writes the result.",
                       *_service(request.opcode if request else ""))


def _complete(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    took = f" after {float(f['duration_us']):,.0f} µs" if f.get("duration_us") is not None else ""
    where = "in a worker" if f.get("where") == "pool" else "inline"
    if f.get("kind") == "control":
        return Explanation("device", f"The device finished control request head {f.get('head')}"
                           f"{took}: status {f.get('status')} is in its writable buffer.",
                           f"it returns the chain in the used ring with len {f.get('used')}.",
                           "5.9.7.2.1", "Session operation",
                           f"drivernormative:{_SESSION} / Session operation: create session")
    return Explanation("device", f"The device finished head {f.get('head')} {where}{took}: it "
                       f"wrote the output and status {f.get('status')} into the chain's writable "
                       "buffers (the status in the last byte).",
                       f"it returns the chain in the used ring with len {f.get('used')}.",
                       *_service(str(f.get("service", ""))))


def _fill(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    q = model.queue(r.device, r.queue or 0)
    used = int(f.get("used_idx", 0))
    event = (f"; the driver asked to be interrupted once used idx passes {q.used_event}"
             if q.used_event is not None else "")
    return Explanation("device", f"The device wrote used element (id {f.get('head')}, len "
                       f"{f.get('len')}) into used ring slot {(used - 1) % max(q.size, 1)} of "
                       f"{q.name} and advanced used idx to {used}.",
                       f"it decides whether the driver wants an interrupt now{event}.", "2.7.8",
                       "The Virtqueue Used Ring",
                       f"devicenormative:{_BASIC} / Virtqueues / The Virtqueue Used Ring")


def _irq(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    where = _q(model, r) if r.queue is not None else "the config space"
    if not f.get("raised"):
        return Explanation("device", f"The device did not interrupt for {where}: "
                           f"{f.get('reason')}.",
                           "the driver will find the used entries when it next looks.", "2.7.7",
                           "Used Buffer Notification Suppression",
                           f"devicenormative:{_BASIC} / Virtqueues / Used Buffer Notification Suppression")
    return Explanation("device", f"The device set bit {int(f.get('interrupt_status', 1)):#x} in "
                       f"InterruptStatus and raised its interrupt line for {where} "
                       f"({f.get('reason')}).",
                       "the driver's handler reads InterruptStatus, writes InterruptACK and "
                       "collects the used entries.", "4.2.3.4", "Notifications From The Device",
                       f"drivernormative:{_MMIO} / Notifications From The Device")


def _irq_ack(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    line = "the line drops" if not f.get("interrupt_status") else "other bits keep the line high"
    return Explanation("driver", f"The driver acknowledged the interrupt: it wrote "
                       f"{int(f.get('value', 0)):#x} to InterruptACK, and {line}.",
                       "the driver takes each used element from its last_used_idx up to used "
                       "idx and completes those requests.", "2.7.14",
                       "Receiving Used Buffers From The Device",
                       f"drivernormative:{_MMIO} / Notifications From The Device")


def _session_create(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    return Explanation("device", f"The device created session {f.get('session')} for "
                       f"{f.get('algo')} ({f.get('opcode')}) and returned its id.",
                       "data requests name this session id until the driver destroys it.",
                       "5.9.7.2.1", "Session operation",
                       f"drivernormative:{_SESSION} / Session operation: create session")


def _session_destroy(r: Record, model: TraceModel) -> Explanation:
    f = r.fields
    return Explanation("device", f"The device destroyed session {f.get('session')} "
                       f"(status {f.get('status')}).",
                       "the id is free; a request that still names it gets INVSESS.",
                       "5.9.7.2.1", "Session operation",
                       f"drivernormative:{_SESSION} / Session operation: destroy session")


def _needs_reset(r: Record, model: TraceModel) -> Explanation:
    return Explanation("device", f"The device set DEVICE_NEEDS_RESET: {r.fields.get('reason')}.",
                       "it sends a config-change interrupt; the driver must reset the device "
                       "before using it again.", "2.1.2", "Device Requirements: Device Status Field",
                       f"devicenormative:{_BASIC} / Device Status Field")


EXPLAINERS = {
    "status": _status, "features": _features, "config_read": _config_read,
    "queue_setup": _queue_setup, "notify": _notify, "pop": _pop, "request": _request,
    "dispatch": _dispatch, "complete": _complete, "fill": _fill, "irq": _irq,
    "irq_ack": _irq_ack, "session_create": _session_create,
    "session_destroy": _session_destroy, "needs_reset": _needs_reset,
}
# The ring transitions --explain stops at (config reads and acks are explained when
# seen, but stopping at each would bury the lesson).
EXPLAIN_STOPS = frozenset({"status", "features", "queue_setup", "notify", "pop", "request",
                           "dispatch", "complete", "fill", "irq", "session_create",
                           "session_destroy", "needs_reset"})


def explain(record: Record, model: TraceModel) -> Explanation | None:
    """The explanation of `record`; `model` must already have applied it."""
    explainer = EXPLAINERS.get(record.kind)
    return explainer(record, model) if explainer else None
