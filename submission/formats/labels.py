"""``labels``: one column of space-separated class names or indices.

Multilabel (``image_name,tags``: ``train_1,clear primary``): the classes at or above their thresholds, an empty
cell when none is. Multiclass top-k (``Image,Id``: ``a.jpg,w_1287fbc new_whale w_98baff9 ...``): the k most
probable classes, with an optional sentinel class (``new_whale``) inserted where the probability of the next
class falls below a threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from submission.formats.base import Check, Context, Expectation, Format, ReadBack, SampleLike, line, one_column, show
from submission.formats.decide import decision_mask, top_k, top_k_with_sentinel
from submission.formats.label import check_tokens, class_matrix, label_cells, tokens_of

if TYPE_CHECKING:
    from submission.manifest import Manifest


def token_counts(column: pd.Series) -> set[int]:
    return {len(cell.split()) for cell in column}


class Labels(Format):
    name = "labels"
    tasks = ("multiclass", "multilabel")
    summary = "`image_name,tags`: `train_1,agriculture clear primary`; top-k: `Image,Id`: `a.jpg,w_1 new_whale w_2`"
    per_class_columns = False

    def writes_top_k(self, manifest: Manifest) -> bool:
        return manifest.task == "multiclass"

    def check_manifest(self, manifest: Manifest) -> str | None:
        spaced = [c for c in (*manifest.classes, manifest.decision.new_class or "") if " " in c]
        if spaced and manifest.output.label_as == "name":
            return (f"class names with spaces ({', '.join(map(repr, spaced[:5]))}) cannot be told apart in a "
                    "space-separated label column; rename the classes or write indices (--label-as index)")
        return super().check_manifest(manifest)

    def fits(self, sample: SampleLike, context: Context) -> str | None:
        column = one_column(sample)
        if column is None:
            return None
        if context.task == "multilabel":
            return f"one prediction column {sample.value_columns[0]!r} and a multilabel task"
        if context.top_k > 1:
            return f"one prediction column {sample.value_columns[0]!r} and --top-k {context.top_k}"
        counts = token_counts(column)
        if max(counts, default=0) > 1:
            return f"the sample's {sample.value_columns[0]!r} cells list several names (space-separated)"
        return None

    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
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
        tokens = tokens_of(values.iloc[:, 0], several=True)
        checks = check_tokens(tokens, exp)
        if exp.task == "multiclass":
            long = [r for r, ts in enumerate(tokens) if len(ts) > exp.top_k]
            detail = f"rows naming more than {exp.top_k} classes: lines {show([line(r) for r in long])}" if long else ""
            checks.append(Check("too many labels", not detail, detail))
        return checks

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        tokens = tokens_of(values.iloc[:, 0], several=True)
        if exp.task == "multilabel":
            return ReadBack(decisions=class_matrix(tokens, exp.classes or (), exp.label_as))
        classes = exp.classes or ()
        first = [ts[:1] if ts and (exp.label_as == "index" or ts[0] in classes) else [] for ts in tokens]
        return ReadBack(decisions=class_matrix(first, classes, exp.label_as), ranked=tokens)

    def default_metric(self, exp: Expectation) -> str:
        if exp.task == "multilabel":
            return "f1_samples"
        return f"map@{exp.top_k}" if exp.top_k > 1 else "accuracy"

    def empty_cells_allowed(self, exp: Expectation) -> bool:
        return exp.task != "multiclass" or exp.top_k > 1  # no class predicted: valid, and scored


FORMAT = Labels()
