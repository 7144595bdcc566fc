"""A submission CSV checked the way leaderboards check it, each failure named as platforms name it.

Pure functions on the file and the expectations (the sample's header and ids, the format, the classes); no
Docker. Every failure names the rows (as CSV line numbers, the header being line 1) and columns at fault.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

_INTEGER = re.compile(r"[+-]?\d+")
_SHOW = 5
SUM_TOLERANCE = 1e-3  # multiclass probability rows must sum to 1 within this


@dataclass(frozen=True)
class Check:
    name: str  # as platforms name it: "CSV not found", "wrong columns", "empty values", ...
    passed: bool
    detail: str = ""  # what is wrong, with the rows and columns at fault
    level: str = "error"  # "error" fails the submission; "warning" is reported and passes


@dataclass(frozen=True)
class Expectation:
    columns: tuple[str, ...]  # the header the platform expects, in order
    id_column: str
    ids: tuple[str, ...]  # the ids it expects (the sample's), in order
    format: str  # "label", "onehot", "probs" or "labels"
    task: str  # "multiclass" or "multilabel"
    classes: tuple[str, ...] | None  # class names, when known: label cells must be one of them
    label_as: str = "name"  # "name" or "index"


def _show(items: list) -> str:
    text = ", ".join(str(x) for x in items[:_SHOW])
    return text + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _lines(rows: np.ndarray) -> list[int]:
    return [int(r) + 2 for r in rows]  # data row 0 is line 2


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
        return checks + [Check("unparseable CSV", False, f"the header has {width} fields, but {_show(shown)}")], None
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, ValueError) as e:
        return checks + [Check("unparseable CSV", False, str(e).strip())], None
    return checks + [Check("unparseable CSV", True)], table


def _empty_cells(table: pd.DataFrame) -> Check:
    blank = table.apply(lambda col: col.str.strip().str.lower().isin(["", "nan", "none", "null", "na"]))
    if not blank.to_numpy().any():
        return Check("empty values", True)
    rows, cols = np.nonzero(blank.to_numpy())
    cells = [f"line {r + 2} column {table.columns[c]!r}" for r, c in zip(rows, cols)]
    return Check("empty values", False, f"{len(cells)} empty or NaN cell(s): {_show(cells)}")


def _value_checks(table: pd.DataFrame, exp: Expectation) -> list[Check]:
    value_columns = [c for c in exp.columns if c != exp.id_column and c in table.columns]
    values = table[value_columns]
    if exp.format == "onehot":
        bad = ~values.apply(lambda col: col.isin(["0", "1"])).to_numpy()
        rows, cols = np.nonzero(bad)
        if len(rows):
            cells = [f"line {r + 2} column {value_columns[c]!r} = {values.iat[r, c]!r}" for r, c in zip(rows, cols)]
            return [Check("wrong type", False, f"one-hot cells must be the integers 0 or 1: {_show(cells)}")]
        checks = [Check("wrong type", True)]
        if exp.task == "multiclass":
            counts = values.astype(int).sum(axis=1).to_numpy()
            wrong = np.flatnonzero(counts != 1)
            checks.append(Check("invalid values", not len(wrong),
                                f"multiclass one-hot rows need exactly one 1: lines {_show(_lines(wrong))}" if len(wrong) else ""))
        return checks
    if exp.format == "probs":
        numbers = values.apply(pd.to_numeric, errors="coerce")
        bad = numbers.isna().to_numpy() & ~values.apply(lambda col: col.str.strip() == "").to_numpy()
        rows, cols = np.nonzero(bad)
        if len(rows):
            cells = [f"line {r + 2} column {value_columns[c]!r} = {values.iat[r, c]!r}" for r, c in zip(rows, cols)]
            return [Check("wrong type", False, f"probability cells must be numbers: {_show(cells)}")]
        checks = [Check("wrong type", True)]
        array = numbers.to_numpy(dtype=float)
        rows, cols = np.nonzero((array < 0) | (array > 1))
        problems = [f"line {r + 2} column {value_columns[c]!r} = {array[r, c]:g}" for r, c in zip(rows, cols)]
        detail = f"probabilities outside [0, 1]: {_show(problems)}" if problems else ""
        if exp.task == "multiclass" and not problems:
            sums = np.nansum(array, axis=1)
            wrong = np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE)
            if len(wrong):
                shown = [f"line {r + 2} sums to {sums[r]:.6f}" for r in wrong]
                detail = f"multiclass probability rows must sum to 1 (within {SUM_TOLERANCE:g}): {_show(shown)}"
        return checks + [Check("invalid values", not detail, detail)]
    # "label" or "labels": one column of class names or indices
    column = values.iloc[:, 0] if value_columns else pd.Series([], dtype=str)
    tokens = column.str.split() if exp.format == "labels" else column.map(lambda v: [v.strip()] if v.strip() else [])
    if exp.label_as == "index":
        n = len(exp.classes) if exp.classes else None
        bad = [(r, t) for r, ts in enumerate(tokens) for t in ts if not _INTEGER.fullmatch(t)]
        if bad:
            cells = [f"line {r + 2}: {t!r}" for r, t in bad]
            return [Check("wrong type", False, f"label cells must be class indices (integers): {_show(cells)}")]
        out = [(r, t) for r, ts in enumerate(tokens) for t in ts if n is not None and not 0 <= int(t) < n]
        detail = f"class indices outside 0..{n - 1}: {_show([f'line {r + 2}: {t}' for r, t in out])}" if out else ""
        return [Check("wrong type", True), Check("invalid values", not detail, detail)]
    if exp.classes is None:
        return [Check("invalid values", True, "class names unknown: cells not checked", level="warning")]
    known = set(exp.classes)
    unknown = [(r, t) for r, ts in enumerate(tokens) for t in ts if t not in known]
    detail = f"unknown class names: {_show([f'line {r + 2}: {t!r}' for r, t in unknown])}" if unknown else ""
    return [Check("invalid values", not detail, detail)]


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
    checks.append(Check("duplicate ids", not duplicated, f"ids repeated: {_show(duplicated)}" if duplicated else ""))
    got, want = set(ids), set(exp.ids)
    missing, extra = [i for i in exp.ids if i not in got], [i for i in ids if i not in want]
    detail = "; ".join(p for p in (f"{len(missing)} expected id(s) missing: {_show(missing)}" if missing else "",
                                   f"{len(extra)} unexpected id(s): {_show(extra)}" if extra else "") if p)
    checks.append(Check("wrong ids", not detail, detail))
    if not detail and tuple(ids) != exp.ids:
        checks.append(Check("row order", False, "rows are not in the sample's order (most platforms join on the id)",
                            level="warning"))
    if test_ids is not None:
        absent, unlisted = sorted(want - test_ids), sorted(test_ids - want)
        stale = "; ".join(p for p in (f"{len(absent)} sample id(s) have no test image: {_show(absent)}" if absent else "",
                                      f"{len(unlisted)} test image(s) are not in the sample: {_show(unlisted)}" if unlisted else "") if p)
        checks.append(Check("stale sample", not stale, stale, level="warning"))
    checks.append(_empty_cells(table))
    return checks + _value_checks(table, exp)


def passed(checks: list[Check]) -> bool:
    return all(c.passed or c.level == "warning" for c in checks)
