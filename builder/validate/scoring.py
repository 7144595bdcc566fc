"""A checked submission + the true labels -> the leaderboard score and a per-class table."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from builder import metrics
from builder.errors import ConfigError
from submission import formats
from submission.formats.base import Expectation


@dataclass(frozen=True)
class Score:
    metric: str  # the headline metric's name
    value: float
    scores: dict[str, float]  # every metric computed
    per_class: list[dict]  # precision, recall, F1, support of each class


def score(table: pd.DataFrame, exp: Expectation, truth: pd.DataFrame, metric: str | None = None,
          beta: float = 2.0) -> Score:
    """Score a submission that passed the checks against ``truth`` (from ``read_labels``)."""
    classes = exp.classes or tuple(truth.columns)
    ids = table[exp.id_column]
    missing = [i for i in ids if i not in truth.index]
    if missing:
        raise ConfigError(f"{len(missing)} submission id(s) have no label: {missing[:5]}")
    true = truth.loc[ids].to_numpy()
    spec = formats.get(exp.format)
    value_columns = [c for c in exp.columns if c != exp.id_column]
    back = spec.read_back(table[value_columns].reset_index(drop=True), replace(exp, classes=classes))
    pred, probs = back.decisions, back.probabilities
    if exp.task == "multiclass":
        scores = metrics.multiclass_scores(true.argmax(1), pred.argmax(1), len(classes))
        if probs is not None:
            scores["log_loss"] = metrics.log_loss(true.argmax(1), probs, "multiclass")
            scores["roc_auc_macro"] = metrics.macro_roc_auc(true, probs)
    else:
        scores = metrics.multilabel_scores(true, pred, beta)
        if probs is not None:
            scores["log_loss"] = metrics.log_loss(true, probs, "multilabel")
            scores["roc_auc_macro"] = metrics.macro_roc_auc(true, probs)
    name = metric or spec.default_metric(exp.task)
    if name not in scores:
        raise ConfigError(f"metric {name!r} is not computed for this submission; choose one of: {', '.join(scores)}")
    return Score(name, scores[name], scores, metrics.per_class(true, pred, classes))
