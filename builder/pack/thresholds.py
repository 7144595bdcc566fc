"""Out-of-fold probabilities + labels -> per-class thresholds that maximise an F-beta (``builder thresholds``).

Coordinate ascent: each class in turn takes the candidate threshold that maximises the metric with the other
classes' thresholds fixed, until a pass changes nothing. A class only moves when the metric rises, so the
tuned metric is never below the starting one (0.5 everywhere). Among equally good candidates the middle one
is kept, which for a clean gap between negatives and positives is the middle of the gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from builder import metrics
from builder.errors import ConfigError
from builder.truth import aligned, numbers, read_labels, read_truth
from submission.atomic import atomic_path

AVERAGES = ("macro", "micro", "samples")
CANDIDATES = 200  # at most this many thresholds tried per class and pass (quantiles of its probabilities)


@dataclass(frozen=True)
class Tuned:
    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    metric: str  # e.g. "f1_macro"
    before: float  # the metric with every threshold at 0.5
    after: float


def parse_metric(metric: str) -> float:
    """"f1" -> 1.0, "f2" -> 2.0, "f0.5" -> 0.5."""
    try:
        if metric.lower().startswith("f"):
            beta = float(metric[1:])
            if beta > 0:
                return beta
    except ValueError:
        pass
    raise ConfigError(f"metric {metric!r} is not an F-beta; use f1, f2, f0.5, ...")


def read_oof(oof: Path, labels: Path) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(classes, [N, C] probabilities, [N, C] 0/1 truth), matched by id (the first column of each file)."""
    try:
        table = pd.read_csv(oof, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read the out-of-fold predictions {oof}: {e}") from None
    id_column, classes = table.columns[0], tuple(table.columns[1:])
    if not classes:
        raise ConfigError(f"{oof} needs an id column and one probability column per class")
    probs = table[list(classes)].apply(pd.to_numeric, errors="coerce")
    if probs.isna().any().any():
        row, col = np.argwhere(probs.isna().to_numpy())[0]
        raise ConfigError(f"{oof} line {row + 2} column {classes[col]!r}: not a probability")
    truth = read_labels(labels, id_column, classes)
    missing = [i for i in table[id_column] if i not in truth.index]
    if missing:
        raise ConfigError(f"{len(missing)} id(s) of {oof} have no label in {labels}: {missing[:5]}")
    return classes, probs.to_numpy(dtype=float), truth.loc[table[id_column]].to_numpy()


def _column_scores(p: np.ndarray, y: np.ndarray, candidates: np.ndarray, rest: tuple, beta: float,
                   average: str) -> np.ndarray:
    """The metric for every candidate threshold of one class, the other classes' predictions fixed."""
    b2 = beta * beta
    pred = p[None, :] >= candidates[:, None]  # [K, N]
    tp, fp, fn = (pred & y).sum(1), (pred & ~y).sum(1), (~pred & y).sum(1)
    if average == "macro":
        others_sum, n_classes = rest
        f = metrics._safe_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)
        return (others_sum + f) / n_classes
    if average == "micro":
        tp_o, fp_o, fn_o = rest
        tp, fp, fn = tp + tp_o, fp + fp_o, fn + fn_o
        return metrics._safe_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)
    row_tp, row_fp, row_fn = rest  # per-row counts of the other classes
    rtp, rfp, rfn = row_tp + (pred & y), row_fp + (pred & ~y), row_fn + (~pred & y)
    return metrics._safe_div((1 + b2) * rtp, (1 + b2) * rtp + b2 * rfn + rfp).mean(1)


def tune(probs: np.ndarray, truth: np.ndarray, beta: float = 1.0, average: str = "macro",
         max_passes: int = 10) -> np.ndarray:
    """Per-class thresholds maximising F-beta (``average`` macro, micro or samples) by coordinate ascent."""
    if average not in AVERAGES:
        raise ConfigError(f"average {average!r} is unknown; use one of: {', '.join(AVERAGES)}")
    y = truth.astype(bool)
    n, c = probs.shape
    thresholds = np.full(c, 0.5)
    current = metrics.fbeta(y, probs >= thresholds, beta, average)
    for _ in range(max_passes):
        changed = False
        for k in range(c):
            pred = probs >= thresholds
            others = np.delete(np.arange(c), k)
            if average == "macro":
                per_class = [metrics.fbeta(y[:, [j]], pred[:, [j]], beta, "macro") for j in others]
                rest = (sum(per_class), c)
            elif average == "micro":
                tp, fp, fn = metrics.confusion_counts(y[:, others], pred[:, others])
                rest = (tp.sum(), fp.sum(), fn.sum())
            else:
                yo, po = y[:, others], pred[:, others]
                rest = ((yo & po).sum(1)[None], (~yo & po).sum(1)[None], (yo & ~po).sum(1)[None])
            values = np.unique(np.quantile(probs[:, k], np.linspace(0, 1, CANDIDATES)))
            candidates = np.unique(np.concatenate([(values[:-1] + values[1:]) / 2, [values[0] / 2, (values[-1] + 1) / 2]]))
            scores = _column_scores(probs[:, k], y[:, k], candidates, rest, beta, average)
            best = scores.max()
            if best > current + 1e-12:
                tied = candidates[scores >= best - 1e-12]
                thresholds[k] = float(tied[len(tied) // 2])
                current = metrics.fbeta(y, probs >= thresholds, beta, average)
                changed = True
        if not changed:
            break
    return thresholds


def tune_file(oof: Path, labels: Path, metric: str = "f1", average: str = "macro") -> Tuned:
    beta = parse_metric(metric)
    classes, probs, truth = read_oof(oof, labels)
    thresholds = np.round(tune(probs, truth, beta, average), 6)
    name = f"{metric.lower()}_{average}"
    before = metrics.fbeta(truth, probs >= 0.5, beta, average)
    after = metrics.fbeta(truth, probs >= thresholds, beta, average)
    return Tuned(classes, tuple(float(t) for t in thresholds), name, before, after)


def tune_cutoffs(values: np.ndarray, grades: np.ndarray, max_passes: int = 10) -> np.ndarray:
    """Increasing cutoffs that cut regression values into the grades with the best quadratic weighted kappa:
    starting halfway between the grades, each cutoff in turn takes the best candidate between its neighbours,
    moving only when kappa rises."""
    levels = np.unique(grades.astype(np.int64))
    cutoffs = (levels[:-1] + levels[1:]) / 2.0

    def kappa(c: np.ndarray) -> float:
        return metrics.quadratic_weighted_kappa(grades, np.searchsorted(c, values, side="right"))

    current = kappa(cutoffs)
    for _ in range(max_passes):
        changed = False
        for i in range(len(cutoffs)):
            lower = cutoffs[i - 1] if i else -np.inf
            upper = cutoffs[i + 1] if i + 1 < len(cutoffs) else np.inf
            inside = values[(values > lower) & (values < upper)]
            if not len(inside):
                continue
            points = np.unique(np.quantile(inside, np.linspace(0, 1, CANDIDATES)))
            for candidate in (points[:-1] + points[1:]) / 2:
                trial = cutoffs.copy()
                trial[i] = candidate
                value = kappa(trial)
                if value > current + 1e-12:
                    cutoffs, current, changed = trial, value, True
        if not changed:
            break
    return cutoffs


def tune_cutoffs_file(oof: Path, labels: Path) -> Tuned:
    """Cutoffs for out-of-fold regression values (id + one column) against integer grades (id + one column)."""
    table = read_truth(oof, "id")
    values = numbers(table)
    grades = numbers(aligned(read_truth(labels, "id"), pd.Series(table.index)))
    levels = np.unique(grades)
    if not np.array_equal(levels, np.arange(len(levels))):
        raise ConfigError(f"{labels} must hold the integer grades 0, 1, ... (found {levels[:10].tolist()}): a grade is "
                          "how many cutoffs the value reaches")
    cutoffs = np.round(tune_cutoffs(values, grades), 6)
    start = (levels[:-1] + levels[1:]) / 2.0
    before = metrics.quadratic_weighted_kappa(grades, np.searchsorted(start, values, side="right"))
    after = metrics.quadratic_weighted_kappa(grades, np.searchsorted(cutoffs, values, side="right"))
    return Tuned(("cutoffs",), tuple(float(c) for c in cutoffs), "qwk", before, after)


def write_thresholds(tuned: Tuned, out: Path) -> None:
    if tuned.metric == "qwk":
        data = {"metric": tuned.metric, "before": tuned.before, "after": tuned.after, "cutoffs": list(tuned.thresholds)}
    else:
        data = {"metric": tuned.metric, "before": tuned.before, "after": tuned.after,
                "thresholds": dict(zip(tuned.classes, tuned.thresholds))}
    with atomic_path(Path(out)) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
