"""The task and the format are never guessed silently: each is taken from the options, the sample, the folds' outputs
or what their training recorded, with the reason, or pack stops and asks. Each new format is packed from a sample
and run on the host against the naive computation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from builder.errors import ConfigError
from builder.metrics import quadratic_weighted_kappa
from builder.pack.bundle import PackRequest, make_bundle
from builder.pack.thresholds import tune_cutoffs
from submission.ensemble import percentile_ranks, rank_average
from submission.manifest import load_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.runs import save_bare, save_timm, timm_args, tiny_model


def pack(runs, out, **options):
    return make_bundle(PackRequest(models=runs, options=options), out)


def sample(path, header, ids, fill):
    path.write_text(",".join(header) + "\n" + "".join(",".join([i] + [fill] * (len(header) - 1)) + "\n" for i in ids))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("test")
    paths = make_images(folder, n=8)
    return folder, paths, [p.stem for p in paths]


def folds(root, num_classes, bce=None, n=2):
    for i in range(n):
        extra = {} if bce is None else {"bce_loss": bce}
        args = timm_args("test_resnet", num_classes, 40, **extra)
        if bce is None:
            del args.bce_loss
        save_timm(root / f"fold{i}", tiny_model(num_classes=num_classes, seed=i), args)
    return root


def run_csv(bundle, folder, tmp_path):
    run(folder, bundle, tmp_path / "s.csv", Options(workers=0, quiet=True))
    return pd.read_csv(tmp_path / "s.csv", dtype={0: str})


def test_a_one_hot_sample_with_bce_training_is_multilabel_and_says_why(tmp_path, images):
    _, _, ids = images
    runs = folds(tmp_path / "runs", 3, bce=True)
    bundle = pack(runs, tmp_path / "b", sample_submission=sample(tmp_path / "s.csv", ["index", "a", "b", "c"], ids, "0"))
    assert load_manifest(bundle.path).task == "multilabel"
    assert bundle.settings["task"].source.startswith("model_best.pth.tar args [bce_loss] is true: a sigmoid per class")


def test_a_one_hot_sample_and_nothing_else_is_an_error_that_asks_for_the_task(tmp_path, images):
    _, _, ids = images
    runs = folds(tmp_path / "runs", 3, bce=None)
    s = sample(tmp_path / "s.csv", ["index", "a", "b", "c"], ids, "0")
    with pytest.raises(ConfigError, match=r"s.csv has one 0/1 column per class, which fits a multiclass and a multilabel "
                                          r"task alike.*pass --task multiclass or --task multilabel"):
        pack(runs, tmp_path / "b", sample_submission=s)
    assert load_manifest(pack(runs, tmp_path / "b", sample_submission=s, task="multiclass").path).output.format == "onehot"


def test_out_of_fold_rows_tell_the_task(tmp_path, images):
    _, _, ids = images
    runs = folds(tmp_path / "runs", 3, bce=None)
    oof = tmp_path / "oof.csv"
    pd.DataFrame({"id": ["x", "y"], "a": [0.9, 0.8], "b": [0.7, 0.1], "c": [0.2, 0.4]}).to_csv(oof, index=False)
    pd.DataFrame({"id": ["x", "y"], "a": [1, 1], "b": [1, 0], "c": [0, 0]}).to_csv(tmp_path / "l.csv", index=False)
    bundle = pack(runs, tmp_path / "b", sample_submission=sample(tmp_path / "s.csv", ["index", "a", "b", "c"], ids, "0"),
                  oof=oof, oof_labels=tmp_path / "l.csv")
    assert bundle.settings["task"].value == "multilabel" and "its rows do not sum to 1" in bundle.settings["task"].source


def naive_probs(bundle, paths):
    return naive.probabilities(bundle, paths)


def test_one_sigmoid_output_writes_the_probability_with_any_placeholder(tmp_path, images):
    folder, paths, ids = images
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model(num_classes=1))
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="40",
                  sample_submission=sample(tmp_path / "s.csv", ["image_name", "target"], ids, "0"))
    m = load_manifest(bundle.path)
    assert (m.task, m.output.format) == ("multilabel", "binary")
    got = run_csv(bundle.path, folder, tmp_path)["target"].to_numpy()
    np.testing.assert_allclose(got, naive_probs(bundle.path, paths)[:, 0], atol=2e-6)


def test_a_two_class_softmax_with_a_decimal_sample_writes_the_second_class(tmp_path, images):
    folder, paths, ids = images
    runs = folds(tmp_path / "runs", 2, bce=False)
    bundle = pack(runs, tmp_path / "b", sample_submission=sample(tmp_path / "s.csv", ["id", "label"], ids, "0.5"),
                  classes="cat,dog")
    m = load_manifest(bundle.path)
    assert (m.output.format, m.decision.positive_class) == ("binary", "dog")
    assert bundle.settings["positive_class"].source == "the second of two classes, as 0/1 labels have it"
    got = run_csv(bundle.path, folder, tmp_path)["label"].to_numpy()
    np.testing.assert_allclose(got, naive_probs(bundle.path, paths)[:, 1], atol=2e-6)


def test_one_class_of_a_multiclass_softmax(tmp_path, images):
    """P(melanoma) of nine diagnoses, with TTA and a geometric merge."""
    folder, paths, ids = images
    runs = folds(tmp_path / "runs", 9, bce=False)
    names = "AK,BCC,BKL,DF,MEL,NV,SCC,VASC,UNK"
    bundle = pack(runs, tmp_path / "b", sample_submission=sample(tmp_path / "s.csv", ["image_name", "target"], ids, "0"),
                  classes=names, positive_class="MEL", tta="hflip", merge="gmean")
    assert load_manifest(bundle.path).output.format == "binary"
    got = run_csv(bundle.path, folder, tmp_path)["target"].to_numpy()
    np.testing.assert_allclose(got, naive_probs(bundle.path, paths)[:, 4], atol=2e-6)
    with pytest.raises(ConfigError, match="positive_class from --positive-class is 'melanoma', which is neither a class"):
        pack(runs, tmp_path / "b2", sample_submission=tmp_path / "s.csv", classes=names, positive_class="melanoma")


def test_a_regression_cut_into_grades(tmp_path, images):
    folder, paths, ids = images
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model(num_classes=1))
    save_bare(tmp_path / "runs" / "fold1.pth", tiny_model(num_classes=1, seed=1))
    s = sample(tmp_path / "s.csv", ["id_code", "diagnosis"], ids, "0")
    with pytest.raises(ConfigError, match="holds integer grades, and a regression writes numbers: pass --cutoffs"):
        pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="40", sample_submission=s, task="regression")
    (tmp_path / "cutoffs.json").write_text(json.dumps({"metric": "qwk", "cutoffs": [-5, -1, 1, 5]}))
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="40", sample_submission=s,
                  task="regression", cutoffs=str(tmp_path / "cutoffs.json"))
    m = load_manifest(bundle.path)
    assert (m.output.format, m.decision.cutoffs) == ("value", (-5.0, -1.0, 1.0, 5.0))
    got = run_csv(bundle.path, folder, tmp_path)["diagnosis"].to_numpy()
    values = naive_probs(bundle.path, paths)[:, 0]
    assert got.tolist() == [sum(v >= c for c in (-5, -1, 1, 5)) for v in values]


def test_top_k_names_with_a_new_class(tmp_path, images):
    folder, paths, ids = images
    runs = folds(tmp_path / "runs", 6, bce=None)
    names = [f"w_{i}" for i in range(6)]
    s = sample(tmp_path / "s.csv", ["Image", "Id"], ids, "new_whale w_1 w_2 w_3 w_4")
    with pytest.raises(ConfigError, match=r"every row names 5 classes \(a ranked top 5, or 5 labels\).*or --top-k 5"):
        pack(runs, tmp_path / "b", sample_submission=s, classes=",".join(names))
    hinted = pack(folds(tmp_path / "ce", 6, bce=False), tmp_path / "b", sample_submission=s, classes=",".join(names))
    assert (hinted.settings["task"].value, hinted.settings["top_k"].value) == ("multiclass", 5)
    bundle = pack(runs, tmp_path / "b", sample_submission=s, classes=",".join(names), top_k=5, new_class="new_whale",
                  new_threshold=0.3)
    m = load_manifest(bundle.path)
    assert (m.output.format, m.decision.top_k) == ("labels", 5)
    got = run_csv(bundle.path, folder, tmp_path)["Id"].str.split().tolist()
    for row, p in zip(got, naive_probs(bundle.path, paths)):
        order = [names[i] for i in np.argsort(-p, kind="stable")]
        below = sum(q >= 0.3 for q in sorted(p, reverse=True))
        assert row == (order[:below] + ["new_whale"] + order[below:])[:5]


def test_rank_merge_averages_percentile_ranks(tmp_path, images):
    folder, paths, ids = images
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model(num_classes=1))
    save_bare(tmp_path / "runs" / "fold1.pth", tiny_model(num_classes=1, seed=3))
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="40", merge="rank", fold_weights="1,3",
                  sample_submission=sample(tmp_path / "s.csv", ["image_name", "target"], ids, "0"))
    got = run_csv(bundle.path, folder, tmp_path)["target"].to_numpy()
    from scipy.stats import rankdata

    per_fold = [naive.probabilities(_single(bundle.path, tmp_path, i), paths)[:, 0] for i in range(2)]
    expected = (1 * rankdata(per_fold[0]) / 8 + 3 * rankdata(per_fold[1]) / 8) / 4
    np.testing.assert_allclose(got, expected, atol=2e-6)


def _single(bundle, tmp_path, index):
    """The bundle with one of its models alone (to compute that model's probabilities naively)."""
    import shutil
    from dataclasses import replace

    from submission.manifest import write_manifest

    copy = tmp_path / f"single{index}"
    shutil.copytree(bundle, copy)
    m = load_manifest(copy)
    write_manifest(copy, replace(m, models=(m.models[index],), merge="mean", deadline=None))
    return copy


def test_percentile_ranks_share_ties_and_the_average_is_weighted():
    from scipy.stats import rankdata

    x = np.array([[0.3, 1.0], [0.1, 1.0], [0.3, 0.2], [0.9, 0.5]])
    np.testing.assert_allclose(percentile_ranks(x), np.stack([rankdata(x[:, c]) / 4 for c in range(2)], axis=1))
    two = np.stack([x, x[::-1]])
    np.testing.assert_allclose(rank_average(two, np.array([1.0, 3.0])),
                               0.25 * percentile_ranks(x) + 0.75 * percentile_ranks(x[::-1]))


def test_cutoffs_tuned_for_kappa_never_lower_it_and_find_a_clean_split():
    rng = np.random.default_rng(0)
    grades = rng.integers(0, 5, 600)
    values = grades * 0.6 + 0.4 + rng.normal(0, 0.05, 600)  # grade g sits around 0.6 g + 0.4
    cutoffs = tune_cutoffs(values, grades)
    assert quadratic_weighted_kappa(grades, np.searchsorted(cutoffs, values, side="right")) == 1.0
    noisy = grades + rng.normal(0, 1.2, 600)
    start = quadratic_weighted_kappa(grades, np.searchsorted([0.5, 1.5, 2.5, 3.5], noisy, side="right"))
    tuned = tune_cutoffs(noisy, grades)
    assert quadratic_weighted_kappa(grades, np.searchsorted(tuned, noisy, side="right")) >= start
    assert list(tuned) == sorted(tuned)

