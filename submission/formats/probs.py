"""``probs``: one probability column per class (``id,cat,dog,fox``: ``img_1,0.101234,0.700000,0.198766``).

Multiclass rows are written so that their printed values sum to exactly one; graders check the sum to about 1e-5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from submission.formats.base import (
    Check,
    Context,
    Expectation,
    Format,
    ManifestLike,
    ReadBack,
    SampleLike,
    SampleTask,
    is_integer_text,
    line,
    number_checks,
    one_hot,
    show,
)
from submission.formats.decide import rounded_rows

SUM_TOLERANCE = 1e-5  # multiclass probability rows must sum to 1 within this (graders use 1e-5 to 1e-6)


def sums_to_one(values: pd.DataFrame, tolerance: float = 1e-3) -> bool:
    """Whether every row of the numeric cells sums to 1 (a multiclass sample: 1/C in every cell)."""
    parsed = values.apply(pd.to_numeric, errors="coerce")
    return bool(len(parsed)) and not parsed.isna().to_numpy().any() and bool(
        np.all(np.abs(parsed.sum(axis=1).to_numpy() - 1) <= tolerance))


class Probs(Format):
    name = "probs"
    tasks = ("multiclass", "multilabel")
    summary = "`id,cat,dog,fox`: `img_1,0.101234,0.700000,0.198766`"
    per_class_columns = True

    def accepts_ranks(self, task: str) -> bool:
        return task == "multilabel"

    def sample_task(self, sample: SampleLike, classes: tuple[str, ...] | None) -> SampleTask | None:
        if len(sample.value_columns) < 2 or is_integer_text(sample.values) or \
                sample.values.apply(pd.to_numeric, errors="coerce").isna().to_numpy().any():
            return None
        if sums_to_one(sample.values):
            return SampleTask("multiclass", "its class columns sum to 1 in every row")
        return SampleTask(None, "has one probability column per class")

    def readings(self, sample: SampleLike, context: Context) -> list[Expectation]:
        found = self.sample_task(sample, None)
        if found is None or context.format not in (None, self.name):
            return []
        tasks = [context.task] if context.task else [found.task] if found.task else list(self.tasks)
        return [Expectation(sample.columns, sample.id_column, sample.ids, self.name, task, sample.value_columns,
                            reading=f"{len(sample.value_columns)} class columns holding decimals: {task} "
                                    "probabilities" + (f" ({found.why})" if found.task else ""),
                            decided_by=f"--task {task}")
                for task in tasks if task in self.tasks]

    def values(self, probs: np.ndarray, manifest: ManifestLike) -> dict[str, Any]:
        if manifest.task == "multiclass" and manifest.merge != "rank":
            probs = rounded_rows(probs, manifest.output.decimals)
        return {name: probs[:, i] for i, name in enumerate(manifest.classes)}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        checks = number_checks(values, "probability", 0.0, 1.0)
        if exp.task != "multiclass" or not all(c.passed for c in checks):
            return checks
        sums = values.apply(pd.to_numeric, errors="coerce").sum(axis=1).to_numpy()
        wrong = np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE)
        shown = [f"line {line(r)} sums to {sums[r]:.7f}" for r in wrong]
        detail = f"multiclass probability rows must sum to 1 (within {SUM_TOLERANCE:g}): {show(shown)}" if len(wrong) else ""
        return [*checks[:-1], Check("invalid values", not detail, detail)]

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        probs = values[list(exp.classes or values.columns)].astype(float).to_numpy()
        decisions = one_hot(probs.argmax(1), probs.shape[1]) if exp.task == "multiclass" else (probs >= 0.5).astype(int)
        return ReadBack(decisions=decisions, probabilities=probs)

    def default_metric(self, exp: Expectation) -> str:
        return "log_loss" if exp.task == "multiclass" else "roc_auc_macro"


FORMAT = Probs()
