"""The deadline kept: after each batch the finish is projected from the measured rate, and when it would pass the
deadline the batches left are predicted with less work, given up in the manifest's drop order (views first, then
models), until the projection fits or only the first view of one model is left.

The projection assumes each (model, view) pair costs the same share of a batch and is measured again on every
batch, so a wrong guess at one drop is corrected at the next. One batch's time is kept in hand, so the last batch
ends before the deadline, not at it. Rows predicted before a drop are the full run's exactly; with no deadline the
watchdog is not there at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from submission.manifest import Manifest


@dataclass(frozen=True)
class Plan:
    """The work done on a batch: the models (manifest positions) and the TTA views (names) that run."""

    models: tuple[int, ...]
    views: tuple[str, ...]

    @property
    def units(self) -> int:
        return len(self.models) * len(self.views)

    def without(self, item: str, manifest: Manifest) -> Plan:
        kind, _, name = item.partition(":")
        if kind == "view":
            return Plan(self.models, tuple(v for v in self.views if v != name))
        index = next(i for i, m in enumerate(manifest.models) if m.name == name)
        return Plan(tuple(i for i in self.models if i != index), self.views)

    def describe(self, manifest: Manifest) -> dict[str, list[str]]:
        return {"models": [manifest.models[i].name for i in self.models], "views": list(self.views)}


def full_plan(manifest: Manifest, views: Sequence[str]) -> Plan:
    return Plan(tuple(range(len(manifest.models))), tuple(views))


class Watchdog:
    """Decides, after each batch, the plan of the batches left. ``at`` is the deadline as ``time.time()``."""

    def __init__(self, manifest: Manifest, views: Sequence[str], at: float, clock: Callable[[], float] = time.time):
        self.manifest, self.at, self.clock = manifest, at, clock
        self.full = self.plan = full_plan(manifest, views)
        self.order = list(manifest.drop_order())
        self.dropped: list[str] = []
        self.last = clock()

    def started(self) -> None:
        """The models are loaded: batches are timed from here."""
        self.last = self.clock()

    def after_batch(self, batches_left: int, images_left: int, log: Callable[[str], None]) -> Plan:
        """The plan for the batches left, given the batch just done."""
        now = self.clock()
        per_unit = (now - self.last) / self.plan.units
        self.last = now
        if not batches_left:
            return self.plan

        def finish(plan: Plan) -> float:  # the batches left, and one more in hand
            return now + (batches_left + 1) * per_unit * plan.units

        projected, plan, dropped = finish(self.plan), self.plan, []
        while finish(plan) > self.at and self.order:
            item = self.order.pop(0)
            plan = plan.without(item, self.manifest)
            dropped.append(item)
        if dropped:
            self.dropped += dropped
            names = ", ".join(d.replace(":", " ") for d in dropped)
            log(f"the run would end {projected - self.at:.0f} s past its deadline: the {images_left} image(s) left are "
                f"predicted without {names} (the problems JSON lists them)"
                + (f"; still late with what is left ({len(plan.models)} model(s), {len(plan.views)} view(s))"
                   if finish(plan) > self.at else ""))
            self.plan = plan
        return self.plan
