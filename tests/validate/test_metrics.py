"""Metrics against scikit-learn on random data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from builder import metrics

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 7
    true, pred = rng.integers(0, c, n), rng.integers(0, c, n)
    pred[:80] = true[:80]
    got = metrics.multiclass_scores(true, pred, c)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(true, pred))
    for average in ("macro", "micro", "weighted"):
        expected = sk.f1_score(true, pred, average=average, labels=range(c), zero_division=0)
        assert got[f"f1_{average}"] == pytest.approx(expected), average


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", "samples"])
def test_multilabel_fbeta_matches_sklearn(beta, average):
    true = RNG.integers(0, 2, (150, 6))
    pred = np.where(RNG.random((150, 6)) < 0.7, true, 1 - true)
    pred[:5] = 0  # rows with no predicted label
    true[5:8] = 0  # rows with no true label
    expected = sk.fbeta_score(true, pred, beta=beta, average=average, zero_division=0)
    assert metrics.fbeta(true, pred, beta, average) == pytest.approx(expected)


def test_log_loss_matches_sklearn():
    probs = RNG.dirichlet(np.ones(5), 100)
    true = RNG.integers(0, 5, 100)
    assert metrics.log_loss(true, probs, "multiclass") == pytest.approx(sk.log_loss(true, probs, labels=range(5)))
    ml_true, ml_probs = RNG.integers(0, 2, (100, 4)), RNG.random((100, 4))
    expected = np.mean([sk.log_loss(ml_true[:, j], ml_probs[:, j], labels=[0, 1]) for j in range(4)])
    assert metrics.log_loss(ml_true, ml_probs, "multilabel") == pytest.approx(expected)


def test_roc_auc_matches_sklearn_with_ties():
    true = RNG.integers(0, 2, (300, 5))
    scores = np.round(RNG.random((300, 5)) + 0.3 * true, 1)  # many ties
    for j in range(5):
        assert metrics.roc_auc(true[:, j], scores[:, j]) == pytest.approx(sk.roc_auc_score(true[:, j], scores[:, j]))
    assert metrics.macro_roc_auc(true, scores) == pytest.approx(sk.roc_auc_score(true, scores, average="macro"))
    multiclass = RNG.integers(0, 4, 300)
    probs = RNG.dirichlet(np.ones(4), 300)
    expected = sk.roc_auc_score(multiclass, probs, multi_class="ovr", average="macro")
    assert metrics.macro_roc_auc(metrics.one_hot(multiclass, 4), probs) == pytest.approx(expected)


def test_per_class_matches_sklearn():
    true, pred = RNG.integers(0, 2, (120, 3)), RNG.integers(0, 2, (120, 3))
    p, r, f, s = sk.precision_recall_fscore_support(true, pred, zero_division=0)
    rows = metrics.per_class(true, pred, ("a", "b", "c"))
    assert [row["class"] for row in rows] == ["a", "b", "c"]
    np.testing.assert_allclose([row["precision"] for row in rows], p)
    np.testing.assert_allclose([row["recall"] for row in rows], r)
    np.testing.assert_allclose([row["f1"] for row in rows], f)
    assert [row["support"] for row in rows] == list(s)


def test_confusion_matrix_matches_sklearn():
    true, pred = RNG.integers(0, 6, 300), RNG.integers(0, 6, 300)
    pred[:100] = true[:100]
    pred[pred == 5] = 4  # a class never predicted
    expected = sk.confusion_matrix(true, pred, labels=range(6))
    assert (metrics.confusion_matrix(true, pred, 6) == expected).all()


def test_f1_curve_matches_sklearn_at_every_threshold():
    true = RNG.integers(0, 2, 200)
    probs = np.clip(true * 0.3 + RNG.random(200) * 0.7, 0, 1)
    thresholds = np.linspace(0, 1, 41)
    got = metrics.f1_curve(true, probs, thresholds)
    expected = [sk.f1_score(true, probs >= t, zero_division=0) for t in thresholds]
    assert got == pytest.approx(expected)
