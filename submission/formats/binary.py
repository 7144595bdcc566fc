"""``binary``: one column holding the probability of the positive class (``image_name,target``: ``ISIC_1,0.0731``).

From one sigmoid output; from a two-class softmax (the positive class's column); or the column of one class of
any multiclass softmax (``--positive-class melanoma`` of nine diagnoses). Scored by ROC AUC. A sample whose column
holds decimals in [0, 1] calls for it; one whose column holds an integer placeholder (Histopathologic's
``id,label`` with 0) may as well hold a class index, so it takes ``--positive-class`` to be read so.
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
    number_checks,
    numeric,
    one_column,
)

POSITIVE_NAMES = ("1", "true", "yes", "positive", "pos")  # a two-class model's positive class, by its name


def decimals_in_unit(column: pd.Series) -> bool:
    """Whether the sample's cells are numbers, not all integers, every one in [0, 1] (a probability placeholder)."""
    parsed = numeric(column)
    return (parsed is not None and not column.str.fullmatch(INTEGER.pattern).all()
            and bool(((parsed >= 0) & (parsed <= 1)).all()))


def zero_or_one(column: pd.Series) -> bool:
    """Whether every cell is the integer 0 or 1 (a placeholder that a class index and a probability share)."""
    return bool(len(column)) and bool(column.str.strip().isin(["0", "1"]).all())


def positive_index(manifest: ManifestLike) -> int:
    d, classes = manifest.decision, manifest.classes
    if d.positive_class is not None:
        return classes.index(d.positive_class)
    return len(classes) - 1  # one sigmoid output: its own column


class Binary(Format):
    name = "binary"
    tasks = ("multiclass", "multilabel")
    summary = "`image_name,target`: `ISIC_0052060,0.073142` (the positive class's probability)"
    per_class_columns = False

    def check_manifest(self, manifest: ManifestLike) -> str | None:
        if manifest.task == "multilabel" and len(manifest.classes) != 1:
            n = len(manifest.classes)
            return f"format 'binary' writes one probability; a multilabel model with {n} outputs has several"
        if manifest.task == "multiclass" and manifest.decision.positive_class is None:
            return "format 'binary' of a multiclass model needs the positive class (--positive-class)"
        return super().check_manifest(manifest)

    def accepts_ranks(self, task: str) -> bool:
        return True

    def default_for(self, task: str, outputs: int, top_k: int) -> bool:
        return task == "multilabel" and outputs == 1

    def header(self, id_column: str, classes: tuple[str, ...]) -> tuple[str, ...]:
        return (id_column, "target")

    def readings(self, sample: SampleLike, context: Context) -> list[Expectation]:
        column = one_column(sample)
        if column is None or context.format not in (None, self.name) or context.task == "regression":
            return []

        def reading(why: str) -> list[Expectation]:
            return [Expectation(sample.columns, sample.id_column, sample.ids, self.name, context.task, context.classes,
                                positive_class=context.positive_class, probability=True,
                                reading=f"one value column {sample.value_columns[0]!r}: {why}",
                                decided_by="--positive-class NAME")]

        if context.positive_class is not None:
            return reading(f"the probability of --positive-class {context.positive_class!r}")
        if context.outputs == 1:
            return reading("the probability of the one output (a sigmoid)")
        if context.outputs is not None and context.outputs > 2:
            return []  # one class of many: only with --positive-class
        if decimals_in_unit(column):
            return reading("its sample holds decimals in [0, 1] (a probability)")
        unknown = context.outputs is None and context.classes is None and context.task != "multiclass"
        if zero_or_one(column) and (context.outputs == 2 or unknown):  # a two-class model, or nothing said
            return reading("its sample holds the integer placeholder 0 or 1, which a probability may fill")
        return []

    def positive_class(self, given: str | None, classes: tuple[str, ...], task: str) -> tuple[str | None, str]:
        """A name or index given, else for two classes the one named 1/true/positive, or the second (as 0/1 labels
        have it); a sigmoid's one output needs none."""
        if given is not None:
            if given in classes:
                return given, ""
            if given.isdigit() and int(given) < len(classes):
                return classes[int(given)], f"(index {given})"
            raise ValueError(f"is {given!r}, which is neither a class name nor an index of {list(classes)}")
        if task != "multiclass":
            return None, "not used (one sigmoid output)"
        if len(classes) == 2:
            named = [c for c in classes if c.lower() in POSITIVE_NAMES]
            if len(named) == 1:
                return named[0], f"the class named {named[0]!r}"
            return classes[1], "the second of two classes, as 0/1 labels have it"
        return None, "none (pass --positive-class for a single probability column)"

    def values(self, probs: np.ndarray, manifest: ManifestLike) -> dict[str, Any]:
        return {manifest.output.columns[1]: probs[:, positive_index(manifest)]}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        return number_checks(values, "probability", 0.0, 1.0)

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        return ReadBack(scores=values.iloc[:, 0].astype(float).to_numpy())

    def default_metric(self, exp: Expectation) -> str:
        return "roc_auc"


FORMAT = Binary()
