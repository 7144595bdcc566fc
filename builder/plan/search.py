"""The plans worth considering, scored and timed: every subset of the models with every TTA preset inside the
bundle's, merged as the runtime merges them and scored on the held-out labels; the projected time of each on the
hidden set; the best that fit; and the order in which a late run should give work up.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builder.errors import ConfigError
from builder.metrics import log_loss as log_loss_of
from builder.metrics import macro_roc_auc
from builder.plan.measure import Measured
from builder.truth import aligned, class_matrix, read_truth
from submission.ensemble import combine, merge
from submission.manifest import TTA_PRESETS

MAX_MODELS = 12  # 4,095 subsets of models: beyond, the search would be a guess
METRICS = {"accuracy": True, "auc": True, "log_loss": False}  # name -> higher is better


@dataclass(frozen=True)
class Candidate:
    models: tuple[int, ...]  # manifest positions
    tta: str  # a TTA preset within the bundle's
    seconds: float  # projected on the hidden set: start + rows x (decode + the forward passes)
    score: float

    def names(self, m: Measured) -> list[str]:
        return [m.manifest.models[i].name for i in self.models]


def presets_within(views: tuple[str, ...]) -> list[str]:
    return [name for name, vs in TTA_PRESETS.items() if set(vs) <= set(views)]


def probabilities(m: Measured, models: tuple[int, ...], views: tuple[str, ...]) -> np.ndarray:
    """[N, C]: the chosen models and views merged as the runtime merges them (its weights, merge, heads)."""
    v = [m.views.index(name) for name in views]
    weights = np.array([m.manifest.models[i].weight for i in models], dtype=np.float64)
    merged = [merge(h[np.ix_(models, v)], weights, m.manifest.merge, m.manifest.task) for h in m.logits]
    return combine(merged, m.manifest.task)


def scorer(m: Measured, labels: Path, metric: str | None) -> tuple[str, Callable[[np.ndarray], float]]:
    """The metric's name and a function of [N, C] probabilities -> its value on the held-out labels."""
    task, classes = m.manifest.task, m.manifest.classes
    if task == "regression":
        raise ConfigError("builder plan scores classification ensembles; this bundle is a regression")
    metric = metric or ("accuracy" if task == "multiclass" else "auc")
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r}; expected one of: {', '.join(METRICS)}")
    truth = aligned(read_truth(labels, m.manifest.output.columns[0]), m.ids)
    true = class_matrix(truth, classes, several=task == "multilabel")
    if metric == "accuracy":
        if task != "multiclass":
            raise ConfigError("--metric accuracy scores multiclass tasks; use auc or log_loss")
        index = true.argmax(1)
        return metric, lambda p: float(np.mean(p.argmax(1) == index))
    if metric == "auc":
        return metric, lambda p: macro_roc_auc(true, p)
    target = true.argmax(1) if task == "multiclass" else true
    return metric, lambda p: log_loss_of(target, p, task)


def candidates(m: Measured, score_of, rows: int) -> list[Candidate]:
    """Every subset of the models with every preset inside the bundle's, timed for ``rows`` images and scored."""
    count = len(m.manifest.models)
    if count > MAX_MODELS:
        raise ConfigError(f"the bundle has {count} models; builder plan searches up to {MAX_MODELS}")
    found = []
    for size in range(1, count + 1):
        for models in itertools.combinations(range(count), size):
            for tta in presets_within(m.views):
                views = TTA_PRESETS[tta]
                v = [m.views.index(name) for name in views]
                per_image = m.decode_seconds + float(m.seconds[np.ix_(models, v)].sum())
                found.append(Candidate(models, tta, m.start_seconds + rows * per_image,
                                       score_of(probabilities(m, models, views))))
    return found


def best_fitting(found: list[Candidate], budget: float, higher_is_better: bool) -> list[Candidate]:
    """The plans within the time budget, best score first (then the quicker, then the fewer models)."""
    sign = -1.0 if higher_is_better else 1.0
    fitting = [c for c in found if c.seconds <= budget]
    return sorted(fitting, key=lambda c: (sign * c.score, c.seconds, len(c.models)))


def drop_order(m: Measured, chosen: Candidate, score_of, higher_is_better: bool) -> list[str]:
    """What a late run of ``chosen`` gives up first: its views, the one whose loss costs least score first, then its
    models likewise, keeping the first view and one model."""
    sign = 1.0 if higher_is_better else -1.0
    models, views, order = list(chosen.models), list(TTA_PRESETS[chosen.tta]), []
    while len(views) > 1:
        loss = {v: sign * score_of(probabilities(m, tuple(models), tuple(x for x in views if x != v)))
                for v in views[1:]}
        cheapest = max(loss, key=lambda v: (loss[v], -views.index(v)))
        order.append(f"view:{cheapest}")
        views.remove(cheapest)
    while len(models) > 1:
        loss = {i: sign * score_of(probabilities(m, tuple(x for x in models if x != i), tuple(views))) for i in models}
        cheapest = max(loss, key=lambda i: (loss[i], i))
        order.append(f"model:{m.manifest.models[cheapest].name}")
        models.remove(cheapest)
    return order
