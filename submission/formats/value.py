"""``value``: one column holding a regression's number, or its integer grade (``id_code,diagnosis``: ``1ae8c165,2``).

A grade is how many cutoffs the value reaches (cutoffs 0.5,1.5,2.5,3.5 give 0-4, as for diabetic retinopathy),
tuned for quadratic weighted kappa by ``builder thresholds --metric qwk``.
"""

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
    number_checks,
    one_column,
    show,
)

if TYPE_CHECKING:
    from submission.manifest import Manifest


def grades(values: np.ndarray, cutoffs: tuple[float, ...]) -> np.ndarray:
    """How many cutoffs each value reaches (value >= cutoff)."""
    return np.searchsorted(np.asarray(cutoffs), values, side="right").astype(np.int64)


class Value(Format):
    name = "value"
    tasks = ("regression",)
    summary = "`id_code,diagnosis`: `1ae8c165,2` (a grade, with `--cutoffs`) or `Id,Pawpularity`: `0007de18,63.9` (a value)"
    per_class_columns = False

    def header(self, id_column: str, classes: tuple[str, ...]) -> tuple[str, ...]:
        return (id_column, classes[0])

    def fits(self, sample: SampleLike, context: Context) -> str | None:
        column = one_column(sample)
        if column is None:
            return None
        if context.task == "regression":
            return f"one value column {sample.value_columns[0]!r} and a regression"
        parsed = pd.to_numeric(column, errors="coerce")
        if context.outputs is None and not parsed.isna().any() and not ((parsed >= 0) & (parsed <= 1)).all():
            return f"one value column {sample.value_columns[0]!r} whose sample holds numbers beyond [0, 1]"
        if context.outputs is None and context.cells is not None and column.str.fullmatch(r"[+-]?\d+").all():
            cells = pd.to_numeric(context.cells.iloc[:, 0], errors="coerce")
            if cells.notna().all() and ((cells < 0) | (cells > 1)).any() and (cells != cells.round()).any():
                return (f"one value column {sample.value_columns[0]!r} whose sample holds integers and the CSV "
                        "other numbers, some beyond [0, 1] (a regression's value, or a probability out of range)")
        return None

    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
        value = probs[:, 0]
        cutoffs = manifest.decision.cutoffs
        return {manifest.output.columns[1]: grades(value, cutoffs) if cutoffs else value}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        if exp.grades:
            column = values.iloc[:, 0]
            bad = [r for r, v in enumerate(column) if not INTEGER.fullmatch(v.strip())]
            detail = f"grades must be integers: {show([f'line {line(r)}: {column.iloc[r]!r}' for r in bad])}" if bad else ""
            return [Check("wrong type", not detail, detail)]
        checks = number_checks(values, "value")
        if checks[-1].passed and exp.probability is False and exp.task is None:
            array = values.iloc[:, 0].astype(float).to_numpy()
            outside = np.flatnonzero((array < 0) | (array > 1))
            if len(outside):
                checks.append(Check("value range", False, f"{len(outside)} value(s) outside [0, 1] (lines "
                                    f"{show([line(r) for r in outside])}): if the column is a probability, the platform "
                                    "fails them; pass --task regression if it is not", level="warning"))
        return checks

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        return ReadBack(values=values.iloc[:, 0].astype(float).to_numpy())

    def default_metric(self, exp: Expectation) -> str:
        return "qwk" if exp.grades else "rmse"


FORMAT = Value()
