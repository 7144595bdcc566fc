"""``labels``: one column of space-separated class names or indices (``image_name,tags``: ``train_1,clear primary``).

Multilabel: the classes at or above their thresholds (an empty cell when none is). Multiclass: the top-k
classes, most probable first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from submission.formats.base import Check, Expectation, Format, ReadBack, SampleLike
from submission.formats.decide import predicted_classes
from submission.formats.label import check_tokens, class_matrix, label_cells, tokens_of

if TYPE_CHECKING:
    from submission.manifest import Manifest


class Labels(Format):
    name = "labels"
    tasks = ("multiclass", "multilabel")
    summary = "`image_name,tags`: `train_1,agriculture clear primary`"
    per_class_columns = False

    def writes_top_k(self, manifest: Manifest) -> bool:
        return manifest.task == "multiclass"

    def fits(self, sample: SampleLike, task: str) -> str | None:
        if len(sample.value_columns) == 1 and task == "multilabel":
            return f"one prediction column {sample.value_columns[0]!r} and a {task} task"
        return None

    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
        cells = label_cells(predicted_classes(probs, manifest), manifest.classes, manifest.output.label_as == "name")
        return {manifest.output.columns[1]: cells}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        return check_tokens(tokens_of(values.iloc[:, 0], several=True), exp)

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        tokens = tokens_of(values.iloc[:, 0], several=True)
        if exp.task == "multiclass":  # top-k: the first name is the prediction
            tokens = [ts[:1] for ts in tokens]
        return ReadBack(class_matrix(tokens, exp.classes or (), exp.label_as))

    def default_metric(self, task: str) -> str:
        return "f1_samples" if task == "multilabel" else "accuracy"

    def empty_cells_allowed(self, exp: Expectation) -> bool:
        return exp.task == "multilabel"


FORMAT = Labels()
