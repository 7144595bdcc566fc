"""A checked submission + the true labels -> the leaderboard score (and a per-class table where there are classes).

The format's spec reads the CSV back; what it holds decides the metrics: class decisions and probabilities
(accuracy, F-scores, log loss, macro ROC AUC), a positive class's probability (ROC AUC, log loss), values or grades
(quadratic weighted kappa, RMSE, MAE), top-k names (MAP@k).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from builder import metrics
from builder.errors import ConfigError
from builder.pack.thresholds import read_oof
from builder.task import decide
from builder.truth import aligned, class_matrix, numbers, read_truth
from submission import formats
from submission.formats.base import Expectation, ReadBack


@dataclass(frozen=True)
class Score:
    metric: str  # the headline metric's name
    value: float
    scores: dict[str, float]  # every metric computed
    per_class: list[dict]  # precision, recall, F1, support of each class (empty without classes)
    confusion: list[list[int]] | None = None  # multiclass: row the true class, column the predicted one
    curves: list[dict] | None = None  # multilabel with probabilities: each class's F1 along THRESHOLDS (``_curves``)


THRESHOLDS = tuple(round(t, 3) for t in np.linspace(0.0, 1.0, 101))  # where the F1 curves are drawn


def _curves(true: np.ndarray, probs: np.ndarray, classes: tuple[str, ...], used: dict[str, float] | None) -> list[dict]:
    """Each class's F1 along THRESHOLDS, where it is best, and at the threshold used (``used``'s, else 0.5)."""
    found = []
    for c, name in enumerate(classes):
        f1 = metrics.f1_curve(true[:, c], probs[:, c], np.array(THRESHOLDS))
        at = (used or {}).get(name, 0.5)
        best = int(np.argmax(f1))
        found.append({"class": name, "f1": [round(float(v), 4) for v in f1], "best_threshold": THRESHOLDS[best],
                      "best_f1": float(f1[best]), "threshold": at,
                      "f1_at_threshold": float(metrics.f1_curve(true[:, c], probs[:, c], np.array([at]))[0])})
    return found


def oof_curves(oof: Path, labels: Path, used: dict[str, float] | None = None) -> list[dict]:
    """Each class's F1 curve on out-of-fold probabilities against their labels, read as ``builder thresholds``
    reads them: where the thresholds tuned on them (``used``) sit."""
    classes, probs, truth = read_oof(oof, labels)
    return _curves(truth.astype(int), probs, classes, used)


def _class_scores(back: ReadBack, truth: pd.DataFrame, exp: Expectation, beta: float,
                  used: dict[str, float] | None) -> tuple[dict[str, float], list, list | None, list | None]:
    """The class metrics, the per-class table, the confusion matrix (multiclass) and the F1 curves (multilabel,
    where the submission holds probabilities)."""
    if exp.classes is None:
        raise ConfigError("scoring a label column needs the class names: pass --classes a,b,c")
    classes = exp.classes
    true = class_matrix(truth, classes, several=exp.task == "multilabel")
    pred, probs = back.decisions, back.probabilities
    if exp.task == "multilabel":
        scores = metrics.multilabel_scores(true, pred, beta)
        if probs is not None:
            scores["log_loss"] = metrics.log_loss(true, probs, "multilabel")
            scores["roc_auc_macro"] = metrics.macro_roc_auc(true, probs)
        curves = _curves(true, probs, classes, used) if probs is not None else None
        return scores, metrics.per_class(true, pred, classes), None, curves
    scores = metrics.multiclass_scores(true.argmax(1), pred.argmax(1), len(classes))
    scores["qwk"] = metrics.quadratic_weighted_kappa(true.argmax(1), pred.argmax(1))  # classes as ordered grades
    if probs is not None:
        scores["log_loss"] = metrics.log_loss(true.argmax(1), probs, "multiclass")
        scores["roc_auc_macro"] = metrics.macro_roc_auc(true, probs)
    confusion = metrics.confusion_matrix(true.argmax(1), pred.argmax(1), len(classes)).tolist()
    return scores, metrics.per_class(true, pred, classes), confusion, None


def score(table: pd.DataFrame, exp: Expectation, labels: Path, metric: str | None = None, beta: float = 2.0,
          thresholds: dict[str, float] | None = None) -> Score:
    """Score a submission that passed the checks against the labels file: the format's spec reads it back, and what
    it holds decides the metrics. ``thresholds``: the per-class thresholds its decisions were made with (multilabel)."""
    truth = aligned(read_truth(labels, exp.id_column), table[exp.id_column])
    spec = formats.get(exp.format)
    values = table[[c for c in exp.columns if c != exp.id_column]].reset_index(drop=True)
    if exp.task is None and not spec.per_class_columns and exp.positive_class is None:  # the labels tell
        decided = decide(labels=truth, classes=exp.classes)
        exp = replace(exp, task=decided.task) if decided.task in spec.tasks else exp
    exp = replace(exp, classes=exp.classes or tuple(truth.columns))
    back = spec.read_back(values, exp)
    per_class: list = []
    confusion = curves = None
    if back.scores is not None:  # one class's probability
        true = numbers(truth, exp.positive_class)
        scores = {"roc_auc": metrics.roc_auc(true, back.scores), "log_loss": metrics.binary_log_loss(true, back.scores),
                  "accuracy": float(np.mean((back.scores >= 0.5) == (true >= 0.5)))}
    elif back.values is not None:  # a value or a grade
        true = numbers(truth)
        scores = metrics.regression_scores(true, back.values)
        if exp.grades:
            scores = {"qwk": metrics.quadratic_weighted_kappa(true, back.values),
                      "accuracy": float(np.mean(true == back.values)), **scores}
    elif back.ranked is not None and exp.top_k > 1:  # class names, best first
        true_names = [str(c).strip() for c in truth.iloc[:, 0]]
        scores = {f"map@{exp.top_k}": metrics.mean_average_precision_at_k(true_names, back.ranked, exp.top_k),
                  "accuracy": float(np.mean([bool(r) and r[0] == t for t, r in zip(true_names, back.ranked)]))}
    else:  # class decisions (and probabilities)
        scores, per_class, confusion, curves = _class_scores(back, truth, exp, beta, thresholds)
    name = metric or spec.default_metric(exp)
    if name not in scores:
        raise ConfigError(f"metric {name!r} is not computed for this submission; choose one of: {', '.join(scores)}")
    return Score(name, scores[name], scores, per_class, confusion, curves)
