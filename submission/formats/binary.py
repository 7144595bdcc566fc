"""``binary``: one column holding the probability of the positive class (``image_name,target``: ``ISIC_1,0.0731``).

From one sigmoid output; from a two-class softmax (the positive class's column); or the column of one class of
any multiclass softmax (``--positive-class melanoma`` of nine diagnoses). Scored by ROC AUC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from submission.formats.base import Check, Context, Expectation, Format, ReadBack, SampleLike, number_checks, one_column

if TYPE_CHECKING:
    from submission.manifest import Manifest

POSITIVE_NAMES = ("1", "true", "yes", "positive", "pos")  # a two-class model's positive class, by its name


def decimals_in_unit(column: pd.Series) -> bool:
    """Whether the sample's cells are numbers, not all integers, every one in [0, 1] (a probability placeholder)."""
    parsed = pd.to_numeric(column, errors="coerce")
    return (not parsed.isna().any() and not column.str.fullmatch(r"[+-]?\d+").all()
            and bool(((parsed >= 0) & (parsed <= 1)).all()))


def positive_index(manifest: Manifest) -> int:
    d, classes = manifest.decision, manifest.classes
    if d.positive_class is not None:
        return classes.index(d.positive_class)
    return len(classes) - 1  # one sigmoid output: its own column


class Binary(Format):
    name = "binary"
    tasks = ("multiclass", "multilabel")
    summary = "`image_name,target`: `ISIC_0052060,0.073142` (the positive class's probability)"
    per_class_columns = False

    def check_manifest(self, manifest: Manifest) -> str | None:
        if manifest.task == "multilabel" and len(manifest.classes) != 1:
            return f"format 'binary' writes one probability; a multilabel model with {len(manifest.classes)} outputs has several"
        if manifest.task == "multiclass" and manifest.decision.positive_class is None:
            return "format 'binary' of a multiclass model needs the positive class (--positive-class)"
        return super().check_manifest(manifest)

    def accepts_ranks(self, task: str) -> bool:
        return True

    def header(self, id_column: str, classes: tuple[str, ...]) -> tuple[str, ...]:
        return (id_column, "target")

    def fits(self, sample: SampleLike, context: Context) -> str | None:
        column = one_column(sample)
        if column is None or context.task == "regression":
            return None
        if context.positive_class is not None:
            return f"one value column {sample.value_columns[0]!r} and --positive-class {context.positive_class!r}"
        if context.outputs == 1:
            return f"one value column {sample.value_columns[0]!r} and a model with one output (a sigmoid)"
        if decimals_in_unit(column) and context.outputs in (None, 2):
            return f"one value column {sample.value_columns[0]!r} whose sample holds decimals in [0, 1] (a probability)"
        if context.outputs is None and context.cells is not None and decimals_in_unit(context.cells.iloc[:, 0]):
            return (f"one value column {sample.value_columns[0]!r} whose sample holds a placeholder and the CSV "
                    "decimals in [0, 1] (a probability)")
        return None

    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
        return {manifest.output.columns[1]: probs[:, positive_index(manifest)]}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        return number_checks(values, "probability", 0.0, 1.0)

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        return ReadBack(scores=values.iloc[:, 0].astype(float).to_numpy())

    def default_metric(self, exp: Expectation) -> str:
        return "roc_auc"


FORMAT = Binary()
