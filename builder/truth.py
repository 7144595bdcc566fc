"""True labels on disk (a labels file, or out-of-fold labels) -> what scoring and threshold tuning compare with.

A labels file has an id column (the first, or one named like the submission's) and either one 0/1 column per
class, or one column: a class name (the whole cell, spaces included), space-separated names (multilabel), a
class index, a 0/1 target, or a number (a regression's value or grade).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from builder.errors import ConfigError


def read_truth(path: Path, id_column: str) -> pd.DataFrame:
    """The labels file as text, indexed by id."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read the labels {path}: {e}") from None
    if id_column not in table.columns:
        table = table.rename(columns={table.columns[0]: id_column})
    if table[id_column].duplicated().any():
        raise ConfigError(f"{path} repeats ids: {table[id_column][table[id_column].duplicated()].tolist()[:5]}")
    table.attrs["source"] = str(path)
    return table.set_index(id_column)


def aligned(truth: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """The truth's rows in the order of ``ids``; ids without a label are an error naming them."""
    missing = [i for i in ids if i not in truth.index]
    if missing:
        raise ConfigError(f"{len(missing)} submission id(s) have no label in {truth.attrs.get('source', 'the labels')}: "
                          f"{missing[:5]}")
    return truth.loc[list(ids)]


def class_matrix(truth: pd.DataFrame, classes: tuple[str, ...], several: bool) -> np.ndarray:
    """[N, C] 0/1 from class columns, or from one label column (``several``: space-separated names)."""
    source = truth.attrs.get("source", "the labels")
    if set(classes) <= set(truth.columns):
        values = truth[list(classes)].apply(pd.to_numeric, errors="coerce")
        if values.isna().any().any():
            raise ConfigError(f"{source}: class columns must hold numbers")
        return (values.to_numpy() >= 0.5).astype(int)
    if truth.shape[1] != 1:
        raise ConfigError(f"{source}: expected the class columns {list(classes)} or one label column, "
                          f"got {list(truth.columns)}")
    position = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(truth), len(classes)), dtype=int)
    for row, cell in enumerate(truth.iloc[:, 0]):
        cell = str(cell).strip()
        tokens = [cell] if cell in position or not several else cell.split()
        for token in tokens:
            index = position.get(token)
            if index is None and token.lstrip("-").isdigit() and 0 <= int(token) < len(classes):
                index = int(token)
            if index is None:
                raise ConfigError(f"{source} line {row + 2}: {token!r} is not a class name or index of {list(classes)[:10]}")
            out[row, index] = 1
    return out


def numbers(truth: pd.DataFrame, positive: str | None = None) -> np.ndarray:
    """[N] numbers of a one-column labels file; with ``positive``, a class name counts as 1 when it is that class."""
    source = truth.attrs.get("source", "the labels")
    column = truth.iloc[:, -1].str.strip()
    if positive is not None and not column.isin(["0", "1"]).all():
        return (column == positive).astype(float).to_numpy()
    values = pd.to_numeric(column, errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ConfigError(f"{source} line {row + 2}: {column.iloc[row]!r} is not a number")
    return values.to_numpy(dtype=float)


def read_labels(path: Path, id_column: str, classes: tuple[str, ...]) -> pd.DataFrame:
    """An [ids x classes] 0/1 frame (out-of-fold labels for threshold tuning)."""
    truth = read_truth(path, id_column)
    return pd.DataFrame(class_matrix(truth, classes, several=True), index=truth.index, columns=list(classes))
