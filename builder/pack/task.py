"""The submission's settings: the task, the classes, the output format, the columns and the decisions.

Each comes from the options or the config file; else from the sample submission, the folds' outputs and what
their training runs recorded, or the out-of-fold predictions; and every choice says why. A task the sample
leaves open (one-hot columns) and nothing the training left decides is an error that asks for ``--task``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from builder.errors import ConfigError
from builder.pack.folds import Fold
from builder.pack.sample import Sample, infer_label_as, sample_task
from builder.pack.settings import BY_NAME, Layer, Sourced, as_floats, lookup, read_classes, read_thresholds
from builder.pack.thresholds import tune_file
from submission import formats
from submission.formats.base import Context
from submission.formats.binary import POSITIVE_NAMES
from submission.manifest import TASKS


def resolve(name: str, layers: tuple[Layer, ...]) -> Sourced:
    """A setting from the layers, else its declared default."""
    found = lookup(name, *layers)
    return found if found is not None else Sourced(BY_NAME[name].default, "default")


def path(name: str, layers: tuple[Layer, ...]) -> Path | None:
    found = lookup(name, *layers)
    return Path(found.value) if found is not None else None


def recorded(folds: list[Fold], name: str) -> Sourced | None:
    """A setting every fold's training run recorded alike (None when none did); folds that disagree are an error."""
    found = [(f, f.recorded[name]) for f in folds if name in f.recorded]
    if not found:
        return None
    values = {repr(value) for _, (value, _) in found}
    if len(values) > 1:
        detail = "; ".join(f"{f.name}: {value!r} ({source})" for f, (value, source) in found)
        raise ConfigError(f"the folds' training runs record different {name}: {detail}; pass --{name.replace('_', '-')}")
    value, source = found[0][1]
    return Sourced(value, source if len(found) == 1 else f"{source}, and the other folds alike")


def _oof_task(layers: tuple[Layer, ...]) -> Sourced | None:
    """The task the out-of-fold predictions imply: rows summing to 1 (a softmax), else independent sigmoids."""
    oof = path("oof", layers)
    if oof is None:
        return None
    try:
        table = pd.read_csv(oof)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read the out-of-fold predictions {oof}: {e}") from None
    values = table.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    if values.isna().to_numpy().any() or values.shape[1] < 2:
        return None
    if np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        return Sourced("multiclass", f"{oof.name}: its rows sum to 1 (a softmax)")
    return Sourced("multilabel", f"{oof.name}: its rows do not sum to 1 (a sigmoid per class)")


def _task(layers: tuple[Layer, ...], folds: list[Fold], sample: Sample | None) -> tuple[Sourced, int]:
    """The task, and the names per row a top-k sample implies."""
    given = lookup("task", *layers)
    if given is not None:
        if given.value not in TASKS:
            raise ConfigError(f"task from {given.source} is {given.value!r}; expected one of: {', '.join(TASKS)}")
        return given, 1
    heads = folds[0].heads
    hint = recorded(folds, "task")
    if len(heads) == 1 and heads[0].size == 1:
        if hint is not None and hint.value == "regression":
            return hint, 1
        return Sourced("multilabel", "the models have one output: a sigmoid, the probability of the positive class"), 1
    if len(heads) > 1:
        if hint is not None and hint.value == "multilabel":
            return hint, 1
        return Sourced("multiclass", f"{len(heads)} heads combine into composite classes"), 1
    known = [s for s in (hint, _oof_task(layers)) if s is not None and s.value != "regression"]
    if sample is not None:
        task, why, k = sample_task(sample)
        if task is not None:
            return Sourced(task, f"{sample.path.name}: {why}"), k
        if lookup("top_k", *layers) is not None:
            return Sourced("multiclass", f"{lookup('top_k', *layers).source}: a ranked top-k"), k
        if known:
            return Sourced(known[0].value, f"{known[0].source} ({sample.path.name} {why})"), k
        raise ConfigError(
            f"{sample.path.name} {why}, which fits a multiclass and a multilabel task alike, and nothing the training "
            "left says which (no bce_loss or loss in the checkpoints' args, no --oof): pass --task multiclass or "
            "--task multilabel" + (f" (or --top-k {k} for a ranked top {k})" if k > 1 else "")
        )
    if known:
        return known[0], 1
    return Sourced("multiclass", "default (no sample, and nothing the training left says otherwise)"), 1


def _classes(layers: tuple[Layer, ...], folds: list[Fold], sample: Sample | None, task: str, n: int,
             per_class_columns: bool) -> Sourced:
    classes = lookup("classes", *layers) or recorded(folds, "classes")
    if classes is not None:
        return Sourced(read_classes(classes.value, classes.source), classes.source)
    if sample is not None and per_class_columns:
        return Sourced(sample.value_columns, f"{sample.path.name} columns (taken to be the model's output order)")
    if n == 1 and task != "multiclass":
        name = sample.value_columns[0] if sample is not None and len(sample.value_columns) == 1 else "target"
        return Sourced((name,), "the one output, named after the value column")
    return Sourced(tuple(str(i) for i in range(n)), "class indices (no --classes given)")


def _positive(layers: tuple[Layer, ...], classes: tuple[str, ...], task: str) -> Sourced:
    found = lookup("positive_class", *layers)
    if found is not None:
        value = str(found.value)
        if value in classes:
            return Sourced(value, found.source)
        if value.isdigit() and int(value) < len(classes):
            return Sourced(classes[int(value)], f"{found.source} (index {value})")
        raise ConfigError(f"positive_class from {found.source} is {value!r}, which is neither a class name nor an index "
                          f"of {list(classes)}")
    if task != "multiclass":
        return Sourced(None, "not used (one sigmoid output)")
    if len(classes) == 2:
        named = [c for c in classes if c.lower() in POSITIVE_NAMES]
        if len(named) == 1:
            return Sourced(named[0], f"the class named {named[0]!r}")
        return Sourced(classes[1], "the second of two classes, as 0/1 labels have it")
    return Sourced(None, "none (pass --positive-class for a single probability column)")


def _cutoffs(layers: tuple[Layer, ...], task: str, sample: Sample | None) -> Sourced:
    found = lookup("cutoffs", *layers)
    if found is None:
        if task == "regression" and sample is not None and len(sample.value_columns) == 1 and \
                sample.values.iloc[:, 0].str.fullmatch(r"[+-]?\d+").all():
            raise ConfigError(f"{sample.path.name} holds integer grades, and a regression writes numbers: pass --cutoffs "
                              "(e.g. 0.5,1.5,2.5,3.5, or tuned with `builder thresholds --metric qwk`)")
        return Sourced((), "none (the value is written)")
    value: Any = found.value
    if isinstance(value, (str, Path)) and str(value).endswith(".json") and Path(value).is_file():
        value = json.loads(Path(value).read_text(encoding="utf-8")).get("cutoffs")
    return Sourced(as_floats(value, "cutoffs", found.source), found.source)


def submission_settings(layers: tuple[Layer, ...], folds: list[Fold], sample: Sample | None) -> dict[str, Sourced]:
    """The task, the classes, the output format and columns, and the decisions, each with where it came from."""
    s: dict[str, Sourced] = {}
    s["task"], sample_top_k = _task(layers, folds, sample)
    task = s["task"].value
    sizes = [h.size for h in folds[0].heads]
    n = math.prod(sizes) if task == "multiclass" else sum(sizes)
    top_k = lookup("top_k", *layers) or (Sourced(sample_top_k, f"{sample.path.name}: every row names {sample_top_k} "
                                                               "classes") if sample_top_k > 1 and task == "multiclass"
                                         else Sourced(1, "default"))
    s["top_k"] = Sourced(int(top_k.value), top_k.source)
    positive = lookup("positive_class", *layers)

    fmt = lookup("format", *layers)
    if fmt is None:
        if s["top_k"].value > 1 or lookup("new_class", *layers):
            fmt = Sourced("labels", f"{s['top_k'].source}: top-k names in one column")
        elif sample is None:
            default = {"multiclass": "label", "multilabel": "labels" if n > 1 else "binary", "regression": "value"}[task]
            fmt = Sourced(default, f"default for {task} without a sample")
        else:
            context = Context(task=task, outputs=n, top_k=s["top_k"].value,
                              positive_class=str(positive.value) if positive else None)
            try:
                value, reason = formats.infer(sample, context)
            except ValueError as e:
                raise ConfigError(f"{sample.path}: {e}; pass --format") from None
            fmt = Sourced(value, f"{sample.path.name}: {reason}")
    if fmt.value not in formats.FORMATS:
        raise ConfigError(f"format from {fmt.source} is {fmt.value!r}; expected one of: {', '.join(formats.FORMATS)}")
    s["format"] = fmt
    spec = formats.get(fmt.value)

    classes = _classes(layers, folds, sample, task, n, spec.per_class_columns)
    if len(classes.value) != n:
        raise ConfigError(f"{len(classes.value)} classes from {classes.source}, but the folds have {n} outputs")
    s["classes"] = classes

    if sample is not None:
        given = "--id-column" if lookup("id_column", *layers) else "first column"
        s["id_column"] = Sourced(sample.id_column, f"{sample.path.name} (its {given})")
        s["columns"] = Sourced(sample.columns, f"{sample.path.name} header")
    else:
        found = lookup("id_column", *layers)
        s["id_column"] = found if found is not None else Sourced("id", "default")
        s["columns"] = Sourced(spec.header(s["id_column"].value, classes.value),
                               "id column and classes (no sample submission)")

    label_as = lookup("label_as", *layers)
    if label_as is None and sample is not None and fmt.value in ("label", "labels"):
        value, reason = infer_label_as(sample, classes.value)
        label_as = Sourced(value, f"{sample.path.name}: {reason}")
    s["label_as"] = label_as or Sourced("name", "default")

    s["thresholds"] = _thresholds(layers, task, classes.value)
    s["positive_class"] = _positive(layers, classes.value, task) if fmt.value == "binary" else Sourced(None, "not used")
    s["cutoffs"] = _cutoffs(layers, task, sample)
    new_class, new_threshold = lookup("new_class", *layers), lookup("new_threshold", *layers)
    if (new_class is None) != (new_threshold is None):
        raise ConfigError("--new-class and --new-threshold go together")
    s["new_class"] = new_class or Sourced(None, "none")
    s["new_threshold"] = Sourced(float(new_threshold.value), new_threshold.source) if new_threshold else Sourced(None, "none")
    for name in ("at_least_one", "decimals"):
        s[name] = resolve(name, layers)
    return s


def _thresholds(layers: tuple[Layer, ...], task: str, classes: tuple[str, ...]) -> Sourced:
    oof, oof_labels = path("oof", layers), path("oof_labels", layers)
    if (oof is None) != (oof_labels is None):
        raise ConfigError("--oof and --oof-labels go together")
    t = lookup("thresholds", *layers)
    if task != "multilabel":
        if t is not None or oof is not None:
            raise ConfigError("thresholds apply to multilabel tasks; pass --task multilabel or drop --thresholds/--oof")
        return Sourced((), f"not used ({task})")
    if t is not None and oof is not None:
        raise ConfigError(f"thresholds come from {t.source} and from --oof; keep one")
    if oof is not None and oof_labels is not None:
        tuned = tune_file(oof, oof_labels)
        source = f"tuned on {oof.name}: {tuned.metric} {tuned.before:.4f} at 0.5 -> {tuned.after:.4f}"
        t = Sourced(dict(zip(tuned.classes, tuned.thresholds)), source)
    if t is None:
        return Sourced((0.5,) * len(classes), "default")
    return Sourced(read_thresholds(t.value, t.source, classes), t.source)
