"""True labels on disk (a labels file, or out-of-fold labels) -> an [ids x classes] 0/1 matrix.

Read by the threshold tuning of ``builder pack``/``builder thresholds`` and by the scoring of ``builder validate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from builder.errors import ConfigError


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
