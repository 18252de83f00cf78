"""`vmsim learn`: a short guided lesson on the default guest, from its real events.

The lesson is a list of steps, each waiting for a kind of event (the negotiation, the
first queue set up, the first session, the first data request, the interrupt that
completes it, the session destroyed). The gate stops the guest at the event that
matches the current step; the explanation comes from vmsim.trace.explain, computed
from that event, so the numbers are the ones this boot produced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vmsim.trace.control import MachineGate
from vmsim.trace.explain import Explanation, explain
from vmsim.trace.hub import Record
from vmsim.trace.model import TraceModel


@dataclass(frozen=True)
class Step:
    title: str
    intro: str
    matches: Callable[[Record, TraceModel], bool]


def _data_queue(r: Record, m: TraceModel) -> bool:
    return r.queue is not None and m.queue_name(r.device, r.queue).startswith("dataq")


STEPS = (
    Step("Negotiation", "The driver and the device agree on features: the device offers "
         "its bits, the driver keeps the ones it understands.",
         lambda r, m: r.kind == "features"),
    Step("Queue setup", "Before DRIVER_OK the driver gives every virtqueue its memory: a "
         "descriptor table, an avail ring it writes and a used ring the device writes.",
         lambda r, m: r.kind == "queue_setup"),
    Step("Creating a session", "virtio-crypto keeps keys in sessions: the driver sends "
         "CREATE_SESSION on the control queue and gets an id back.",
         lambda r, m: r.kind == "session_create"),
    Step("The first request", "A data request names its session; the device pops the "
         "chain and decodes the header from the readable buffers.",
         lambda r, m: r.kind == "request" and r.fields.get("kind") == "data"),
    Step("The interrupt", "The result is in the used ring; unless the driver said not now, "
         "the device interrupts it.",
         lambda r, m: r.kind == "irq" and bool(r.fields.get("raised")) and _data_queue(r, m)),
    Step("Destroying the session", "When the key is no longer needed the driver destroys "
         "the session, again on the control queue.",
         lambda r, m: r.kind == "session_destroy"),
)


@dataclass
class Reached:
    number: int
    step: Step
    record: Record
    explanation: Explanation

    def text(self) -> str:
        return (f"Step {self.number}/{len(STEPS)}: {self.step.title}\n{self.step.intro}\n\n"
                f"{self.explanation.text()}")


class Lesson:
    """Follows the events (a hub listener, before the gate's) and stops the gate at
    each step's event; `on_step` is called there, on the CPU thread."""

    def __init__(self, gate: MachineGate, devices: list[dict] | None = None,
                 on_step: Callable[[Reached], None] = lambda reached: None) -> None:
        self.gate = gate
        self.model = TraceModel(devices or [])
        self.index = 0
        self.reached: list[Reached] = []
        self.on_step = on_step
        gate.stop_when = self._is_step

    @property
    def done(self) -> bool:
        return self.index >= len(STEPS)

    @property
    def current(self) -> Reached | None:
        return self.reached[-1] if self.reached else None

    def listener(self, record: Record) -> None:
        self.model.apply(record)

    def _is_step(self, record: Record) -> bool:
        if self.done or not STEPS[self.index].matches(record, self.model):
            return False
        explanation = explain(record, self.model)
        if explanation is None:
            return False
        step = STEPS[self.index]
        self.index += 1
        reached = Reached(self.index, step, record, explanation)
        self.reached.append(reached)
        self.on_step(reached)
        return True
