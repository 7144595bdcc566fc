"""``onehot``: one 0/1 column per class (``index,a,b,...,z``: ``00012,0,1,...,0``)."""

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
    cells_at,
    is_integer_text,
    line,
    show,
)
from submission.formats.decide import decision_mask


class OneHot(Format):
    name = "onehot"
    tasks = ("multiclass", "multilabel")
    summary = "`index,a,b,...,z`: `00012,0,1,...,0`"
    per_class_columns = True

    def sample_task(self, sample: SampleLike, classes: tuple[str, ...] | None) -> SampleTask | None:
        if len(sample.value_columns) > 1 and is_integer_text(sample.values):
            return SampleTask(None, "has one 0/1 column per class")
        return None

    def readings(self, sample: SampleLike, context: Context) -> list[Expectation]:
        if self.sample_task(sample, None) is None or context.format not in (None, self.name):
            return []
        tasks = [context.task] if context.task else list(self.tasks)
        return [Expectation(sample.columns, sample.id_column, sample.ids, self.name, task, sample.value_columns,
                            reading=f"{len(sample.value_columns)} class columns holding integers: {task} 0/1 "
                                    "decisions", decided_by=f"--task {task}")
                for task in tasks if task in self.tasks]

    def values(self, probs: np.ndarray, manifest: ManifestLike) -> dict[str, Any]:
        mask = decision_mask(probs, manifest)
        return {name: mask[:, i].astype(np.int64) for i, name in enumerate(manifest.classes)}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        columns = list(values.columns)
        bad = ~values.apply(lambda col: col.isin(["0", "1"])).to_numpy()
        if bad.any():
            cells = show(cells_at(values, bad, columns))
            return [Check("wrong type", False, f"one-hot cells must be the integers 0 or 1: {cells}")]
        checks = [Check("wrong type", True)]
        if exp.task == "multiclass":
            wrong = np.flatnonzero(values.astype(int).sum(axis=1).to_numpy() != 1)
            lines = show([line(r) for r in wrong])
            detail = f"multiclass one-hot rows need exactly one 1: lines {lines}" if len(wrong) else ""
            checks.append(Check("invalid values", not detail, detail))
        return checks

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        return ReadBack(decisions=values[list(exp.classes or values.columns)].astype(int).to_numpy())

    def default_metric(self, exp: Expectation) -> str:
        return "f1_samples" if exp.task == "multilabel" else "accuracy"


FORMAT = OneHot()
