"""Probabilities -> decisions (argmax, top-k, per-class thresholds) -> the submission table -> the CSV file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from submission.atomic import atomic_path
from submission.errors import OutputError
from submission.manifest import Manifest


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """[N, C] -> [N, k] class indices, most probable first; ties go to the lower index."""
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


def multilabel_mask(probs: np.ndarray, thresholds: Sequence[float], at_least_one: bool) -> np.ndarray:
    """[N, C] -> [N, C] booleans: p >= threshold of its class; optionally the argmax where nothing passes."""
    mask = probs >= np.asarray(thresholds, dtype=probs.dtype)
    if at_least_one:
        empty = ~mask.any(axis=1)
        mask[empty, probs[empty].argmax(axis=1)] = True
    return mask


def predicted_classes(probs: np.ndarray, manifest: Manifest) -> list[list[int]]:
    """For each row, the predicted class indices: top-k for multiclass, thresholded classes for multilabel."""
    if manifest.task == "multiclass":
        return top_k(probs, manifest.decision.top_k).tolist()
    d = manifest.decision
    return [np.flatnonzero(row).tolist() for row in multilabel_mask(probs, d.thresholds, d.at_least_one)]


def build_table(ids: Sequence[str], probs: np.ndarray, manifest: Manifest) -> pd.DataFrame:
    """The submission: one row per id, columns exactly ``manifest.output.columns``."""
    out, classes = manifest.output, manifest.classes
    if probs.shape != (len(ids), len(classes)):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(ids)} ids and {len(classes)} classes")
    table = pd.DataFrame({out.id_column: pd.array(list(ids), dtype=object)})
    if out.format == "probs":
        for i, name in enumerate(classes):
            table[name] = probs[:, i]
    elif out.format == "onehot":
        if manifest.task == "multiclass":
            mask = np.zeros(probs.shape, dtype=bool)
            mask[np.arange(len(ids)), probs.argmax(axis=1)] = True
        else:
            mask = multilabel_mask(probs, manifest.decision.thresholds, manifest.decision.at_least_one)
        for i, name in enumerate(classes):
            table[name] = mask[:, i].astype(np.int64)
    else:  # "label" or "labels": one column of class names or indices
        rows = predicted_classes(probs, manifest)
        by_name = out.label_as == "name"
        if out.format == "label":
            values = [classes[r[0]] if by_name else r[0] for r in rows]
        else:
            values = [" ".join(classes[j] if by_name else str(j) for j in r) for r in rows]
        table[out.columns[1]] = values
    return table[list(out.columns)]


def write_csv(table: pd.DataFrame, path: Path, decimals: int) -> None:
    """Write the table as UTF-8 (no BOM) with LF line ends, atomically: a failure leaves ``path`` as it was."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format=f"%.{decimals}f", lineterminator="\n", encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write the submission to {path}: {e}") from None


def write_json(data: object, path: Path) -> None:
    """Write ``data`` as JSON, atomically."""
    try:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from None


def check_writable(path: Path) -> None:
    """Fail before any model is loaded when the output cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise OutputError(
            f"cannot write to {path.parent} ({e.strerror or e}) as uid {os.getuid()}; mount a folder this user may "
            "write there (docker run --user \"$(id -u):$(id -g)\" ..., or chmod a+w on the host), or pass --out"
        ) from None
    if path.is_dir():
        raise OutputError(f"--out {path} is a folder; give the path of the CSV file to write")
