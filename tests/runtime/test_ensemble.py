"""Merge modes against a plain loop over models and views with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from submission.ensemble import merge

RNG = np.random.default_rng(0)


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def naive(logits, weights, mode, task):
    """One image and one class vector at a time."""
    m_count, v_count, b_count, _ = logits.shape
    act = softmax if task == "multiclass" else sigmoid
    out = []
    for b in range(b_count):
        total = 0.0
        for m in range(m_count):
            views = [logits[m, v, b] for v in range(v_count)]
            if mode == "mean":
                per_model = sum(act(z) for z in views) / v_count
            elif mode == "gmean":
                per_model = sum(np.log(act(z)) for z in views) / v_count
            else:
                per_model = sum(views) / v_count
            total = total + weights[m] * per_model
        total = total / sum(weights)
        if mode == "gmean":
            total = np.exp(total)
            if task == "multiclass":
                total = total / total.sum()
        elif mode == "logits":
            total = act(total)
        out.append(total)
    return np.stack(out)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("mode", ["mean", "gmean", "logits"])
def test_merge_matches_a_naive_loop(task, mode):
    logits = RNG.normal(0, 3, size=(3, 4, 5, 6))
    weights = np.array([1.0, 2.0, 0.5])
    got = merge(logits, weights, mode, task)
    np.testing.assert_allclose(got, naive(logits, weights, mode, task), rtol=1e-12, atol=1e-12)
    if task == "multiclass":
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)
    assert ((got > 0) & (got < 1)).all()


def test_single_model_single_view_is_the_activation():
    z = torch.tensor([[[[0.0, 1.0, 2.0]]]], dtype=torch.float64)
    for mode in ("mean", "gmean", "logits"):
        np.testing.assert_allclose(merge(z.numpy(), np.ones(1), mode, "multiclass"), z[0, 0].softmax(-1).numpy(),
                                   rtol=1e-15, atol=1e-15)
        np.testing.assert_allclose(merge(z.numpy(), np.ones(1), mode, "multilabel"), z[0, 0].sigmoid().numpy(),
                                   rtol=1e-15, atol=1e-15)


def test_extreme_logits_stay_finite():
    z = np.array([[[[1000.0, -1000.0]]], [[[-1000.0, 1000.0]]]])
    for task in ("multiclass", "multilabel"):
        for mode in ("mean", "gmean", "logits"):
            assert np.isfinite(merge(z, np.ones(2), mode, task)).all()
