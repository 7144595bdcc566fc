"""``label``: one column holding the predicted class, by name or by index (``ImageID,ans`` / ``cat_001,7``).

A cell holds one label: a class name is matched whole, so names with spaces (Plant Seedlings' ``Common Chickweed``)
are one label. An integer column may hold class indices (Cassava's ``image_id,label``): with the classes known, they
are checked against them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from submission.formats.base import (
    INTEGER,
    Check,
    Context,
    Expectation,
    Format,
    ManifestLike,
    ReadBack,
    SampleLike,
    SampleTask,
    line,
    numeric,
    one_column,
    show,
    tokens,
)


def tokens_of(column: pd.Series, several: bool, classes: tuple[str, ...] | None = None) -> list[list[str]]:
    """The class tokens of each cell: the whole cell (one label), or its space-separated names where a cell may hold
    several (a cell that is a known class name stays whole)."""
    return [tokens(cell, classes, several) for cell in column]


def infer_label_as(sample: SampleLike, classes: tuple[str, ...] | None, several: bool) -> tuple[str, str]:
    """Whether label cells are class names or indices, judged from the sample's own cells."""
    cells = {t for cell in sample.values.iloc[:, 0] for t in tokens(cell, classes, several)}
    if not cells:
        return "name", "the sample's label column is empty"
    if classes is not None and cells <= set(classes):
        return "name", "the sample's label cells are class names"
    if all(INTEGER.fullmatch(c) for c in cells):
        return "index", "the sample's label cells are integers"
    return "name", "the sample's label cells are text"


def check_tokens(tokens: list[list[str]], exp: Expectation) -> list[Check]:
    """Label tokens must be class indices in range (``label_as`` index) or known class names; without the classes
    that cannot be decided."""
    if exp.label_as == "index":
        bad = [(r, t) for r, ts in enumerate(tokens) for t in ts if not INTEGER.fullmatch(t)]
        if bad:
            cells = [f"line {line(r)}: {t!r}" for r, t in bad]
            return [Check("wrong type", False, f"label cells must be class indices (integers): {show(cells)}")]
        if exp.classes is None:
            return [Check("wrong type", True), Check("invalid values", False, "class indices cannot be checked "
                                                     "against the classes: pass --classes", level="undecided")]
        n = len(exp.classes)
        out = [(r, t) for r, ts in enumerate(tokens) for t in ts if not 0 <= int(t) < n]
        detail = f"class indices outside 0..{n - 1}: {show([f'line {line(r)}: {t}' for r, t in out])}" if out else ""
        return [Check("wrong type", True), Check("invalid values", not detail, detail)]
    if exp.classes is None:
        return [Check("invalid values", False, "class names unknown: pass --classes to check the cells",
                      level="undecided")]
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

    def default_for(self, task: str, outputs: int, top_k: int) -> bool:
        return task == "multiclass" and top_k == 1

    def sample_task(self, sample: SampleLike, classes: tuple[str, ...] | None) -> SampleTask | None:
        column = one_column(sample)
        if column is None or any(len(ts) > 1 for ts in tokens_of(column, True, classes)):
            return None
        return SampleTask("multiclass", "one label per row")

    def readings(self, sample: SampleLike, context: Context) -> list[Expectation]:
        column = one_column(sample)
        if column is None or context.format not in (None, self.name) or context.task not in (None, "multiclass"):
            return []
        if context.top_k > 1 or context.positive_class is not None:
            return []
        if any(len(ts) > 1 for ts in tokens_of(column, True, context.classes)):
            return []  # several names per cell: 'labels'
        numbers = numeric(column)
        if numbers is not None and not column.str.strip().str.fullmatch(INTEGER.pattern).all():
            return []  # decimals: a probability or a value
        label_as, why = infer_label_as(sample, context.classes, several=False)
        what = "class indices" if label_as == "index" else "class names"
        return [Expectation(sample.columns, sample.id_column, sample.ids, self.name, "multiclass", context.classes,
                            label_as, reading=f"one column {sample.value_columns[0]!r} of {what} ({why})",
                            decided_by="--classes a,b,c" if label_as == "index" else "--task multiclass")]

    def values(self, probs: np.ndarray, manifest: ManifestLike) -> dict[str, Any]:
        best = probs.argmax(axis=1)
        by_name = manifest.output.label_as == "name"
        cells = [manifest.classes[i] for i in best] if by_name else best.astype(np.int64)
        return {manifest.output.columns[1]: cells}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        return check_tokens(tokens_of(values.iloc[:, 0], several=False), exp)

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        found = tokens_of(values.iloc[:, 0], several=False)
        return ReadBack(decisions=class_matrix(found, exp.classes or (), exp.label_as))


FORMAT = Label()
