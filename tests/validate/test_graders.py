"""``builder validate --csv`` held against what real competitions' graders accept, on their sample layouts: it must
fail what a grader rejects and pass what a grader scores; and its scores equal scikit-learn's or the grader's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from builder import metrics
from builder.sample import read_sample
from builder.validate import expect
from builder.validate.checks import check_table, passed, read_table
from builder.validate.scoring import score

IDS = [f"im{i}" for i in range(6)]


def check(tmp_path, sample: str, csv: str, **options):
    """Check a CSV alone against a sample, as `builder validate --csv` does with these options."""
    (tmp_path / "sample.csv").write_text(sample)
    (tmp_path / "sub.csv").write_text(csv)
    s = read_sample(tmp_path / "sample.csv")
    checks, table = read_table(tmp_path / "sub.csv")
    found = expect.readings(s, expect.Told(**options))
    per_reading = [(reading, check_table(table, reading)) for reading in found]
    checks += expect.merge(per_reading)
    exp = expect.for_scoring(found, {i: c for i, (_, c) in enumerate(per_reading)}, None)
    errors = {c.name: c.detail for c in checks if not c.passed and c.level == "error"}
    warnings = {c.name: c.detail for c in checks if not c.passed and c.level == "warning"}
    undecided.clear()
    undecided.update({c.name: c.detail for c in checks if not c.passed and c.level == "undecided"})
    return passed(checks), errors, warnings, exp


undecided: dict[str, str] = {}  # the undecided checks of the last ``check``


def csv(header: str, cells: list[str]) -> str:
    return header + "\n" + "".join(f"{i},{c}\n" for i, c in zip(IDS, cells))


PROBS = ["0.12", "0.9", "0.5", "0.033", "1", "0"]


def test_binary_probability_files_pass_where_the_sample_holds_decimals(tmp_path):
    ok, errors, _, exp = check(tmp_path, csv("id,has_cactus", ["0.5"] * 6), csv("id,has_cactus", PROBS))
    assert ok and exp.format == "binary", errors


def test_an_integer_placeholder_leaves_a_probability_column_undecided_until_told(tmp_path):
    """Histopathologic's sample holds 0: the column may hold P(label 1), a class index or a grade."""
    sample = csv("id,label", ["0"] * 6)
    ok, errors, _, _ = check(tmp_path, sample, csv("id,label", PROBS))
    assert not ok and not errors and "--positive-class" in undecided["wrong type"]
    ok, errors, _, exp = check(tmp_path, sample, csv("id,label", PROBS), positive_class="1")
    assert ok and exp.format == "binary", errors
    ok, errors, _, _ = check(tmp_path, sample, csv("id,label", ["0.2", "1.2", "0.5", "0.5", "0.1", "0.3"]),
                             positive_class="1")
    assert not ok and "line 3 column 'label' = 1.2" in errors["invalid values"]


def test_a_probability_column_out_of_range_or_text_fails_where_the_sample_holds_decimals(tmp_path):
    sample = csv("id,label", ["0.5"] * 6)
    ok, errors, _, exp = check(tmp_path, sample, csv("id,label", ["0.2", "1.7", "0.5", "0.5", "0.1", "0.3"]))
    assert not ok and "line 3 column 'label' = 1.7" in errors["invalid values"] and exp.format == "binary"
    ok, errors, _, _ = check(tmp_path, sample, csv("id,label", ["cat", "dog", "dog", "cat", "cat", "dog"]))
    assert not ok and "probability cells must be numbers" in errors["wrong type"]


def test_a_constant_column_is_a_warning_naming_it(tmp_path):
    ok, errors, warnings, _ = check(tmp_path, csv("id,label", ["0.5"] * 6), csv("id,label", ["1.000000"] * 6))
    assert ok and warnings["constant column"] == "column 'label' holds '1.000000' in every row"


def test_an_integer_placeholder_never_passes_numbers_no_reading_allows(tmp_path):
    """APTOS's sample holds grades: 2.37 is an unrounded grade, a probability above one, and no class index."""
    sample = csv("id_code,diagnosis", ["0"] * 6)
    ok, errors, _, exp = check(tmp_path, sample, csv("id_code,diagnosis", ["0.2", "2.37", "4", "1", "0", "3"]))
    assert not ok and "grades must be integers" in errors["wrong type"] and "label cells must be class indices" in \
        errors["wrong type"]
    ok, errors, _, _ = check(tmp_path, sample, csv("id_code,diagnosis", ["0.2", "2.37", "4", "1", "0", "3"]),
                             task="regression")
    assert not ok and "grades must be integers: line 2: '0.2', line 3: '2.37'" in errors["wrong type"]
    grades = csv("id_code,diagnosis", ["0", "2", "4", "1", "0", "3"])
    assert not check(tmp_path, sample, grades)[0] and "--classes" in undecided["invalid values"]  # grades, or indices?
    assert check(tmp_path, sample, grades, task="regression")[0]
    names = ("No DR", "Mild", "Moderate", "Severe", "Proliferative DR")
    assert check(tmp_path, sample, grades, classes=names)[0]
    ok, errors, _, _ = check(tmp_path, sample, grades, classes=names[:4])
    assert not ok and "class indices outside 0..3: line 4: 4" in errors["invalid values"]


def test_120_class_rows_rounded_to_4_decimals_fail_the_row_sum(tmp_path):
    breeds = [f"b{i}" for i in range(120)]
    header = "id," + ",".join(breeds)
    sample = header + "\n" + "".join(f"{i}," + ",".join(["0.00833333333333"] * 120) + "\n" for i in IDS)
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(120), size=6)
    rounded = header + "\n" + "".join(f"{i}," + ",".join(f"{v:.4f}" for v in row) + "\n" for i, row in zip(IDS, p))
    ok, errors, _, exp = check(tmp_path, sample, rounded)
    assert exp.task == "multiclass" and not ok and "must sum to 1 (within 1e-05)" in errors["invalid values"]
    from submission.formats.decide import rounded_rows

    exact = rounded_rows(p, 6)
    good = header + "\n" + "".join(f"{i}," + ",".join(f"{v:.6f}" for v in row) + "\n" for i, row in zip(IDS, exact))
    assert check(tmp_path, sample, good)[0]


def test_a_multilabel_onehot_file_passes_without_task(tmp_path):
    letters = "abcdefghijklmnopqrstuvwxyz"
    header = "index," + ",".join(letters)
    sample = header + "\n" + "".join(f"{i}," + ",".join(["0"] * 26) + "\n" for i in IDS)
    rows = header + "\n" + "".join(f"{i}," + ",".join("1" if (j + k) % 7 == 0 else "0" for j in range(26)) + "\n"
                                   for k, i in enumerate(IDS))
    ok, errors, _, exp = check(tmp_path, sample, rows)
    assert not ok and not errors and "--task multilabel" in undecided["invalid values"]  # several 1s: multilabel only
    assert check(tmp_path, sample, rows, task="multilabel")[0]
    assert not check(tmp_path, sample, rows, task="multiclass")[0]  # with the task given, one 1 per row is required
    single = header + "\n" + "".join(f"{i}," + ",".join("1" if j == k else "0" for j in range(26)) + "\n"
                                     for k, i in enumerate(IDS))
    assert check(tmp_path, sample, single)[0]  # one 1 per row passes read either way


def test_an_empty_multilabel_cell_passes_and_top_k_cells_are_read_as_names(tmp_path):
    tags = "primary clear agriculture road water"
    sample = csv("image_name,tags", [tags] * 6)
    ok, errors, _, exp = check(tmp_path, sample, csv("image_name,tags", ["primary clear", "", "water", "road", "clear", ""]),
                               classes=tuple(tags.split()))
    assert ok, errors
    ok, errors, _, _ = check(tmp_path, sample, csv("image_name,tags", ["primary cloud"] * 6), classes=tuple(tags.split()))
    assert not ok and "unknown class names: line 2: 'cloud'" in errors["invalid values"]


def test_a_long_class_list_is_read_as_a_list_without_crashing(tmp_path):
    from typer.testing import CliRunner

    from builder.cli import app

    names = [f"w_{i:07d}" for i in range(40)]
    (tmp_path / "sample.csv").write_text(csv("Image,Id", [" ".join(names[:5])] * 6))
    (tmp_path / "sub.csv").write_text(csv("Image,Id", [" ".join(names[i:i + 5]) for i in range(6)]))
    result = CliRunner().invoke(app, ["validate", "--csv", str(tmp_path / "sub.csv"), "--sample-submission",
                                      str(tmp_path / "sample.csv"), "--classes", ",".join(names), "--top-k", "5"])
    assert result.exit_code == 0, result.output
    assert "inferred: format 'labels'" in result.output


def test_class_names_with_spaces_in_the_labels_are_scored(tmp_path):
    species = ("Common Chickweed", "Charlock", "Loose Silky-bent")
    sample = csv("file,species", ["Charlock"] * 6)
    answers = ["Common Chickweed", "Charlock", "Loose Silky-bent", "Charlock", "Common Chickweed", "Charlock"]
    ok, errors, _, exp = check(tmp_path, sample, csv("file,species", answers), classes=species)
    assert ok, errors
    (tmp_path / "labels.csv").write_text(csv("file,species", answers[:5] + ["Loose Silky-bent"]))
    table = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    assert score(table, exp, tmp_path / "labels.csv").value == pytest.approx(5 / 6)


def test_binary_auc_equals_scikit_learn(tmp_path):
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 200)
    p = np.clip(truth * 0.3 + rng.random(200) * 0.7, 0, 1).round(3)
    ids = [f"i{k}" for k in range(200)]
    (tmp_path / "sample.csv").write_text("image_name,target\n" + "".join(f"{i},0\n" for i in ids))
    (tmp_path / "sub.csv").write_text("image_name,target\n" + "".join(f"{i},{v}\n" for i, v in zip(ids, p)))
    (tmp_path / "labels.csv").write_text("image_name,target\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, truth)))
    s = read_sample(tmp_path / "sample.csv")
    _, table = read_table(tmp_path / "sub.csv")
    (exp,) = expect.readings(s, expect.Told(positive_class="1"))
    result = score(table, exp, tmp_path / "labels.csv")
    assert result.metric == "roc_auc" and result.value == pytest.approx(roc_auc_score(truth, p), abs=1e-12)


def test_quadratic_weighted_kappa_equals_scikit_learn():
    rng = np.random.default_rng(3)
    for _ in range(20):
        true, pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
        pred[:150] = true[:150]
        assert metrics.quadratic_weighted_kappa(true, pred) == pytest.approx(
            cohen_kappa_score(true, pred, weights="quadratic"), abs=1e-12)


def reference_map5(labels: list[str], predictions: list[list[str]]) -> float:
    """The whale competition's MAP@5, written as its kernels did."""
    total = 0.0
    for label, preds in zip(labels, predictions):
        try:
            total += 1 / (preds[:5].index(label) + 1)
        except ValueError:
            pass
    return total / len(labels)


def test_map_at_5_equals_the_reference_implementation():
    rng = np.random.default_rng(4)
    names = [f"w_{i}" for i in range(30)] + ["new_whale"]
    labels = list(rng.choice(names, 500))
    predictions = [list(rng.choice(names, int(rng.integers(0, 7)))) for _ in range(500)]
    assert metrics.mean_average_precision_at_k(labels, predictions, 5) == pytest.approx(reference_map5(labels, predictions))


def test_an_integer_label_column_with_its_classes_is_scored_as_class_indices(tmp_path):
    """Cassava: `image_id,label` with 4 in its one sample row; the classes make it a column of class indices."""
    diseases = ("CBB", "CBSD", "CGM", "CMD", "Healthy")
    sample = csv("image_id,label", ["4"] * 6)
    predicted = ["0", "3", "3", "4", "1", "3"]
    ok, errors, _, exp = check(tmp_path, sample, csv("image_id,label", predicted), classes=diseases)
    assert ok and (exp.format, exp.label_as) == ("label", "index"), errors
    truth = ["0", "3", "2", "4", "1", "1"]
    (tmp_path / "labels.csv").write_text(csv("image_id,label", truth))
    table = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    result = score(table, exp, tmp_path / "labels.csv")
    assert result.metric == "accuracy" and result.value == pytest.approx(4 / 6)
    from sklearn.metrics import f1_score

    assert result.scores["f1_macro"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_qwk_on_grades_declared_as_classes(tmp_path):
    """APTOS: `id_code,diagnosis` checked with the grade names as --classes still scores quadratic weighted kappa."""
    grades = ("No DR", "Mild", "Moderate", "Severe", "Proliferative DR")
    rng = np.random.default_rng(5)
    truth, predicted = rng.integers(0, 5, 60), rng.integers(0, 5, 60)
    predicted[:30] = truth[:30]
    ids = [f"e{i}" for i in range(60)]
    (tmp_path / "sample.csv").write_text("id_code,diagnosis\n" + "".join(f"{i},0\n" for i in ids))
    (tmp_path / "sub.csv").write_text("id_code,diagnosis\n" + "".join(f"{i},{p}\n" for i, p in zip(ids, predicted)))
    (tmp_path / "labels.csv").write_text("id_code,diagnosis\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, truth)))
    for told in (expect.Told(classes=grades), expect.Told(task="regression")):
        (exp,) = expect.readings(read_sample(tmp_path / "sample.csv"), told)
        table = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
        result = score(table, exp, tmp_path / "labels.csv", "qwk")
        assert result.value == pytest.approx(cohen_kappa_score(truth, predicted, weights="quadratic"), abs=1e-12)


def test_the_validate_help_lists_every_metric_and_speaks_in_sentences():
    from typer.testing import CliRunner

    from builder.cli import app

    result = CliRunner().invoke(app, ["validate", "--help"], terminal_width=400, env={"COLUMNS": "400"})
    text = " ".join(result.output.split())
    for name in ("qwk", "map@k", "roc_auc", "f2_samples", "rmse", "mae", "log_loss"):
        assert name in text, name
    assert "..." not in text


def test_every_pack_option_help_is_a_whole_sentence():
    from builder.pack.settings import SETTINGS

    for s in SETTINGS:
        assert s.help[0].isupper(), s.name
        assert s.help.rstrip().endswith((".", ")")), f"{s.name}: {s.help!r}"
        assert not s.help.rstrip().endswith(" ."), s.name
