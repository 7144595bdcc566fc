"""Merge the logits of every model and TTA view into probabilities per head, then combine the heads into classes.

Everything here is float64 numpy on the host, whatever ran the forward passes (eager PyTorch on a GPU, or an
engine), so that one ensemble gives the same numbers on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _log_sigmoid(logits: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -logits)


def activate(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax over a head's outputs (multiclass), an independent sigmoid per output (multilabel), or the
    raw value (regression)."""
    if task == "multiclass":
        return np.exp(_log_softmax(logits))
    return np.exp(_log_sigmoid(logits)) if task == "multilabel" else logits


def log_activate(logits: np.ndarray, task: str) -> np.ndarray:
    return _log_softmax(logits) if task == "multiclass" else _log_sigmoid(logits)


def merge(logits: np.ndarray, weights: np.ndarray, mode: str, task: str) -> np.ndarray:
    """[M models, V views, B images, K outputs] logits of one head -> [B, K] probabilities (values for regression).

    Views count equally within a model; models count by ``weights`` (normalised to sum to 1).
    - ``mean``: weighted arithmetic mean of probabilities;
    - ``gmean``: weighted geometric mean of probabilities (renormalised over the head for multiclass);
    - ``logits``: weighted mean of logits, then the activation.
    """
    logits = np.asarray(logits, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    w = (weights / weights.sum()).reshape(-1, 1, 1)
    if mode == "logits":
        return activate((logits.mean(1) * w).sum(0), task)
    if mode == "mean":
        return (activate(logits, task).mean(1) * w).sum(0)
    if mode == "gmean":
        log_p = (log_activate(logits, task).mean(1) * w).sum(0)
        return activate(log_p, "multiclass") if task == "multiclass" else np.exp(log_p)
    raise ValueError(f"unknown merge mode {mode!r}")


def view_means(logits: np.ndarray, task: str) -> np.ndarray:
    """[M, V, B, K] logits -> [M, B, K]: each model's probabilities, its views averaged (the input of ``rank``)."""
    return activate(np.asarray(logits, dtype=np.float64), task).mean(1)


def percentile_ranks(scores: np.ndarray) -> np.ndarray:
    """[N, C] -> [N, C]: each column's values as their rank among the N rows over N (ties share their mean rank)."""
    n = len(scores)
    ranks = np.empty_like(scores, dtype=np.float64)
    for c in range(scores.shape[1]):
        order = np.argsort(scores[:, c], kind="mergesort")
        _, first, counts = np.unique(scores[order, c], return_index=True, return_counts=True)
        ranks[order, c] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks / max(n, 1)


def rank_average(per_model: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[M, N, C] probabilities of each model over the whole test set -> [N, C]: the weighted mean of each model's
    percentile ranks (``merge: rank``, as AUC ensembles are averaged)."""
    w = weights / weights.sum()
    return sum(wi * percentile_ranks(p) for wi, p in zip(w, per_model))


def finish(values: np.ndarray, merge_mode: str, weights: np.ndarray) -> np.ndarray:
    """The values of the whole test set -> [N, C]: ranks averaged for merge "rank", else the values as they are."""
    return rank_average(values, weights) if merge_mode == "rank" else values


def combine(heads: Sequence[np.ndarray], task: str) -> np.ndarray:
    """Per-head [B, K_h] probabilities -> [B, C] class probabilities.

    Multiclass: the product of the heads, first head most significant (class = h0 * K1 * K2 + h1 * K2 + h2), so
    the most probable class is the heads' most probable outputs combined. Multilabel: the heads side by side.
    """
    if len(heads) == 1:
        return heads[0]
    if task != "multiclass":
        return np.concatenate(list(heads), axis=1)
    joint = heads[0]
    for head in heads[1:]:
        joint = (joint[:, :, None] * head[:, None, :]).reshape(len(joint), -1)
    return joint
