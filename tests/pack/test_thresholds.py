"""Threshold tuning on a synthetic multilabel problem whose best thresholds are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from builder import metrics
from builder.cli import app
from builder.errors import ConfigError
from builder.pack.thresholds import read_oof, tune, tune_file

BEST = np.array([0.2, 0.35, 0.5, 0.65, 0.8])


def synthetic(n=2000, seed=0, overlap=0.0):
    """Class c: negatives' probabilities below BEST[c], positives' above (blurred by ``overlap``)."""
    rng = np.random.default_rng(seed)
    truth = rng.random((n, len(BEST))) < 0.4
    low, high = rng.uniform(0, BEST - 0.02, (n, len(BEST))), rng.uniform(BEST + 0.02, 1, (n, len(BEST)))
    probs = np.where(truth, high, low) + rng.normal(0, overlap, (n, len(BEST)))
    return np.clip(probs, 0, 1), truth.astype(int)


@pytest.mark.parametrize("average", ["macro", "micro", "samples"])
def test_separable_classes_get_their_known_threshold(average):
    probs, truth = synthetic()
    tuned = tune(probs, truth, beta=1.0, average=average)
    np.testing.assert_allclose(tuned, BEST, atol=0.02)
    best = metrics.fbeta(truth, probs >= BEST, 1.0, average)  # 1.0, less the rows without labels for "samples"
    assert metrics.fbeta(truth, probs >= tuned, 1.0, average) == pytest.approx(best)


@pytest.mark.parametrize("average", ["macro", "micro", "samples"])
@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_noisy_classes_never_score_below_the_start(average, beta):
    probs, truth = synthetic(overlap=0.15, seed=1)
    tuned = tune(probs, truth, beta=beta, average=average)
    before = metrics.fbeta(truth, probs >= 0.5, beta, average)
    after = metrics.fbeta(truth, probs >= tuned, beta, average)
    assert after >= before
    assert after > before + 0.01  # thresholds far from 0.5 leave room to gain


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_macro_reaches_the_brute_force_optimum_of_each_class(beta):
    """Macro F-beta separates by class, so each class's best is a plain search over a fine grid."""
    probs, truth = synthetic(overlap=0.15, seed=2)
    tuned = tune(probs, truth, beta=beta, average="macro")
    grid = np.linspace(0, 1, 1001)
    for c in range(len(BEST)):
        scores = [metrics.fbeta(truth[:, [c]], probs[:, [c]] >= t, beta, "macro") for t in grid]
        got = metrics.fbeta(truth[:, [c]], probs[:, [c]] >= tuned[c], beta, "macro")
        assert got >= max(scores) - 0.003, c


def write_files(tmp_path, probs, truth, names=("a", "b", "c", "d", "e")):
    ids = [f"id{i}" for i in range(len(probs))]
    pd.DataFrame(probs, columns=names).assign(id=ids)[["id", *names]].to_csv(tmp_path / "oof.csv", index=False)
    labels = [" ".join(n for n, t in zip(names, row) if t) for row in truth]
    pd.DataFrame({"id": ids[::-1], "tags": labels[::-1]}).to_csv(tmp_path / "labels.csv", index=False)  # any order
    return tmp_path / "oof.csv", tmp_path / "labels.csv"


def test_files_and_cli(tmp_path):
    probs, truth = synthetic(n=400, overlap=0.05)
    oof, labels = write_files(tmp_path, probs, truth)
    classes, p, t = read_oof(oof, labels)
    assert classes == ("a", "b", "c", "d", "e") and np.array_equal(t, truth)
    tuned = tune_file(oof, labels, "f2", "samples")
    assert tuned.metric == "f2_samples" and tuned.after >= tuned.before
    result = CliRunner().invoke(app, ["thresholds", "--oof", str(oof), "--labels", str(labels), "--out", str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "t.json").read_text())
    assert list(data["thresholds"]) == ["a", "b", "c", "d", "e"] and data["after"] >= data["before"]
    assert "f1_macro:" in result.output and "tuned" in result.output


def test_bad_inputs_are_named(tmp_path):
    probs, truth = synthetic(n=20)
    oof, labels = write_files(tmp_path, probs, truth)
    pd.read_csv(labels).iloc[:-1].to_csv(labels, index=False)
    with pytest.raises(ConfigError, match="1 id\\(s\\) of .*oof.csv have no label"):
        read_oof(oof, labels)
    with pytest.raises(ConfigError, match="is not an F-beta"):
        tune_file(oof, labels, "accuracy")
