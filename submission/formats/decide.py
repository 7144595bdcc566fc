"""Probabilities -> decisions, shared by the format specs: top-k classes, per-class thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from submission.manifest import Manifest


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """[N, C] -> [N, k] class indices, most probable first; ties go to the lower index."""
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


def multilabel_mask(probs: np.ndarray, thresholds: Sequence[float], at_least_one: bool) -> np.ndarray:
    """[N, C] -> [N, C] booleans: p >= threshold of its class; optionally the argmax where nothing passes."""
    mask = probs >= np.asarray(thresholds, dtype=probs.dtype)
    if at_least_one:
        empty = ~mask.any(axis=1)
        mask[empty, probs[empty].argmax(axis=1)] = True
    return mask


def decision_mask(probs: np.ndarray, manifest: Manifest) -> np.ndarray:
    """[N, C] booleans: the argmax for multiclass, the thresholded classes for multilabel."""
    if manifest.task == "multiclass":
        mask = np.zeros(probs.shape, dtype=bool)
        mask[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return mask
    d = manifest.decision
    return multilabel_mask(probs, d.thresholds, d.at_least_one)


def predicted_classes(probs: np.ndarray, manifest: Manifest) -> list[list[int]]:
    """For each row, the predicted class indices: top-k for multiclass, thresholded classes for multilabel."""
    if manifest.task == "multiclass":
        return top_k(probs, manifest.decision.top_k).tolist()
    return [np.flatnonzero(row).tolist() for row in decision_mask(probs, manifest)]
