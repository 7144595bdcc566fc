"""``onehot``: one 0/1 column per class (``index,a,b,...,z``: ``00012,0,1,...,0``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from submission.formats.base import (
    Check,
    Context,
    Expectation,
    Format,
    ReadBack,
    SampleLike,
    cells_at,
    is_integer_text,
    line,
    show,
)
from submission.formats.decide import decision_mask

if TYPE_CHECKING:
    from submission.manifest import Manifest


class OneHot(Format):
    name = "onehot"
    tasks = ("multiclass", "multilabel")
    summary = "`index,a,b,...,z`: `00012,0,1,...,0`"
    per_class_columns = True

    def fits(self, sample: SampleLike, context: Context) -> str | None:
        if len(sample.value_columns) > 1 and is_integer_text(sample.values):
            return f"{len(sample.value_columns)} class columns holding integers"
        return None

    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
        mask = decision_mask(probs, manifest)
        return {name: mask[:, i].astype(np.int64) for i, name in enumerate(manifest.classes)}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        columns = list(values.columns)
        bad = ~values.apply(lambda col: col.isin(["0", "1"])).to_numpy()
        if bad.any():
            return [Check("wrong type", False, f"one-hot cells must be the integers 0 or 1: {show(cells_at(values, bad, columns))}")]
        checks = [Check("wrong type", True)]
        if exp.task == "multiclass":
            wrong = np.flatnonzero(values.astype(int).sum(axis=1).to_numpy() != 1)
            detail = f"multiclass one-hot rows need exactly one 1: lines {show([line(r) for r in wrong])}" if len(wrong) else ""
            checks.append(Check("invalid values", not detail, detail))
        return checks

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        return ReadBack(decisions=values[list(exp.classes or values.columns)].astype(int).to_numpy())

    def default_metric(self, exp: Expectation) -> str:
        return "f1_samples" if exp.task == "multilabel" else "accuracy"


FORMAT = OneHot()
