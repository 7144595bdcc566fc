"""Decisions and every output format against hand-computed tables; atomic CSV writing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from submission.errors import OutputError
from submission.formats import build_table, check_writable, write_csv
from submission.manifest import (
    SCHEMA_VERSION,
    Decision,
    FileRef,
    Manifest,
    ModelSpec,
    Output,
)
from tests.bundles import preprocess

CLASSES = ("cat", "dog", "fox")
IDS = ["a", "b", "c", "d"]
PROBS = np.array([
    [0.1, 0.7, 0.2],
    [0.5, 0.2, 0.3],
    [0.3, 0.3, 0.4],
    [0.4, 0.4, 0.2],  # a tie: the lower class index wins
])
ML_PROBS = np.array([
    [0.5, 0.59, 0.1],  # cat reaches 0.5 exactly; dog misses 0.6
    [0.9, 0.8, 0.3],
    [0.1, 0.1, 0.15],  # nothing passes
    [0.0, 0.6, 0.2],
])


def make(task="multiclass", fmt="label", columns=None, label_as="name", thresholds=(), at_least_one=False, top_k=1):
    model = ModelSpec("fold0", "test_resnet", 3, {}, FileRef("weights/f.safetensors", "0" * 64), 1.0, preprocess(32))
    columns = columns or (("id", "label") if fmt in ("label", "labels") else ("id", *CLASSES))
    return Manifest(
        schema_version=SCHEMA_VERSION, task=task, classes=CLASSES, models=(model,), tta="none", merge="mean",
        decision=Decision(tuple(thresholds), at_least_one, top_k),
        output=Output(fmt, "id", tuple(columns), label_as, 4), sample_submission=None,
    )


def rows(table):
    return [list(r) for r in table.itertuples(index=False)]


def test_label_names_and_indices():
    assert rows(build_table(IDS, PROBS, make())) == [["a", "dog"], ["b", "cat"], ["c", "fox"], ["d", "cat"]]
    assert rows(build_table(IDS, PROBS, make(label_as="index"))) == [["a", 1], ["b", 0], ["c", 2], ["d", 0]]


def test_column_names_come_from_the_manifest():
    m = replace(make(), output=Output("label", "ImageID", ("ImageID", "ans"), "name", 4))
    table = build_table(IDS, PROBS, m)
    assert list(table.columns) == ["ImageID", "ans"]


def test_multiclass_labels_top_k():
    m = make(fmt="labels", top_k=2)
    assert rows(build_table(IDS, PROBS, m)) == [["a", "dog fox"], ["b", "cat fox"], ["c", "fox cat"], ["d", "cat dog"]]
    m = replace(m, output=replace(m.output, label_as="index"))
    assert rows(build_table(IDS, PROBS, m))[0] == ["a", "1 2"]


def test_multiclass_onehot_in_sample_column_order():
    table = build_table(IDS, PROBS, make(fmt="onehot", columns=("id", "fox", "cat", "dog")))
    assert list(table.columns) == ["id", "fox", "cat", "dog"]
    assert rows(table) == [["a", 0, 0, 1], ["b", 0, 1, 0], ["c", 1, 0, 0], ["d", 0, 1, 0]]
    assert all(table[c].dtype == np.int64 for c in ("fox", "cat", "dog"))


def test_probs_follow_column_order():
    table = build_table(IDS, PROBS, make(fmt="probs", columns=("id", "dog", "fox", "cat")))
    assert rows(table)[0] == ["a", 0.7, 0.2, 0.1]


def test_multilabel_thresholds_are_inclusive_per_class():
    m = make(task="multilabel", fmt="onehot", thresholds=(0.5, 0.6, 0.2))
    assert rows(build_table(IDS, ML_PROBS, m)) == [["a", 1, 0, 0], ["b", 1, 1, 1], ["c", 0, 0, 0], ["d", 0, 1, 1]]


def test_multilabel_at_least_one_fills_empty_rows_only():
    m = make(task="multilabel", fmt="labels", thresholds=(0.5, 0.6, 0.2), at_least_one=True)
    assert rows(build_table(IDS, ML_PROBS, m)) == [["a", "cat"], ["b", "cat dog fox"], ["c", "fox"], ["d", "dog fox"]]
    m = replace(m, decision=replace(m.decision, at_least_one=False))
    assert rows(build_table(IDS, ML_PROBS, m))[2] == ["c", ""]


def test_csv_text_is_exact(tmp_path):
    out = tmp_path / "s.csv"
    write_csv(build_table(IDS[:2], PROBS[:2], make(fmt="probs")), out, decimals=4)
    assert out.read_bytes() == b"id,cat,dog,fox\na,0.1000,0.7000,0.2000\nb,0.5000,0.2000,0.3000\n"
    write_csv(build_table(["001", "x,y"], PROBS[:2], make()), out, decimals=4)
    assert out.read_bytes() == b'id,label\n001,dog\n"x,y",cat\n'  # ids kept as text, quoted where needed


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="for 3 ids and 3 classes"):
        build_table(IDS[:3], PROBS, make())


def test_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    out.write_text("previous\n")

    def crash(self, path, **kwargs):
        with open(path, "w") as f:
            f.write("id,label\na,half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(OutputError, match="cannot write the submission to .*No space left on device"):
        write_csv(build_table(IDS, PROBS, make()), out, decimals=4)
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_written_file_is_readable_by_others(tmp_path):
    out = tmp_path / "s.csv"
    write_csv(build_table(IDS, PROBS, make()), out, decimals=4)
    assert out.stat().st_mode & 0o777 == 0o644


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new" / "s.csv")
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write to .*file"):
        check_writable(tmp_path / "file" / "s.csv")
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path / "new")
