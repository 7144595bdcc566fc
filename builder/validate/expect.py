"""What a submission CSV must look like: exactly what an image's manifest says, or, for a CSV checked alone, what
the sample, the options and the CSV itself let one infer. What was inferred is said, and the checks are those
that hold for every task the inferred format allows."""

from __future__ import annotations

import pandas as pd

from builder.errors import ConfigError
from builder.pack.sample import Sample, infer_label_as, sample_task
from submission import formats
from submission.formats.base import Context, Expectation
from submission.formats.probs import sums_to_one
from submission.manifest import Manifest


def from_manifest(manifest: Manifest, sample: Sample) -> Expectation:
    d, classes = manifest.decision, manifest.classes
    if manifest.output.format == "labels" and d.new_class is not None and d.new_class not in classes:
        classes = (*classes, d.new_class)
    return Expectation(sample.columns, sample.id_column, sample.ids, manifest.output.format, manifest.task, classes,
                       manifest.output.label_as, top_k=d.top_k, positive_class=d.positive_class,
                       grades=bool(d.cutoffs), probability=manifest.task != "regression")


def inferred(sample: Sample, cells: pd.DataFrame | None, *, task: str | None = None,
             classes: tuple[str, ...] | None = None, top_k: int = 1, positive_class: str | None = None) -> Expectation:
    """The expectation of a CSV checked without an image; ``cells`` are its value cells (None when unreadable)."""
    context = Context(task=task, top_k=top_k, positive_class=positive_class, cells=cells)
    try:
        fmt, reason = formats.infer(sample, context)
    except ValueError as e:
        raise ConfigError(f"{sample.path}: {e}; pass --task") from None
    spec = formats.get(fmt)
    notes = [f"format {fmt!r}: {reason}"]
    if spec.per_class_columns:
        classes = sample.value_columns
    if task is None:
        if fmt == "label":
            task = "multiclass"
        elif fmt == "labels":
            task, why, k = sample_task(sample)
            if top_k > 1:
                task = "multiclass"
            notes.append(f"task {task or 'open (pass --task or --top-k to check more)'}: the sample's {why}")
        elif fmt == "probs" and sums_to_one(sample.values):
            task = "multiclass"
            notes.append("task multiclass: the sample's rows sum to 1, so rows must sum to 1")
        elif fmt in ("onehot", "probs"):
            notes.append("task open: checks that hold for multiclass and multilabel alike (pass --task for more)")
    elif fmt == "labels" and task == "multiclass" and top_k == 1:
        top_k = max(1, sample_task(sample)[2])
    grades = fmt == "value" and task == "regression" and bool(
        sample.values.iloc[:, 0].str.fullmatch(r"[+-]?\d+").all())
    label_as = infer_label_as(sample, classes or ())[0] if fmt in ("label", "labels") else "name"
    return Expectation(sample.columns, sample.id_column, sample.ids, fmt, task, classes, label_as, top_k=top_k,
                       positive_class=positive_class, grades=grades, probability=fmt == "binary", notes=tuple(notes))
