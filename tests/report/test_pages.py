"""The report pages from validate reports and packs, against independent computations (scikit-learn's confusion
matrix and F1), and what makes a page self-contained: no script, nothing fetched, under 1 MB for 120 classes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from builder.pack.bundle import PackRequest, make_bundle
from builder.pipeline import PackResult
from builder.report.pack_page import pack_page
from builder.report.validate_page import validate_page
from builder.validate.expect import Told
from builder.validate.report import ValidateRequest, validate
from builder.validate.run import RunReport, time_split
from builder.validate.scoring import THRESHOLDS
from submission.runner import timing_line
from tests.runs import mixed_runs

RNG = np.random.default_rng(7)


def multiclass_files(folder, n_classes=8, rows=300, right=0.7):
    """A competitor's label CSV, its sample and the labels; class names with spaces, as real ones have."""
    names = [f"leaf {i} blight" for i in range(n_classes)]
    ids = [f"{RNG.integers(1e9):x}.jpg" for _ in range(rows)]
    true = RNG.integers(0, n_classes, rows)
    pred = np.where(RNG.random(rows) < right, true, RNG.integers(0, n_classes, rows))
    pd.DataFrame({"image_id": ids, "label": names[0]}).to_csv(folder / "sample_submission.csv", index=False)
    pd.DataFrame({"image_id": ids, "label": [names[i] for i in pred]}).to_csv(folder / "submission.csv", index=False)
    pd.DataFrame({"image_id": ids, "label": [names[i] for i in true]}).to_csv(folder / "train_labels.csv", index=False)
    return names, true, pred


def run_validate(folder, names, **told):
    return validate(ValidateRequest(csv=folder / "submission.csv", sample=folder / "sample_submission.csv",
                                    labels=folder / "train_labels.csv", told=Told(classes=tuple(names), **told)))


def self_contained(page: str) -> None:
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    # the SVG and XLink namespaces are names, never fetched
    urls = set(re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page))
    assert all(u.startswith(("data:", "#")) for u in urls), urls  # inline data, or a part of the page itself
    assert not re.search(r"url\((?!#|data:)", page)


def test_a_multiclass_page_holds_the_verdict_the_checks_and_sklearns_confusion_matrix(tmp_path):
    names, true, pred = multiclass_files(tmp_path)
    report = run_validate(tmp_path, names)
    assert report.verdict == "passed"
    expected = sk.confusion_matrix(true, pred, labels=range(len(names)))
    assert (np.array(report.score.confusion) == expected).all()
    page = validate_page(report).html()
    self_contained(page)
    assert '<span id="verdict" class="verdict passed">passed</span>' in page
    assert "<svg" in page and "leaf 3 blight" in page  # the matrix is drawn, with its class names as text
    off = expected.copy()
    np.fill_diagonal(off, 0)
    t, p = np.unravel_index(np.argmax(off), off.shape)
    first_pair = re.search(r"<th>share of the true class</th></tr></thead><tbody><tr><td>(.*?)</td><td>(.*?)</td>"
                           r"<td class=\"num\">(\d+)</td>", page)
    assert first_pair.groups() == (names[t], names[p], str(off[t, p]))


def test_failures_come_first_and_the_verdict_says_failed(tmp_path):
    names, _, _ = multiclass_files(tmp_path, rows=40)
    table = pd.read_csv(tmp_path / "submission.csv")
    table.loc[3, "label"] = "not a class"
    table.to_csv(tmp_path / "submission.csv", index=False)
    report = run_validate(tmp_path, names)
    assert report.verdict == "failed"
    page = validate_page(report).html()
    assert 'class="verdict failed">failed<' in page
    results = re.findall(r'<span class="tag (\w+)">', page)
    assert results[0] == "fail" and "fail" not in results[results.index("pass"):]
    assert "not a class" in page


def test_multilabel_curves_are_sklearns_f1_at_each_threshold(tmp_path):
    names = ["a b", "c", "d"]
    ids = [f"id{i}" for i in range(120)]
    true = RNG.integers(0, 2, (120, 3))
    probs = np.clip(true * 0.35 + RNG.random((120, 3)) * 0.65, 0, 1).round(4)
    pd.DataFrame({"Id": ids, **dict.fromkeys(names, 0.0)}).to_csv(tmp_path / "sample_submission.csv", index=False)
    pd.DataFrame({"Id": ids, **{n: probs[:, i] for i, n in enumerate(names)}}).to_csv(tmp_path / "submission.csv",
                                                                                     index=False)
    pd.DataFrame({"Id": ids, **{n: true[:, i] for i, n in enumerate(names)}}).to_csv(tmp_path / "train_labels.csv",
                                                                                    index=False)
    report = run_validate(tmp_path, names, task="multilabel", format="probs")
    assert report.verdict == "passed", report.checks
    for i, curve in enumerate(report.score.curves):
        expected = [sk.f1_score(true[:, i], probs[:, i] >= t, zero_division=0) for t in THRESHOLDS]
        assert curve["f1"] == pytest.approx(expected, abs=1e-4)
        assert curve["best_f1"] == pytest.approx(max(expected))
    page = validate_page(report).html()
    self_contained(page)
    assert "Thresholds" in page and "0.5 (no per-class thresholds)" in page


def test_oof_curves_mark_the_images_thresholds_on_sklearns_f1(tmp_path):
    """A Planet-style multilabel run: tags as space-separated names, thresholds tuned on the out-of-fold predictions
    and packed; validate --oof draws those thresholds on the F1 curves of the predictions they were tuned on."""
    names = ["cloud", "haze", "road"]
    ids = [f"train_{i}" for i in range(90)]
    true = RNG.integers(0, 2, (90, 3))
    probs = np.clip(true * 0.4 + RNG.random((90, 3)) * 0.6, 0, 1).round(4)
    tags = [" ".join(n for n, on in zip(names, r) if on) for r in true]
    pd.DataFrame({"image_name": ids, "tags": "cloud"}).to_csv(tmp_path / "sample_submission.csv", index=False)
    pd.DataFrame({"image_name": ids, "tags": tags}).to_csv(tmp_path / "submission.csv", index=False)
    pd.DataFrame({"image_name": ids, "tags": tags}).to_csv(tmp_path / "train_v2.csv", index=False)
    pd.DataFrame({"image_name": ids[::-1], **{n: probs[::-1, i] for i, n in enumerate(names)}}).to_csv(
        tmp_path / "oof.csv", index=False)
    report = validate(ValidateRequest(csv=tmp_path / "submission.csv", sample=tmp_path / "sample_submission.csv",
                                      labels=tmp_path / "train_v2.csv", oof=tmp_path / "oof.csv",
                                      told=Told(classes=tuple(names), task="multilabel")))
    assert report.score.curves is None  # the CSV holds decisions only
    for i, curve in enumerate(report.oof_curves):
        expected = [sk.f1_score(true[:, i], probs[:, i] >= t, zero_division=0) for t in THRESHOLDS]
        assert curve["f1"] == pytest.approx(expected, abs=1e-4)
        assert curve["f1_at_threshold"] == pytest.approx(sk.f1_score(true[:, i], probs[:, i] >= 0.5))
    page = validate_page(report).html()
    assert 'id="oof"' in page and "the out-of-fold probabilities (--oof)" in page


def test_120_classes_give_the_most_confused_pairs_in_under_a_megabyte(tmp_path):
    names, _, _ = multiclass_files(tmp_path, n_classes=120, rows=3000, right=0.5)
    report = run_validate(tmp_path, names)
    page = validate_page(report).html()
    self_contained(page)
    assert len(page.encode()) < 1_000_000
    assert "the 20 most confused pairs of 120 classes" in page


def test_the_time_split_is_read_back_from_the_runtimes_line():
    line = timing_line({"startup": 9.0, "decode": 1.25, "forward": 6.5, "merge": 0.01, "write": 0.2})
    run = RunReport(exit_code=0, seconds=12.0, timed_out=False, peak_memory_bytes=None,
                    log_tail=f"some line\nwrote /output/submission.csv (10 rows, 4 columns) in 8.0s\n{line}\n",
                    network_attempted=False)
    split = time_split(run)
    assert split == pytest.approx({"startup": 12.0 - 7.96, "decode": 1.25, "forward": 6.5, "merge": 0.01,
                                   "write": 0.2})
    assert time_split(RunReport(0, 3.0, False, None, "wrote x\n", False)) is None


def test_a_pack_page_lists_every_fold_its_checks_and_where_each_setting_came_from(tmp_path):
    mixed_runs(tmp_path / "runs", img_size=48)
    bundle = make_bundle(PackRequest(models=tmp_path / "runs", options={"classes": "a b,c,d", "tta": "hflip"}),
                         tmp_path / "bundle")
    page = pack_page(PackResult(bundle)).html()
    self_contained(page)
    for fold in bundle.folds:
        assert f"<h3>{fold.name}</h3>" in page
    assert "loads strictly into test_resnet" in page
    assert re.search(r"<td>tta</td><td class=\"detail\">hflip</td><td>--tta</td>", page), page
