"""One CSV per failure mode, each reported by the name platforms use, with the rows and columns at fault."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.validate.checks import check_table, passed, read_table
from submission.formats.base import Expectation

IDS = ("a", "b", "c")
PROBS = Expectation(("id", "cat", "dog"), "id", IDS, "probs", "multiclass", ("cat", "dog"))
ONEHOT = Expectation(("index", "x", "y", "z"), "index", IDS, "onehot", "multilabel", ("x", "y", "z"))
LABEL = Expectation(("ImageID", "ans"), "ImageID", IDS, "label", "multiclass", ("cat", "dog", "fox"))
INDEX = Expectation(("ImageID", "ans"), "ImageID", IDS, "label", "multiclass", ("cat", "dog", "fox"), "index")
LABELS = Expectation(("id", "tags"), "id", IDS, "labels", "multilabel", ("sky", "sea"))

GOOD = {
    "probs": (PROBS, "id,cat,dog\na,0.2,0.8\nb,0.5,0.5\nc,1,0\n"),
    "onehot": (ONEHOT, "index,x,y,z\na,0,1,1\nb,0,0,0\nc,1,0,0\n"),
    "label": (LABEL, "ImageID,ans\na,cat\nb,fox\nc,dog\n"),
    "index": (INDEX, "ImageID,ans\na,0\nb,2\nc,1\n"),
    "labels": (LABELS, "id,tags\na,sky sea\nb,sea\nc,sky\n"),
}


def checks_of(tmp_path, text: str | bytes, exp: Expectation, test_ids=None):
    path = tmp_path / "submission.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    checks, table = read_table(path)
    if table is not None:
        checks += check_table(table, exp, test_ids)
    return checks


def failures(checks):
    return {c.name: c.detail for c in checks if not c.passed}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_submissions_pass(tmp_path, name):
    exp, text = GOOD[name]
    checks = checks_of(tmp_path, text, exp)
    assert passed(checks) and not failures(checks), failures(checks)


CASES = [
    # (expectation, CSV text, failing check, words in its detail)
    (PROBS, None, "CSV not found", "does not exist"),
    (PROBS, "", "empty file", "is empty"),
    (PROBS, b"\xef\xbb\xbfid,cat,dog\na,0.2,0.8\nb,0.5,0.5\nc,1,0\n", "encoding", "byte order mark"),
    (PROBS, b"id,cat,dog\na,0.2,0.8\nb,0.5,0.5\n\xff,1,0\n", "encoding", "not UTF-8"),
    (PROBS, "id,cat,dog\na,0.2,0.8,9\nb,0.5,0.5\nc,1,0\n", "unparseable CSV", "the header has 3 fields, but line 2 has 4"),
    (PROBS, "id,dog,cat\na,0.8,0.2\nb,0.5,0.5\nc,0,1\n", "wrong columns", "same names in another order"),
    (PROBS, "ID,cat,dog\na,0.2,0.8\nb,0.5,0.5\nc,1,0\n", "wrong columns", "missing ['id']; unexpected ['ID']"),
    (PROBS, "id,cat,dog\na,0.2,0.8\nb,0.5,0.5\n", "wrong number of rows", "2 rows, expected 3"),
    (PROBS, "id,cat,dog\na,0.2,0.8\na,0.5,0.5\nc,1,0\n", "duplicate ids", "ids repeated: a"),
    (PROBS, "id,cat,dog\na,0.2,0.8\nq,0.5,0.5\nc,1,0\n", "wrong ids", "1 expected id(s) missing: b; 1 unexpected id(s): q"),
    (PROBS, "id,cat,dog\na,0.2,0.8\nb,,0.5\nc,1,NaN\n", "empty values", "line 3 column 'cat', line 4 column 'dog'"),
    (PROBS, "id,cat,dog\na,0.2,0.8\nb,half,0.5\nc,1,0\n", "wrong type", "line 3 column 'cat' = 'half'"),
    (PROBS, "id,cat,dog\na,0.2,0.8\nb,1.5,-0.5\nc,1,0\n", "invalid values", "outside [0, 1]: line 3 column 'cat' = 1.5"),
    (PROBS, "id,cat,dog\na,0.2,0.7\nb,0.5,0.5\nc,1,0\n", "invalid values", "line 2 sums to 0.900000"),
    (ONEHOT, "index,x,y,z\na,0,1.0,1\nb,0,0,0\nc,1,0,0\n", "wrong type", "line 2 column 'y' = '1.0'"),
    (ONEHOT, "index,x,y,z\na,0,1,2\nb,0,0,0\nc,1,0,0\n", "wrong type", "line 2 column 'z' = '2'"),
    (LABEL, "ImageID,ans\na,cat\nb,wolf\nc,dog\n", "invalid values", "unknown class names: line 3: 'wolf'"),
    (INDEX, "ImageID,ans\na,0\nb,cat\nc,1\n", "wrong type", "class indices (integers): line 3: 'cat'"),
    (INDEX, "ImageID,ans\na,0\nb,3\nc,1\n", "invalid values", "outside 0..2: line 3: 3"),
    (LABELS, "id,tags\na,sky sea\nb,sea fish\nc,sky\n", "invalid values", "line 3: 'fish'"),
]


@pytest.mark.parametrize("exp, text, name, words", CASES, ids=[f"{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_each_failure_is_named_with_its_place(tmp_path, exp, text, name, words):
    if text is None:
        checks, table = read_table(tmp_path / "missing.csv")
    else:
        checks = checks_of(tmp_path, text, exp)
    found = failures(checks)
    assert name in found, found
    assert words in found[name], found[name]
    assert not passed(checks)


def test_multiclass_onehot_needs_exactly_one(tmp_path):
    exp = Expectation(("id", "x", "y"), "id", IDS, "onehot", "multiclass", ("x", "y"))
    found = failures(checks_of(tmp_path, "id,x,y\na,1,0\nb,1,1\nc,0,0\n", exp))
    assert found["invalid values"] == "multiclass one-hot rows need exactly one 1: lines 3, 4"


def test_row_order_and_stale_sample_are_warnings(tmp_path):
    checks = checks_of(tmp_path, "id,cat,dog\nc,1,0\na,0.2,0.8\nb,0.5,0.5\n", PROBS, test_ids={"a", "b", "d"})
    assert passed(checks)
    warnings = {c.name: c.detail for c in checks if c.level == "warning" and not c.passed}
    assert "row order" in warnings
    assert warnings["stale sample"] == "1 sample id(s) have no test image: c; 1 test image(s) are not in the sample: d"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_random_bytes_give_checks_never_exceptions(tmp_path_factory, data):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    for exp in (PROBS, ONEHOT, LABEL, INDEX, LABELS):
        checks = checks_of(tmp_path, data, exp)
        assert all(c.name for c in checks)


def test_cli_checks_and_scores_a_csv_alone(tmp_path):
    from typer.testing import CliRunner

    from builder.cli import app

    (tmp_path / "sample.csv").write_text("id,cat,dog\na,0.5,0.5\nb,0.5,0.5\nc,0.5,0.5\n")
    (tmp_path / "labels.csv").write_text("id,label\na,dog\nb,cat\nc,cat\n")
    (tmp_path / "good.csv").write_text("id,cat,dog\na,0.2,0.8\nb,0.9,0.1\nc,0.4,0.6\n")
    (tmp_path / "bad.csv").write_text("id,dog,cat\na,0.8,0.2\nb,0.1,0.9\nc,0.6,0.4\n")
    common = ["validate", "--sample-submission", str(tmp_path / "sample.csv"), "--labels", str(tmp_path / "labels.csv")]
    good = CliRunner().invoke(app, [*common, "--csv", str(tmp_path / "good.csv"), "--metric", "accuracy",
                                    "--report", str(tmp_path / "r.json")])
    assert good.exit_code == 0, good.output
    assert "score: accuracy = 0.6667" in good.output and "passed" in good.output
    assert '"passed": true' in (tmp_path / "r.json").read_text()
    bad = CliRunner().invoke(app, [*common, "--csv", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 1 and "FAILED: wrong columns" in bad.output
