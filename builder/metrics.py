"""Leaderboard metrics as pure numpy functions: F-scores, accuracy, log loss, ROC AUC, per-class tables.

Conventions follow scikit-learn (zero_division=0), so a score here is the score a platform computing it
with scikit-learn gives.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS] for log loss, as platforms do
# every headline metric scoring can compute (which ones a submission gets depends on what its format holds)
NAMES = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "qwk", "log_loss", "roc_auc_macro", "f1_samples",
         "f2_samples", "f2_macro", "exact_match", "roc_auc", "rmse", "mae", "map@k (map@5 for a top 5)")


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives, false negatives of [N, C] 0/1 matrices."""
    t, p = y_true.astype(bool), y_pred.astype(bool)
    return (t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)


def fbeta(y_true: np.ndarray, y_pred: np.ndarray, beta: float = 1.0, average: str = "macro") -> float:
    """F-beta of [N, C] 0/1 matrices: ``macro`` (mean over classes), ``micro`` (pooled counts),
    ``weighted`` (classes weighted by support), ``samples`` (mean over rows)."""
    b2 = beta * beta
    if average == "samples":
        t, p = y_true.astype(bool), y_pred.astype(bool)
        tp, fp, fn = (t & p).sum(1), (~t & p).sum(1), (t & ~p).sum(1)
        return float(np.mean(_safe_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)))
    tp, fp, fn = confusion_counts(y_true, y_pred)
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    scores = _safe_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)
    if average == "micro":
        return float(scores)
    if average == "weighted":
        support = y_true.sum(0)
        return float(_safe_div((scores * support).sum(), support.sum()))
    if average == "macro":
        return float(scores.mean())
    raise ValueError(f"unknown average {average!r}; expected macro, micro, weighted or samples")


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(labels), n), dtype=np.int64)
    out[np.arange(len(labels)), labels] = 1
    return out


def multiclass_scores(true: np.ndarray, pred: np.ndarray, n: int) -> dict[str, float]:
    """Accuracy and F1 averages of class-index vectors."""
    t, p = one_hot(true, n), one_hot(pred, n)
    return {
        "accuracy": float(np.mean(true == pred)),
        "f1_macro": fbeta(t, p, 1.0, "macro"),
        "f1_micro": fbeta(t, p, 1.0, "micro"),
        "f1_weighted": fbeta(t, p, 1.0, "weighted"),
    }


def multilabel_scores(true: np.ndarray, pred: np.ndarray, beta: float = 2.0) -> dict[str, float]:
    """F1 (samples, macro, micro) and F-beta (samples, macro) of [N, C] 0/1 matrices."""
    return {
        "f1_samples": fbeta(true, pred, 1.0, "samples"),
        "f1_macro": fbeta(true, pred, 1.0, "macro"),
        "f1_micro": fbeta(true, pred, 1.0, "micro"),
        f"f{beta:g}_samples": fbeta(true, pred, beta, "samples"),
        f"f{beta:g}_macro": fbeta(true, pred, beta, "macro"),
        "exact_match": float(np.mean((true == pred).all(1))),
    }


def log_loss(true: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Multiclass: mean -log p(true class) over rows renormalised to sum 1; multilabel: mean binary log loss."""
    p = np.clip(probs, EPS, 1 - EPS)
    if task == "multiclass":
        p = p / p.sum(1, keepdims=True)
        return float(-np.mean(np.log(p[np.arange(len(true)), true])))
    return float(-np.mean(true * np.log(p) + (1 - true) * np.log(1 - p)))


def roc_auc(true: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC by the rank statistic (ties count half); NaN when one class is absent."""
    true = true.astype(bool)
    n_pos, n_neg = int(true.sum()), int((~true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # tied scores share their mean rank
    return float((ranks[true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def macro_roc_auc(true: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes that have both positives and negatives."""
    aucs = [roc_auc(true[:, c], probs[:, c]) for c in range(true.shape[1])]
    valid = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(valid)) if valid else float("nan")


def per_class(true: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> list[dict[str, float | str | int]]:
    """Precision, recall, F1 and support of each class, from [N, C] 0/1 matrices."""
    tp, fp, fn = confusion_counts(true, pred)
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return [
        {"class": c, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
         "support": int(true[:, i].sum())}
        for i, c in enumerate(classes)
    ]


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """[n, n] counts of [N] class indices: row the true class, column the predicted one (scikit-learn's layout)."""
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return matrix


def f1_curve(true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 of one class's [N] 0/1 truths when its [N] probabilities are cut at each threshold (p >= t is positive)."""
    t = np.asarray(true).astype(bool)
    positive = np.asarray(probs)[None, :] >= np.asarray(thresholds)[:, None]
    tp, fp, fn = (positive & t).sum(1), (positive & ~t).sum(1), (~positive & t).sum(1)
    return _safe_div(2 * tp, 2 * tp + fp + fn)


def binary_log_loss(true: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(scores, EPS, 1 - EPS)
    return float(-np.mean(true * np.log(p) + (1 - true) * np.log(1 - p)))


def quadratic_weighted_kappa(true: np.ndarray, pred: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights over the grades seen in either vector (scikit-learn's convention)."""
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    grades = np.union1d(true, pred)
    n = len(grades)
    index = {g: i for i, g in enumerate(grades)}
    observed = np.zeros((n, n))
    for t, p in zip(true, pred):
        observed[index[t], index[p]] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    weights = (np.arange(n)[:, None] - np.arange(n)[None, :]) ** 2 / max((n - 1) ** 2, 1)
    denominator = (weights * expected).sum()
    return float(1 - (weights * observed).sum() / denominator) if denominator else 1.0


def average_precision_at_k(true: str, predicted: list[str], k: int) -> float:
    """1 / the position of the true label among the first k predictions, else 0 (its first position, as the
    whale-identification grader computes it)."""
    top = predicted[:k]
    return 1.0 / (top.index(true) + 1) if true in top else 0.0


def mean_average_precision_at_k(true: list[str], predicted: list[list[str]], k: int) -> float:
    """MAP@k with one true label per row, as image-identification competitions score top-k answers."""
    return float(np.mean([average_precision_at_k(t, p, k) for t, p in zip(true, predicted)])) if true else 0.0


def regression_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    error = pred - true
    return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error)))}
