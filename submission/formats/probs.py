"""``probs``: one probability column per class (``id,cat,dog,fox``: ``img_1,0.101234,0.700000,0.198766``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from submission.formats.base import (
    Check,
    Expectation,
    Format,
    ReadBack,
    SampleLike,
    cells_at,
    is_integer_text,
    line,
    one_hot,
    show,
)

if TYPE_CHECKING:
    from submission.manifest import Manifest

SUM_TOLERANCE = 1e-3  # multiclass probability rows must sum to 1 within this


class Probs(Format):
    name = "probs"
    tasks = ("multiclass", "multilabel")
    summary = "`id,cat,dog,fox`: `img_1,0.101234,0.700000,0.198766`"
    per_class_columns = True

    def fits(self, sample: SampleLike, task: str) -> str | None:
        if len(sample.value_columns) > 1 and not is_integer_text(sample.values):
            return f"{len(sample.value_columns)} class columns holding decimals"
        return None

    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
        return {name: probs[:, i] for i, name in enumerate(manifest.classes)}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        columns = list(values.columns)
        numbers = values.apply(pd.to_numeric, errors="coerce")
        bad = numbers.isna().to_numpy() & ~values.apply(lambda col: col.str.strip() == "").to_numpy()
        if bad.any():
            return [Check("wrong type", False, f"probability cells must be numbers: {show(cells_at(values, bad, columns))}")]
        array = numbers.to_numpy(dtype=float)
        rows, cols = np.nonzero((array < 0) | (array > 1))
        problems = [f"line {line(r)} column {columns[c]!r} = {array[r, c]:g}" for r, c in zip(rows, cols)]
        detail = f"probabilities outside [0, 1]: {show(problems)}" if problems else ""
        if exp.task == "multiclass" and not problems:
            sums = np.nansum(array, axis=1)
            wrong = np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE)
            if len(wrong):
                shown = [f"line {line(r)} sums to {sums[r]:.6f}" for r in wrong]
                detail = f"multiclass probability rows must sum to 1 (within {SUM_TOLERANCE:g}): {show(shown)}"
        return [Check("wrong type", True), Check("invalid values", not detail, detail)]

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        probs = values[list(exp.classes or values.columns)].astype(float).to_numpy()
        decisions = one_hot(probs.argmax(1), probs.shape[1]) if exp.task == "multiclass" else (probs >= 0.5).astype(int)
        return ReadBack(decisions, probs)

    def default_metric(self, task: str) -> str:
        return "log_loss" if task == "multiclass" else "roc_auc_macro"


FORMAT = Probs()
