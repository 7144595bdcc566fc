"""``builder plan`` against an exhaustive search done independently: every subset of the folds with every TTA
preset inside the bundle's, each scored from the naive loop's probabilities (the bundle's manifest cut down to that
plan) with scikit-learn's accuracy, timed from the planner's own per-image measurements; the planner must score
every plan as the naive loop does and choose the best that fits. Then the plan it writes packs."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, replace
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

from builder.cli import app
from builder.errors import ConfigError
from builder.plan import make_plan, search
from builder.plan.measure import measure
from submission.manifest import TTA_PRESETS, load_manifest, write_manifest
from tests import naive
from tests.bundles import make_images
from tests.pack.test_code import pack
from tests.runs import save_bare, tiny_model

FOLDS = 3


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    for k in range(FOLDS):
        save_bare(root / "runs" / f"fold{k}.pth", tiny_model(num_classes=3, seed=k))
    bundle = pack(root / "runs", root / "bundle", arch="test_resnet", img_size="32", tta="flips",
                  classes="cat,dog,fox", fold_weights="1,2,1").path
    paths = make_images(root / "val", n=18)
    labels = np.random.default_rng(5).integers(0, 3, len(paths))
    pd.DataFrame({"id": [p.stem for p in paths], "label": np.array(["cat", "dog", "fox"])[labels]}).to_csv(
        root / "labels.csv", index=False)
    return root, bundle, paths, labels


def naive_accuracy(root, bundle, paths, labels, models, tta) -> float:
    """The naive loop on the bundle cut down to ``models`` x ``tta``."""
    cut = root / f"cut-{'-'.join(map(str, models))}-{tta}"
    if not cut.exists():
        shutil.copytree(bundle, cut)
        m = load_manifest(bundle)
        write_manifest(cut, replace(m, models=tuple(m.models[i] for i in models), tta=tta, deadline=None))
    return accuracy_score(labels, naive.probabilities(cut, paths).argmax(1))


def test_the_planner_scores_every_plan_as_the_naive_loop_and_picks_the_best_that_fits(held_out):
    root, bundle, paths, labels = held_out
    measured = measure(bundle, root / "val", batch_size=8)
    assert measured.ids == [p.stem for p in paths]
    metric, score_of = search.scorer(measured, root / "labels.csv", None)
    rows = 5000
    found = search.candidates(measured, score_of, rows)
    presets = [t for t, views in TTA_PRESETS.items() if set(views) <= set(TTA_PRESETS["flips"])]
    assert len(found) == (2 ** FOLDS - 1) * len(presets)

    expected = {}
    for size in range(1, FOLDS + 1):
        for models in combinations(range(FOLDS), size):
            for tta in presets:
                views = [TTA_PRESETS["flips"].index(v) for v in TTA_PRESETS[tta]]
                seconds = measured.start_seconds + rows * (measured.decode_seconds
                                                           + sum(measured.seconds[i, v] for i in models for v in views))
                expected[models, tta] = (naive_accuracy(root, bundle, paths, labels, models, tta), seconds)
    for c in found:
        score, seconds = expected[c.models, c.tta]
        assert c.score == pytest.approx(score, abs=1e-12) and c.seconds == pytest.approx(seconds, rel=1e-9)

    budget = float(np.median([s for _, s in expected.values()]))
    fitting = {k: v for k, v in expected.items() if v[1] <= budget}
    best = max(score for score, _ in fitting.values())
    chosen = search.best_fitting(found, budget, higher_is_better=True)[0]
    assert chosen.seconds <= budget and chosen.score == pytest.approx(best, abs=1e-12)
    assert len(search.best_fitting(found, budget, True)) == len(fitting)


def test_the_plan_it_writes_packs(held_out, tmp_path):
    root, bundle, _, _ = held_out
    result = CliRunner().invoke(app, ["plan", str(bundle), "--data", str(root / "val"), "--labels",
                                      str(root / "labels.csv"), "--time-limit", "2h", "--expected-rows", "1000",
                                      "--out", str(tmp_path / "plan.yaml"), "--html", str(tmp_path / "plan.html")])
    assert result.exit_code == 0, result.output
    assert "as packed: 3 model(s) x TTA 'flips'" in result.output and "left of the limit" in result.output
    plan = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    page = (tmp_path / "plan.html").read_text()
    assert 'class="verdict passed">a plan fits<' in page and "<svg" in page and "<script" not in page
    first = re.search(r"<th>left of the limit</th></tr></thead><tbody><tr><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert first.groups() == (", ".join(plan["fold_weights"]), plan["tta"])  # the best plan heads the table
    assert plan["deadline"] == 7200 - 360 and set(plan) <= {"tta", "fold_weights", "drop_order", "deadline", "leave_out"}
    packed = load_manifest(pack(root / "runs", tmp_path / "b", config=tmp_path / "plan.yaml", arch="test_resnet",
                                img_size="32", classes="cat,dog,fox").path)
    kept = [m.name for m in packed.models]
    assert kept == list(plan["fold_weights"]) and packed.tta == plan["tta"]
    assert [m.weight for m in packed.models] == list(plan["fold_weights"].values())
    assert packed.deadline.seconds == plan["deadline"]
    assert list(packed.deadline.drop_order) == plan.get("drop_order", list(packed.drop_order()))
    assert json.dumps(asdict(packed.deadline))  # written in full


def test_no_plan_fits_is_an_error_naming_the_cheapest(held_out):
    root, bundle, _, _ = held_out
    with pytest.raises(ConfigError, match=r"no plan fits 0 s .* the cheapest, \['fold\d'\] with TTA 'none', is "
                                          r"projected at"):
        make_plan(bundle, root / "val", root / "labels.csv", limit=0.5, rows=10 ** 6)
