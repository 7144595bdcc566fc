"""``label``: one column holding the predicted class, by name or by index (``ImageID,ans`` / ``cat_001,7``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from submission.formats.base import (
    INTEGER,
    Check,
    Context,
    Expectation,
    Format,
    ReadBack,
    SampleLike,
    line,
    one_column,
    show,
)

if TYPE_CHECKING:
    from submission.manifest import Manifest


def tokens_of(column: pd.Series, several: bool) -> list[list[str]]:
    """The class tokens of each cell: the whole cell (a class name may hold spaces), or its space-separated names."""
    if several:
        return [cell.split() for cell in column]
    return [[cell.strip()] if cell.strip() else [] for cell in column]


def check_tokens(tokens: list[list[str]], exp: Expectation) -> list[Check]:
    """Label tokens must be class indices in range (``label_as`` index) or known class names."""
    if exp.label_as == "index":
        n = len(exp.classes) if exp.classes else None
        bad = [(r, t) for r, ts in enumerate(tokens) for t in ts if not INTEGER.fullmatch(t)]
        if bad:
            cells = [f"line {line(r)}: {t!r}" for r, t in bad]
            return [Check("wrong type", False, f"label cells must be class indices (integers): {show(cells)}")]
        out = [(r, t) for r, ts in enumerate(tokens) for t in ts if n is not None and not 0 <= int(t) < n]
        detail = f"class indices outside 0..{n - 1}: {show([f'line {line(r)}: {t}' for r, t in out])}" if out else ""
        return [Check("wrong type", True), Check("invalid values", not detail, detail)]
    if exp.classes is None:
        return [Check("invalid values", True, "class names unknown (pass --classes): cells not checked", level="warning")]
    known = set(exp.classes)
    unknown = [(r, t) for r, ts in enumerate(tokens) for t in ts if t not in known]
    detail = f"unknown class names: {show([f'line {line(r)}: {t!r}' for r, t in unknown])}" if unknown else ""
    return [Check("invalid values", not detail, detail)]


def class_matrix(tokens: list[list[str]], classes: tuple[str, ...], label_as: str) -> np.ndarray:
    """[N, C] 0/1: the classes each row's tokens name."""
    position = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(tokens), len(classes)), dtype=np.int64)
    for row, ts in enumerate(tokens):
        for t in ts:
            out[row, int(t) if label_as == "index" else position[t]] = 1
    return out


def label_cells(indices: list[list[int]], names: tuple[str, ...], by_name: bool) -> list[str]:
    return [" ".join(names[j] if by_name else str(j) for j in row) for row in indices]


class Label(Format):
    name = "label"
    tasks = ("multiclass",)
    summary = "`ImageID,ans`: `cat_001,7` (`--label-as index`) or `cat_001,dog` (`name`)"
    per_class_columns = False

    def fits(self, sample: SampleLike, context: Context) -> str | None:
        column = one_column(sample)
        if column is None or context.task not in (None, "multiclass"):
            return None
        return f"one prediction column {sample.value_columns[0]!r} holding one label per row"

    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
        best = probs.argmax(axis=1)
        by_name = manifest.output.label_as == "name"
        cells = [manifest.classes[i] for i in best] if by_name else best.astype(np.int64)
        return {manifest.output.columns[1]: cells}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        return check_tokens(tokens_of(values.iloc[:, 0], several=False), exp)

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        tokens = tokens_of(values.iloc[:, 0], several=False)
        return ReadBack(decisions=class_matrix(tokens, exp.classes or (), exp.label_as))


FORMAT = Label()
