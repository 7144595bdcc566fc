"""What the submission must be: the task, the classes, the output format and columns, and the decisions.

Each comes from the settings given; else from the sample (read through the format specs), the folds' outputs and
what their training runs recorded, or the out-of-fold predictions; and every choice says why. A sample that leaves
the task open (one-hot columns) or that can be read in several ways (a two-class model behind an integer
placeholder) is an error that names the options that decide it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from builder.errors import ConfigError
from builder.pack.folds import Fold
from builder.pack.resolve import PackSettings
from builder.pack.settings import Sourced, class_names
from builder.pack.thresholds import tune_file
from builder.task import decide
from submission import formats
from submission.formats.base import Ambiguous, Context, Expectation
from submission.manifest import Decision, Output


@dataclass(frozen=True)
class Target:
    """The decided submission settings, each with where it came from."""

    task: Sourced[str]
    top_k: Sourced[int]
    format: Sourced[str]
    classes: Sourced[tuple[str, ...]]
    id_column: Sourced[str]
    columns: Sourced[tuple[str, ...]]
    label_as: Sourced[str]
    thresholds: Sourced[tuple[float, ...]]
    positive_class: Sourced[str | None]
    cutoffs: Sourced[tuple[float, ...]]
    new_class: Sourced[str | None]
    new_threshold: Sourced[float | None]
    at_least_one: Sourced[bool]
    decimals: Sourced[int]

    def decision(self) -> Decision:
        return Decision(thresholds=self.thresholds.value, at_least_one=self.at_least_one.value, top_k=self.top_k.value,
                        positive_class=self.positive_class.value, cutoffs=self.cutoffs.value,
                        new_class=self.new_class.value, new_threshold=self.new_threshold.value)

    def output(self) -> Output:
        return Output(format=self.format.value, id_column=self.id_column.value, columns=self.columns.value,
                      label_as=self.label_as.value, decimals=self.decimals.value)

    def report(self) -> dict[str, Sourced]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


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


def decide_target(s: PackSettings, folds: list[Fold]) -> Target:
    """The submission's settings for these checked folds."""
    known_classes = _known_classes(s, folds)
    task, sample_top_k = _task(s, folds, known_classes)
    sizes = [h.size for h in folds[0].heads]
    n = math.prod(sizes) if task.value == "multiclass" else sum(sizes)
    top_k = _top_k(s, task.value, sample_top_k)
    reading, fmt = _format(s, task.value, n, top_k.value, known_classes)
    classes = _classes(s, known_classes, reading, task.value, n)
    id_column, columns = _columns(s, fmt.value, classes.value)
    positive = _positive(s, fmt.value, classes.value, task.value)
    new_class, new_threshold = s.new_class or Sourced(None, "none"), s.new_threshold or Sourced(None, "none")
    return Target(
        task=task, top_k=top_k, format=fmt, classes=classes, id_column=id_column, columns=columns,
        label_as=s.label_as or (Sourced(reading.label_as, f"{s.sample.path.name}: {reading.reading}") if reading
                                else Sourced("name", "default")),
        thresholds=_thresholds(s, task.value, classes.value), positive_class=positive,
        cutoffs=_cutoffs(s, task.value, reading), new_class=new_class, new_threshold=new_threshold,
        at_least_one=s.at_least_one, decimals=s.decimals,
    )


def _known_classes(s: PackSettings, folds: list[Fold]) -> Sourced | None:
    """Class names given or recorded (the sample's class columns come later, once its format is known)."""
    if s.classes is not None:
        return s.classes
    found = recorded(folds, "classes")
    return Sourced(class_names(found.value, "classes", found.source), found.source) if found else None


def _oof_task(s: PackSettings) -> tuple[str, str] | None:
    """The task the out-of-fold predictions imply: rows summing to 1 (a softmax), else independent sigmoids."""
    if s.oof is None:
        return None
    oof = s.oof.value
    try:
        table = pd.read_csv(oof)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read the out-of-fold predictions {oof}: {e}") from None
    values = table.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    if values.isna().to_numpy().any() or values.shape[1] < 2:
        return None
    if np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        return "multiclass", f"{oof.name}: its rows sum to 1 (a softmax)"
    return "multilabel", f"{oof.name}: its rows do not sum to 1 (a sigmoid per class)"


def _task(s: PackSettings, folds: list[Fold], known_classes: Sourced | None) -> tuple[Sourced, int]:
    """The task (by ``builder.task.decide``), and the names per row a top-k sample implies."""
    hint = recorded(folds, "task")
    evidence = [(hint.value, hint.source)] if hint is not None else []
    evidence += [t for t in (_oof_task(s),) if t is not None]
    heads = folds[0].heads
    decided = decide(given=(s.task.value, s.task.source) if s.task else None,
                     outputs=tuple(h.size for h in heads) if len(heads) > 1 or heads[0].size == 1 else None,
                     recorded=evidence, sample=s.sample, classes=known_classes.value if known_classes else None,
                     top_k=(s.top_k.value, s.top_k.source) if s.top_k else None, default="multiclass")
    if decided.task is None:
        k = decided.k
        raise ConfigError(
            f"{s.sample.path.name} {decided.sample_why}, which fits a multiclass and a multilabel task alike, and nothing "
            "the training left says which (no bce_loss or loss in the checkpoints' args, no --oof): pass --task "
            "multiclass or --task multilabel" + (f" (or --top-k {k} for a ranked top {k})" if k > 1 else "")
        )
    return Sourced(decided.task, decided.why), decided.k


def _top_k(s: PackSettings, task: str, sample_top_k: int) -> Sourced[int]:
    if s.top_k is not None:
        return s.top_k
    if sample_top_k > 1 and task == "multiclass":
        return Sourced(sample_top_k, f"{s.sample.path.name}: every row names {sample_top_k} classes")
    return Sourced(1, "default")


def _format(s: PackSettings, task: str, n: int, top_k: int,
            known_classes: Sourced | None) -> tuple[Expectation | None, Sourced[str]]:
    """The sample's one reading in what is known (and the format it is), or the task's default without a sample."""
    if s.sample is None:
        fmt = s.format or Sourced(formats.default(task, n, max(top_k, 2 if s.new_class else 1)),
                                  f"default for {task} without a sample")
        return None, fmt
    context = Context(task=task, outputs=n, top_k=top_k, positive_class=s.positive_class.value if s.positive_class else None,
                      classes=known_classes.value if known_classes else None, format=s.format.value if s.format else None)
    try:
        reading = formats.choose(s.sample, context)
    except Ambiguous as e:
        raise ConfigError(f"{s.sample.path}: {e}, for {n} model outputs; pass the option of the one you mean, or "
                          "--format") from None
    except ValueError as e:
        raise ConfigError(f"{s.sample.path}: {e}; pass --format") from None
    return reading, s.format or Sourced(reading.format, f"{s.sample.path.name}: {reading.reading}")


def _classes(s: PackSettings, known: Sourced | None, reading: Expectation | None, task: str, n: int) -> Sourced:
    if known is not None:
        classes = known
    elif reading is not None and formats.get(reading.format).per_class_columns:
        classes = Sourced(s.sample.value_columns, f"{s.sample.path.name} columns (taken to be the model's output order)")
    elif n == 1 and task != "multiclass":
        name = s.sample.value_columns[0] if s.sample is not None and len(s.sample.value_columns) == 1 else "target"
        classes = Sourced((name,), "the one output, named after the value column")
    else:
        classes = Sourced(tuple(str(i) for i in range(n)), "class indices (no --classes given)")
    if len(classes.value) != n:
        raise ConfigError(f"{len(classes.value)} classes from {classes.source}, but the folds have {n} outputs")
    return classes


def _columns(s: PackSettings, fmt: str, classes: tuple[str, ...]) -> tuple[Sourced[str], Sourced[tuple[str, ...]]]:
    if s.sample is not None:
        given = "--id-column" if s.id_column else "first column"
        return (Sourced(s.sample.id_column, f"{s.sample.path.name} (its {given})"),
                Sourced(s.sample.columns, f"{s.sample.path.name} header"))
    id_column = s.id_column or Sourced("id", "default")
    return id_column, Sourced(formats.get(fmt).header(id_column.value, classes),
                              "id column and classes (no sample submission)")


def _positive(s: PackSettings, fmt: str, classes: tuple[str, ...], task: str) -> Sourced:
    given = s.positive_class
    try:
        value, why = formats.get(fmt).positive_class(given.value if given else None, classes, task)
    except ValueError as e:
        raise ConfigError(f"positive_class from {given.source} {e}") from None
    if given is not None and value is not None:
        return Sourced(value, f"{given.source} {why}".strip())
    return Sourced(value, why)


def _cutoffs(s: PackSettings, task: str, reading: Expectation | None) -> Sourced:
    if s.cutoffs is not None:
        return s.cutoffs
    if task == "regression" and reading is not None and reading.grades:
        raise ConfigError(f"{s.sample.path.name} holds integer grades, and a regression writes numbers: pass --cutoffs "
                          "(e.g. 0.5,1.5,2.5,3.5, or tuned with `builder thresholds --metric qwk`)")
    return Sourced((), "none (the value is written)")


def _thresholds(s: PackSettings, task: str, classes: tuple[str, ...]) -> Sourced:
    if task != "multilabel":
        if s.thresholds is not None or s.oof is not None:
            raise ConfigError("thresholds apply to multilabel tasks; pass --task multilabel or drop --thresholds/--oof")
        return Sourced((), f"not used ({task})")
    given = s.thresholds
    if s.oof is not None:
        tuned = tune_file(s.oof.value, s.oof_labels.value)
        given = Sourced(dict(zip(tuned.classes, tuned.thresholds)),
                        f"tuned on {s.oof.value.name}: {tuned.metric} {tuned.before:.4f} at 0.5 -> {tuned.after:.4f}")
    if given is None:
        return Sourced((0.5,) * len(classes), "default")
    return Sourced(in_class_order(given.value, given.source, classes), given.source)


def in_class_order(value: Any, source: str, classes: tuple[str, ...]) -> tuple[float, ...]:
    """Thresholds as a list (class order) or a mapping -> one per class, in class order."""
    if isinstance(value, dict):
        unknown = sorted(set(map(str, value)) - set(classes))
        missing = [c for c in classes if c not in value]
        if unknown or missing:
            raise ConfigError(f"thresholds from {source} must name every class once: unknown {unknown}, missing {missing}")
        return tuple(float(value[c]) for c in classes)
    if len(value) != len(classes):
        raise ConfigError(f"thresholds from {source} must have {len(classes)} numbers, got {len(value)}")
    return tuple(value)
