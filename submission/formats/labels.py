"""``labels``: one column of space-separated class names or indices.

Multilabel (``image_name,tags``: ``train_1,clear primary``): the classes at or above their thresholds, an empty
cell when none is. Multiclass top-k (``Image,Id``: ``a.jpg,w_1287fbc new_whale w_98baff9 ...``): the k most
probable classes, with an optional sentinel class (``new_whale``) inserted where the probability of the next
class falls below a threshold.
"""

from __future__ import annotations

from dataclasses import replace
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
    line,
    numeric,
    one_column,
    show,
)
from submission.formats.decide import decision_mask, top_k, top_k_with_sentinel
from submission.formats.label import check_tokens, class_matrix, infer_label_as, label_cells, tokens_of


def token_counts(column: pd.Series, classes: tuple[str, ...] | None = None) -> set[int]:
    return {len(ts) for ts in tokens_of(column, True, classes)}


class Labels(Format):
    name = "labels"
    tasks = ("multiclass", "multilabel")
    summary = "`image_name,tags`: `train_1,agriculture clear primary`; top-k: `Image,Id`: `a.jpg,w_1 new_whale w_2`"
    per_class_columns = False

    def writes_top_k(self, manifest: ManifestLike) -> bool:
        return manifest.task == "multiclass"

    def default_for(self, task: str, outputs: int, top_k: int) -> bool:
        return (task == "multilabel" and outputs > 1) or (task == "multiclass" and top_k > 1)

    def check_manifest(self, manifest: ManifestLike) -> str | None:
        spaced = [c for c in (*manifest.classes, manifest.decision.new_class or "") if " " in c]
        if spaced and manifest.output.label_as == "name":
            return (f"class names with spaces ({', '.join(map(repr, spaced[:5]))}) cannot be told apart in a "
                    "space-separated label column; rename the classes or write indices (--label-as index)")
        return super().check_manifest(manifest)

    def sample_task(self, sample: SampleLike, classes: tuple[str, ...] | None) -> SampleTask | None:
        column = one_column(sample)
        if column is None:
            return None
        counts = token_counts(column, classes)
        if max(counts, default=0) <= 1:
            return None
        if len(counts) == 1:  # the whale sample (a ranked top 5) and Planet's (5 tags) look alike
            k = counts.pop()
            return SampleTask(None, f"every row names {k} classes (a ranked top {k}, or {k} labels)", k)
        return SampleTask("multilabel", "rows name varying numbers of classes")

    def readings(self, sample: SampleLike, context: Context) -> list[Expectation]:
        column = one_column(sample)
        if column is None or context.format not in (None, self.name) or context.task == "regression":
            return []
        if context.positive_class is not None or context.outputs == 1:
            return []  # one class's probability: 'binary'
        if numeric(column) is not None and not column.str.strip().str.fullmatch(r"[+-]?\d+").all():
            return []  # decimals: a probability or a value
        label_as = infer_label_as(sample, context.classes, several=True)[0]
        base = Expectation(sample.columns, sample.id_column, sample.ids, self.name, None, context.classes, label_as)
        column_name = sample.value_columns[0]
        top = replace(base, task="multiclass", top_k=context.top_k,
                      reading=f"one column {column_name!r} of the {context.top_k} most probable classes",
                      decided_by=f"--top-k {context.top_k}")
        tags = replace(base, task="multilabel", reading=f"one column {column_name!r} of the predicted classes",
                       decided_by="--task multilabel")
        if context.task == "multilabel":
            return [tags]
        if context.top_k > 1:
            return [top]
        found = self.sample_task(sample, context.classes)
        if found is None:
            return []
        if found.task == "multilabel":
            return [tags] if context.task is None else [top]
        top = replace(top, top_k=found.k, reading=f"one column {column_name!r} of the {found.k} most probable classes",
                      decided_by=f"--top-k {found.k}")
        return [top] if context.task == "multiclass" else [top, tags]

    def expectation(self, manifest: ManifestLike, sample: SampleLike) -> Expectation:
        exp = super().expectation(manifest, sample)
        new = manifest.decision.new_class
        return replace(exp, classes=(*exp.classes, new)) if new is not None and new not in exp.classes else exp

    def values(self, probs: np.ndarray, manifest: ManifestLike) -> dict[str, Any]:
        d, names = manifest.decision, manifest.classes
        if manifest.task == "multilabel":
            rows = [np.flatnonzero(row).tolist() for row in decision_mask(probs, manifest)]
        elif d.new_class is not None:
            sentinel = names.index(d.new_class) if d.new_class in names else len(names)
            names = names if d.new_class in names else (*names, d.new_class)
            rows = top_k_with_sentinel(probs, d.top_k, sentinel, float(d.new_threshold))
        else:
            rows = top_k(probs, d.top_k).tolist()
        return {manifest.output.columns[1]: label_cells(rows, names, manifest.output.label_as == "name")}

    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        found = tokens_of(values.iloc[:, 0], True, exp.classes)
        checks = check_tokens(found, exp)
        if exp.task == "multiclass":
            long = [r for r, ts in enumerate(found) if len(ts) > exp.top_k]
            detail = f"rows naming more than {exp.top_k} classes: lines {show([line(r) for r in long])}" if long else ""
            checks.append(Check("too many labels", not detail, detail))
        return checks

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        found = tokens_of(values.iloc[:, 0], True, exp.classes)
        if exp.task == "multilabel":
            return ReadBack(decisions=class_matrix(found, exp.classes or (), exp.label_as))
        classes = exp.classes or ()
        first = [ts[:1] if ts and (exp.label_as == "index" or ts[0] in classes) else [] for ts in found]
        return ReadBack(decisions=class_matrix(first, classes, exp.label_as), ranked=found)

    def default_metric(self, exp: Expectation) -> str:
        if exp.task == "multilabel":
            return "f1_samples"
        return f"map@{exp.top_k}" if exp.top_k > 1 else "accuracy"

    def empty_cells_allowed(self, exp: Expectation) -> bool:
        return exp.task != "multiclass" or exp.top_k > 1  # no class predicted: valid, and scored


FORMAT = Labels()
