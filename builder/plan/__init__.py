"""``builder plan``: from a packed bundle's run on a labelled held-out folder, the best-scoring plans (models x TTA
views) that fit the time limit on the hidden set, and the chosen one as a config ``builder pack --config`` takes.

``measure`` runs every model on every view and times each; ``search`` merges, scores and projects every plan worth
considering. The projection is the start (a fresh interpreter importing the runtime, and the models loading) plus
the hidden set's rows times the per-image cost of decoding and of each chosen (model, view), measured here: plan on
hardware like the platform's, or allow for the difference with ``--margin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from builder.errors import ConfigError
from builder.plan import search
from builder.plan.measure import Measured, measure
from builder.platforms.base import Limits
from submission.atomic import atomic_path


@dataclass
class Planned:
    measured: Measured
    metric: str
    budget: float  # the time the plans must fit in: the limit less the margin
    limit: float
    rows: int  # the hidden set's rows the time is projected for
    full: search.Candidate  # the bundle as packed
    fitting: list[search.Candidate]  # best first
    config: dict  # the chosen plan as pack settings


def make_plan(bundle: Path, data: Path, labels: Path, limit: float, rows: int | None = None, margin: float = 0.1,
              metric: str | None = None, batch_size: int = 32, device: str = "cpu") -> Planned:
    if not 0.0 <= margin < 1.0:
        raise ConfigError(f"--margin is {margin:g}; expected a share of the limit in [0, 1)")
    measured = measure(bundle, data, batch_size, device)
    metric, score_of = search.scorer(measured, labels, metric)
    higher = search.METRICS[metric]
    rows = rows or len(measured.ids)
    budget = limit * (1.0 - margin)
    found = search.candidates(measured, score_of, rows)
    full = next(c for c in found if len(c.models) == len(measured.manifest.models) and c.tta == measured.manifest.tta)
    fitting = search.best_fitting(found, budget, higher)
    if not fitting:
        cheapest = min(found, key=lambda c: c.seconds)
        raise ConfigError(f"no plan fits {budget:.0f} s ({limit:.0f} s less {margin:.0%}) on {rows} images: the "
                          f"cheapest, {cheapest.names(measured)} with TTA {cheapest.tta!r}, is projected at "
                          f"{cheapest.seconds:.0f} s; use a faster engine or device, or a smaller ensemble")
    chosen = fitting[0]
    models = measured.manifest.models
    config = {"tta": chosen.tta,
              "fold_weights": {models[i].name: models[i].weight for i in chosen.models},
              "drop_order": search.drop_order(measured, chosen, score_of, higher),
              "deadline": round(Limits(limit, None, None, (), None, None).deadline(), 1)}
    left = [m.name for i, m in enumerate(models) if i not in chosen.models]
    if left:
        config["leave_out"] = left
    if not config["drop_order"]:
        del config["drop_order"]
    return Planned(measured, metric, budget, limit, rows, full, fitting, config)


def write_config(planned: Planned, path: Path) -> None:
    head = (f"# builder plan: {planned.metric} {planned.fitting[0].score:.4f}, projected "
            f"{planned.fitting[0].seconds:.0f} s of {planned.limit:.0f} s on {planned.rows} images\n")
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(head + yaml.safe_dump(planned.config, sort_keys=False))
