"""Decisions and every output format against hand-computed tables; atomic CSV writing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from submission import formats
from submission.errors import BundleError, OutputError
from submission.formats import Check, Context, Expectation, Format, ReadBack, build_table
from submission.manifest import (
    SCHEMA_VERSION,
    FileRef,
    Head,
    Manifest,
    ModelSpec,
    Output,
)
from submission.output import check_writable, write_csv
from tests.bundles import decision, preprocess

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
    model = ModelSpec("fold0", "timm", "test_resnet", None, {"num_classes": 3}, None, False,
                      FileRef("weights/f.safetensors", "0" * 64), 1.0, preprocess(32))
    columns = columns or (("id", "label") if fmt in ("label", "labels") else ("id", *CLASSES))
    return Manifest(
        schema_version=SCHEMA_VERSION, task=task, classes=CLASSES, heads=(Head("output", 3),), models=(model,),
        tta="none", merge="mean", decode="exact", decision=decision(thresholds, at_least_one, top_k),
        output=Output(fmt, "id", tuple(columns), label_as, 4), sample_submission=None, metadata=None, requirements=(),
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


class LabelConfidence(Format):
    """A format that no module knows: the predicted class and its probability (``id,label,confidence``)."""

    name = "label_confidence"
    tasks = ("multiclass",)
    summary = "`id,label,confidence`: `img_1,dog,0.71`"
    per_class_columns = False

    def header(self, id_column, classes):
        return (id_column, "label", "confidence")

    def check_manifest(self, manifest):
        return None if manifest.output.columns[1:] == ("label", "confidence") else "needs label and confidence columns"

    def fits(self, sample, context):
        return "label and confidence columns" if sample.value_columns == ("label", "confidence") else None

    def values(self, probs, manifest):
        return {"label": [manifest.classes[i] for i in probs.argmax(1)], "confidence": probs.max(1)}

    def check(self, values, exp):
        bad = [f"line {i + 2}" for i, v in enumerate(pd.to_numeric(values["confidence"], errors="coerce")) if not 0 <= v <= 1]
        return [Check("invalid values", not bad, f"confidence outside [0, 1]: {', '.join(bad)}" if bad else "")]

    def read_back(self, values, exp):
        return ReadBack(np.eye(len(exp.classes), dtype=int)[[exp.classes.index(v) for v in values["label"]]])


@pytest.fixture
def registered():
    saved = dict(formats.FORMATS)
    yield formats.register(LabelConfidence(), first=True)
    formats.FORMATS.clear()
    formats.FORMATS.update(saved)


def test_a_new_format_registers_without_touching_other_modules(registered, tmp_path):
    from builder.sample import read_sample
    from builder.validate.checks import check_table, passed, read_table
    from builder.validate.scoring import score

    (tmp_path / "sample.csv").write_text("id,label,confidence\na,cat,0.5\nb,cat,0.5\nc,cat,0.5\nd,cat,0.5\n")
    sample = read_sample(tmp_path / "sample.csv")
    assert formats.infer(sample, Context(task="multiclass")) == ("label_confidence", "label and confidence columns")
    m = make(fmt="label_confidence", columns=("id", "label", "confidence"))
    write_csv(build_table(IDS, PROBS, m), tmp_path / "s.csv", decimals=2)
    assert (tmp_path / "s.csv").read_text() == "id,label,confidence\na,dog,0.70\nb,cat,0.50\nc,fox,0.40\nd,cat,0.40\n"
    exp = Expectation(sample.columns, "id", sample.ids, "label_confidence", "multiclass", CLASSES)
    checks, table = read_table(tmp_path / "s.csv")
    assert passed(checks + check_table(table, exp))
    (tmp_path / "labels.csv").write_text("id,label\na,dog\nb,cat\nc,fox\nd,dog\n")
    assert score(table, exp, tmp_path / "labels.csv", "accuracy").value == 0.75


def test_multiclass_probability_rows_sum_to_one_as_printed(tmp_path):
    """120 classes at 6 decimals: rounding cell by cell misses a 1e-6 row sum on many rows; the writer never does."""
    from decimal import Decimal

    rng = np.random.default_rng(0)
    n, c = 1000, 120
    logits = rng.normal(size=(n, c)) * rng.uniform(0.1, 4, size=(n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    naive = np.round(probs, 6).sum(1)
    assert np.mean(np.abs(naive - 1) > 1e-6) > 0.2  # the problem is real
    names = tuple(f"breed_{i}" for i in range(c))
    m = replace(make(fmt="probs"), classes=names, heads=(Head("output", c),),
                output=Output("probs", "id", ("id", *names), "name", 6))
    write_csv(build_table([f"i{k}" for k in range(n)], probs, m), tmp_path / "s.csv", decimals=6)
    rows = (tmp_path / "s.csv").read_text().splitlines()[1:]
    assert all(sum(Decimal(v) for v in row.split(",")[1:]) == 1 for row in rows)
    written = pd.read_csv(tmp_path / "s.csv")[list(names)].to_numpy()
    assert np.abs(written - probs).max() <= 1e-6 + 1e-12  # each cell moved by less than one unit


def test_binary_writes_the_positive_class_column():
    with pytest.raises(BundleError, match="needs the positive class"):
        make(fmt="binary", columns=("id", "target"))
    m = replace(make(), output=Output("binary", "id", ("id", "target"), "name", 4),
                decision=decision(positive_class="fox"))
    assert rows(build_table(IDS, PROBS, m)) == [["a", 0.2], ["b", 0.3], ["c", 0.4], ["d", 0.2]]


def test_top_k_inserts_the_new_class_where_probability_falls_below_the_threshold():
    probs = np.array([[0.6, 0.25, 0.1, 0.05], [0.3, 0.3, 0.2, 0.2], [0.9, 0.05, 0.04, 0.01]])
    names = ("w_a", "w_b", "w_c", "w_d")
    m = replace(make(), classes=names, heads=(Head("output", 4),), output=Output("labels", "id", ("id", "Id"), "name", 4),
                decision=decision(top_k=3, new_class="new_whale", new_threshold=0.28))
    table = build_table(["x", "y", "z"], probs, m)
    assert list(table["Id"]) == ["w_a new_whale w_b", "w_a w_b new_whale", "w_a new_whale w_b"]
    inside = replace(m, classes=("w_a", "new_whale", "w_c", "w_d"))  # the sentinel is a class: its column is not ranked
    assert list(build_table(["x", "y", "z"], probs, inside)["Id"])[0] == "w_a new_whale w_c"


def test_class_names_with_spaces_cannot_go_in_a_space_separated_column():
    names = ("Common Chickweed", "Charlock", "Maize")
    with pytest.raises(BundleError, match=r"class names with spaces \('Common Chickweed'\) cannot be told apart"):
        replace(make(task="multilabel", fmt="labels", thresholds=(0.5,) * 3), classes=names)
    assert replace(make(fmt="label"), classes=names).classes == names  # one name per cell: fine


def test_grades_are_the_cutoffs_a_value_reaches():
    from submission.formats.value import grades

    assert grades(np.array([-1.0, 0.5, 0.49, 1.7, 3.5, 9.0]), (0.5, 1.5, 2.5, 3.5)).tolist() == [0, 1, 0, 2, 4, 4]
