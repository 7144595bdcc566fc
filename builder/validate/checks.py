"""A submission CSV checked the way leaderboards check it, each failure named as platforms name it.

Pure functions on the file and the expectations (the sample's header and ids, the format, the classes); no
Docker. The checks every format shares are here (file, encoding, header, ids, empty cells); the value cells are
checked by the format's own spec. Every failure names the rows (as CSV line numbers, the header being line 1)
and columns at fault.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from submission import formats
from submission.formats.base import Check, Expectation, line, show


def read_table(path: Path) -> tuple[list[Check], pd.DataFrame | None]:
    """The file as text cells, with the checks that come before any content check."""
    path = Path(path)
    if not path.is_file():
        return [Check("CSV not found", False, f"{path} does not exist: the run wrote no submission there")], None
    raw = path.read_bytes()
    checks = [Check("CSV not found", True)]
    if not raw.strip():
        return checks + [Check("empty file", False, f"{path} is empty")], None
    if raw.startswith(b"\xef\xbb\xbf"):
        checks.append(Check("encoding", False, "the file starts with a UTF-8 byte order mark (BOM); some parsers "
                                               "read it into the first column's name"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return checks + [Check("encoding", False, f"not UTF-8: byte {e.start} cannot be decoded")], None
    if not any(c.name == "encoding" for c in checks):
        checks.append(Check("encoding", True))
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        return checks + [Check("unparseable CSV", False, str(e))], None
    width = len(rows[0])
    ragged = [i + 1 for i, row in enumerate(rows) if row and len(row) != width]
    if ragged:
        shown = [f"line {n} has {len(rows[n - 1])}" for n in ragged]
        return checks + [Check("unparseable CSV", False, f"the header has {width} fields, but {show(shown)}")], None
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, ValueError) as e:
        return checks + [Check("unparseable CSV", False, str(e).strip())], None
    return checks + [Check("unparseable CSV", True)], table


def _empty_cells(table: pd.DataFrame, exp: Expectation) -> Check:
    """Empty or NaN cells, except where the format allows an empty answer (no class predicted)."""
    blank = table.apply(lambda col: col.str.strip().str.lower().isin(["", "nan", "none", "null", "na"])).to_numpy()
    if formats.get(exp.format).empty_cells_allowed(exp):
        blank = blank & np.array([c == exp.id_column for c in table.columns])[None, :]
    if not blank.any():
        return Check("empty values", True)
    rows, cols = np.nonzero(blank)
    cells = [f"line {line(r)} column {table.columns[c]!r}" for r, c in zip(rows, cols)]
    return Check("empty values", False, f"{len(cells)} empty or NaN cell(s): {show(cells)}")


def check_table(table: pd.DataFrame, exp: Expectation, test_ids: set[str] | None = None) -> list[Check]:
    """Every content check of a parsed submission against the expectation (and the test folder's ids)."""
    checks: list[Check] = []
    header = tuple(table.columns)
    if header == exp.columns:
        checks.append(Check("wrong columns", True))
    else:
        missing = [c for c in exp.columns if c not in header]
        extra = [c for c in header if c not in exp.columns]
        parts = [f"expected {list(exp.columns)}, got {list(header)}"]
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        if not missing and not extra:
            parts.append("same names in another order")
        checks.append(Check("wrong columns", False, "; ".join(parts)))
    checks.append(Check("wrong number of rows", len(table) == len(exp.ids),
                        "" if len(table) == len(exp.ids) else f"{len(table)} rows, expected {len(exp.ids)}"))
    if exp.id_column not in table.columns:
        return checks + [Check("id column", False, f"no column {exp.id_column!r}")]
    ids = table[exp.id_column]
    duplicated = ids[ids.duplicated()].unique().tolist()
    checks.append(Check("duplicate ids", not duplicated, f"ids repeated: {show(duplicated)}" if duplicated else ""))
    got, want = set(ids), set(exp.ids)
    missing, extra = [i for i in exp.ids if i not in got], [i for i in ids if i not in want]
    detail = "; ".join(p for p in (f"{len(missing)} expected id(s) missing: {show(missing)}" if missing else "",
                                   f"{len(extra)} unexpected id(s): {show(extra)}" if extra else "") if p)
    checks.append(Check("wrong ids", not detail, detail))
    if not detail and tuple(ids) != exp.ids:
        checks.append(Check("row order", False, "rows are not in the sample's order (most platforms join on the id)",
                            level="warning"))
    if test_ids is not None:
        absent, unlisted = sorted(want - test_ids), sorted(test_ids - want)
        parts = (f"{len(absent)} sample id(s) have no test image: {show(absent)}" if absent else "",
                 f"{len(unlisted)} test image(s) are not in the sample: {show(unlisted)}" if unlisted else "")
        stale = "; ".join(p for p in parts if p)
        checks.append(Check("stale sample", not stale, stale, level="warning"))
    checks.append(_empty_cells(table, exp))
    value_columns = [c for c in exp.columns if c != exp.id_column and c in table.columns]
    if not value_columns:
        return checks
    return checks + _constant_columns(table[value_columns]) + formats.get(exp.format).check(table[value_columns], exp)


def _constant_columns(values: pd.DataFrame) -> list[Check]:
    """A column holding one value in every row is a warning: a model that collapsed, or a format mistake."""
    if len(values) < 2 or values.shape[1] > 1 and len(values.columns) > 20:
        return []  # many class columns: a rare class is legitimately 0 everywhere
    same = [c for c in values.columns if values[c].nunique() == 1]
    detail = "; ".join(f"column {c!r} holds {values[c].iloc[0]!r} in every row" for c in same)
    return [Check("constant column", not same, detail, level="warning")]


def verdict(checks: list[Check]) -> str:
    """"failed" when a check failed; "undecided" when none failed but one could not be decided from what validate
    was told; else "passed"."""
    if any(not c.passed and c.level == "error" for c in checks):
        return "failed"
    if any(not c.passed and c.level == "undecided" for c in checks):
        return "undecided"
    return "passed"


def passed(checks: list[Check]) -> bool:
    return verdict(checks) == "passed"
