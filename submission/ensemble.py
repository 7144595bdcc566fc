"""Merge the logits of every model and TTA view into one probability per image and class."""

from __future__ import annotations

import torch


def activate(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax over classes (multiclass) or an independent sigmoid per class (multilabel)."""
    return logits.softmax(-1) if task == "multiclass" else logits.sigmoid()


def log_activate(logits: torch.Tensor, task: str) -> torch.Tensor:
    return logits.log_softmax(-1) if task == "multiclass" else torch.nn.functional.logsigmoid(logits)


def merge(logits: torch.Tensor, weights: torch.Tensor, mode: str, task: str) -> torch.Tensor:
    """[M models, V views, B images, C classes] logits -> [B, C] probabilities.

    Views count equally within a model; models count by ``weights`` (normalised to sum to 1).
    - ``mean``: weighted arithmetic mean of probabilities;
    - ``gmean``: weighted geometric mean of probabilities (renormalised over classes for multiclass);
    - ``logits``: weighted mean of logits, then the activation.
    """
    w = (weights / weights.sum()).to(logits.dtype).view(-1, 1, 1)
    if mode == "logits":
        return activate((logits.mean(1) * w).sum(0), task)
    if mode == "mean":
        return (activate(logits, task).mean(1) * w).sum(0)
    if mode == "gmean":
        log_p = (log_activate(logits, task).mean(1) * w).sum(0)
        return log_p.softmax(-1) if task == "multiclass" else log_p.exp()
    raise ValueError(f"unknown merge mode {mode!r}")
