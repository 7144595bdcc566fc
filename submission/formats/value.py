"""``value``: one column holding a regression's number, or its integer grade (``id_code,diagnosis``: ``1ae8c165,2``).

A grade is how many cutoffs the value reaches (cutoffs 0.5,1.5,2.5,3.5 give 0-4, as for diabetic retinopathy),
tuned for quadratic weighted kappa by ``builder thresholds --metric qwk``. A sample of integers is read as grades
(it may as well hold class indices: ``--task regression`` or ``--classes`` tells); one of numbers beyond [0, 1]
that are not all integers (``Id,Pawpularity``: ``0007de18,63.9``) as values.
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
    line,
    number_checks,
    numeric,
    one_column,
    show,
)


def grades(values: np.ndarray, cutoffs: tuple[float, ...]) -> np.ndarray:
    """How many cutoffs each value reaches (value >= cutoff)."""
    return np.searchsorted(np.asarray(cutoffs), values, side="right").astype(np.int64)


def integer_cells(column: pd.Series) -> bool:
    return bool(column.str.strip().str.fullmatch(INTEGER.pattern).all())


class Value(Format):
    name = "value"
    tasks = ("regression",)
    summary = "`id_code,diagnosis`: `1ae8c165,2` (a grade, with `--cutoffs`) or `Id,Pawpularity`: `0007de18,63.9` (a value)"
    per_class_columns = False

    def header(self, id_column: str, classes: tuple[str, ...]) -> tuple[str, ...]:
        return (id_column, classes[0])

    def default_for(self, task: str, outputs: int, top_k: int) -> bool:
        return task == "regression"

    def readings(self, sample: SampleLike, context: Context) -> list[Expectation]:
        column = one_column(sample)
        if column is None or context.format not in (None, self.name) or context.task not in (None, "regression"):
            return []
        numbers = numeric(column)
        if numbers is None:
            return []
        whole = integer_cells(column)

        def reading(graded: bool, why: str) -> list[Expectation]:
            what = "an integer grade" if graded else "a regression's value"
            return [Expectation(sample.columns, sample.id_column, sample.ids, self.name, "regression", None,
                                grades=graded, probability=False,
                                reading=f"one value column {sample.value_columns[0]!r}: {what} ({why})",
                                decided_by="--task regression")]

        if context.task == "regression":
            return reading(whole, "--task regression")
        if context.classes is not None or context.positive_class is not None:
            return []  # a class column, or one class's probability
        if whole:
            return reading(True, "its sample holds integers")
        if not ((numbers >= 0) & (numbers <= 1)).all():
            return reading(False, "its sample holds numbers beyond [0, 1]")
        return []

    def values(self, probs: np.ndarray, manifest: ManifestLike) -> dict[str, Any]:
        value = probs[:, 0]
        cutoffs = manifest.decision.cutoffs
        return {manifest.output.columns[1]: grades(value, cutoffs) if cutoffs else value}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        if exp.grades:
            column = values.iloc[:, 0]
            bad = [r for r, v in enumerate(column) if not INTEGER.fullmatch(v.strip())]
            detail = f"grades must be integers: {show([f'line {line(r)}: {column.iloc[r]!r}' for r in bad])}" if bad else ""
            return [Check("wrong type", not detail, detail)]
        return number_checks(values, "value")

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        return ReadBack(values=values.iloc[:, 0].astype(float).to_numpy())

    def default_metric(self, exp: Expectation) -> str:
        return "qwk" if exp.grades else "rmse"


FORMAT = Value()
