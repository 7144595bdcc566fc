"""A checked submission + the true labels -> the leaderboard score and a per-class table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from builder import metrics
from builder.checks import Expectation
from builder.errors import ConfigError


@dataclass(frozen=True)
class Score:
    metric: str  # the headline metric's name
    value: float
    scores: dict[str, float]  # every metric computed
    per_class: list[dict]  # precision, recall, F1, support of each class


def label_matrix(table: pd.DataFrame, id_column: str, classes: tuple[str, ...], source: str) -> pd.DataFrame:
    """A labels table (the class columns as 0/1, or one column of class names or indices, space-separated
    for several) -> an [ids x classes] 0/1 frame indexed by id."""
    columns = [c for c in table.columns if c != id_column]
    if set(classes) <= set(columns):
        values = table[list(classes)].apply(pd.to_numeric, errors="coerce")
        if values.isna().any().any():
            raise ConfigError(f"{source}: class columns must hold numbers")
        return pd.DataFrame((values.to_numpy() >= 0.5).astype(int), index=table[id_column], columns=classes)
    if len(columns) != 1:
        raise ConfigError(f"{source}: expected the class columns {list(classes)} or one label column, got {columns}")
    position = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(table), len(classes)), dtype=int)
    for row, cell in enumerate(table[columns[0]]):
        for token in str(cell).split():
            index = position.get(token)
            if index is None and token.lstrip("-").isdigit() and 0 <= int(token) < len(classes):
                index = int(token)
            if index is None:
                raise ConfigError(f"{source} line {row + 2}: {token!r} is not a class name or index")
            out[row, index] = 1
    return pd.DataFrame(out, index=table[id_column], columns=classes)


def read_labels(path: Path, id_column: str, classes: tuple[str, ...]) -> pd.DataFrame:
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read the labels {path}: {e}") from None
    if id_column not in table.columns:
        table = table.rename(columns={table.columns[0]: id_column})
    return label_matrix(table, id_column, classes, str(path))


DEFAULT_METRIC = {("multiclass", "probs"): "log_loss", ("multilabel", "probs"): "roc_auc_macro",
                  ("multilabel", "onehot"): "f1_samples", ("multilabel", "labels"): "f1_samples"}


def score(table: pd.DataFrame, exp: Expectation, truth: pd.DataFrame, metric: str | None = None,
          beta: float = 2.0) -> Score:
    """Score a submission that passed the checks against ``truth`` (from ``read_labels``)."""
    classes = exp.classes or tuple(truth.columns)
    ids = table[exp.id_column]
    missing = [i for i in ids if i not in truth.index]
    if missing:
        raise ConfigError(f"{len(missing)} submission id(s) have no label: {missing[:5]}")
    true = truth.loc[ids].to_numpy()
    if exp.format == "probs":
        probs = table[list(classes)].astype(float).to_numpy()
        pred = one_hot_argmax(probs) if exp.task == "multiclass" else (probs >= 0.5).astype(int)
    elif exp.format == "onehot":
        pred, probs = table[list(classes)].astype(int).to_numpy(), None
    else:  # "label" or "labels"
        cells = table[exp.columns[1]]
        if exp.task == "multiclass":  # top-k "labels": the first name is the prediction
            cells = cells.str.split().str[0].fillna("")
        frame = pd.DataFrame({exp.id_column: ids, "label": cells})
        pred, probs = label_matrix(frame, exp.id_column, classes, "the submission").to_numpy(), None
    if exp.task == "multiclass":
        scores = metrics.multiclass_scores(true.argmax(1), pred.argmax(1), len(classes))
        if probs is not None:
            scores["log_loss"] = metrics.log_loss(true.argmax(1), probs, "multiclass")
            scores["roc_auc_macro"] = metrics.macro_roc_auc(true, probs)
    else:
        scores = metrics.multilabel_scores(true, pred, beta)
        if probs is not None:
            scores["log_loss"] = metrics.log_loss(true, probs, "multilabel")
            scores["roc_auc_macro"] = metrics.macro_roc_auc(true, probs)
    name = metric or DEFAULT_METRIC.get((exp.task, exp.format), "accuracy")
    if name not in scores:
        raise ConfigError(f"metric {name!r} is not computed for this submission; choose one of: {', '.join(scores)}")
    return Score(name, scores[name], scores, metrics.per_class(true, pred, classes))


def one_hot_argmax(probs: np.ndarray) -> np.ndarray:
    return metrics.one_hot(probs.argmax(1), probs.shape[1])
