"""The metadata CSV beside the images -> one row of features per image, encoded as frozen in the manifest.

Two ways, both decided at pack time and never refitted here: the declared columns (categorical one-hot over a
frozen vocabulary; numeric with a fill for blanks, log1p, shift and scale; the count of rows in the image's group
over the whole file), or the user's own encoder, called once on every row of the file (a pandas DataFrame as
``pd.read_csv`` reads it, with each row's image file in a ``path`` column) and returning [rows, width] floats.
Rows are matched to images by id with the sample submission's id rules (file stems, or names with suffix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from submission import code as user_code
from submission.errors import InputError
from submission.inputs.images import has_image_suffix, listing
from submission.manifest import MetaColumn, Metadata


@dataclass
class Encoded:
    features: np.ndarray  # [images, width] float32, in the images' order
    unknown: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> {unseen category: rows}
    filled: list[str] = field(default_factory=list)  # ids without a metadata row, given the fill values


def read(path: Path, id_column: str) -> pd.DataFrame:
    """The metadata file as ``pd.read_csv`` reads it, ids as text."""
    try:
        table = pd.read_csv(path, dtype={id_column: str}, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"metadata file {path} not found; put it in the test folder or pass --metadata PATH") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InputError(f"cannot read the metadata file {path}: {e}") from None
    if id_column not in table.columns:
        raise InputError(f"metadata file {path} has no id column {id_column!r}; its columns are {list(table.columns)}")
    return table


def _key(value: str, with_suffix: bool) -> str:
    return value if with_suffix or not has_image_suffix(value) else Path(value).stem


def row_of_each_id(table: pd.DataFrame, id_column: str, ids: Sequence[str], path: Path) -> list[int | None]:
    """For each image id, the position of its metadata row (None when it has none)."""
    with_suffix = bool(ids) and all(has_image_suffix(i) for i in ids)
    keys = [_key(str(v), with_suffix) for v in table[id_column]]
    seen: dict[str, int] = {}
    repeated = [k for i, k in enumerate(keys) if seen.setdefault(k, i) != i]
    if repeated:
        raise InputError(f"metadata file {path} repeats ids in column {id_column!r}: {listing(sorted(set(repeated)))}")
    return [seen.get(_key(i, with_suffix)) for i in ids]


def _numbers(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The column as floats, NaN where blank; a cell that is not a number is an error naming its line."""
    values = table[column]
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"metadata file {path} line {row + 2} column {column!r}: {values.iloc[row]!r} is not a number")
    return numbers.to_numpy(dtype=np.float64)


def _scaled(x: np.ndarray, c: MetaColumn) -> np.ndarray:
    return ((np.log1p(x) if c.log1p else x) - c.shift) / c.scale


def encode_columns(table: pd.DataFrame, columns: Sequence[MetaColumn],
                   path: Path) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """[rows, width] features of every row of the file by the declared columns, and the unseen categories."""
    missing = [c.name for c in columns if c.name not in table.columns]
    if missing:
        raise InputError(f"metadata file {path} lacks the column(s) {missing} the models were packed with; "
                         f"its columns are {list(table.columns)}")
    parts, unknown = [], {}
    for c in columns:
        if c.kind == "categorical":
            cells = table[c.name].astype("string").str.strip().fillna("")
            position = {v: i for i, v in enumerate(c.categories)}
            one_hot = np.zeros((len(table), len(c.categories)), dtype=np.float64)
            index = cells.map(position)
            known = index.notna().to_numpy()
            one_hot[np.flatnonzero(known), index[known].astype(int).to_numpy()] = 1.0
            unseen = cells[~known & (cells != "")].value_counts()
            if len(unseen):
                unknown[c.name] = {str(k): int(v) for k, v in unseen.items()}
            parts.append(one_hot)
        elif c.kind == "numeric":
            x = _numbers(table, c.name, path)
            parts.append(_scaled(np.where(np.isnan(x), c.fill, x), c)[:, None])
        else:  # count: rows of the image's group over the whole file
            counts = table.groupby(c.name, dropna=False)[c.name].transform("size").to_numpy(dtype=np.float64)
            parts.append(_scaled(counts, c)[:, None])
    return np.concatenate(parts, axis=1), unknown


def fill_row(columns: Sequence[MetaColumn]) -> np.ndarray:
    """The features of an image without a metadata row: fill values, all-zero one-hots, a group of one."""
    parts = []
    for c in columns:
        if c.kind == "categorical":
            parts.append(np.zeros(len(c.categories)))
        else:
            parts.append(_scaled(np.array([c.fill if c.kind == "numeric" else 1.0]), c))
    return np.concatenate(parts)


def run_encoder(encoder: Callable[[pd.DataFrame], object], table: pd.DataFrame, id_column: str, width: int | None,
                path: Path) -> np.ndarray:
    """The user's encoder on every row; its output checked: [rows, width], finite."""
    try:
        out = np.asarray(encoder(table.copy()), dtype=np.float64)
    except Exception as e:
        raise InputError(f"the metadata encoder fails on {path}: {type(e).__name__}: {e}") from None
    if out.ndim == 1:
        out = out[:, None]
    if out.shape[0] != len(table) or (width is not None and out.shape[1] != width):
        expected = f"({len(table)}, {width})" if width is not None else f"{len(table)} rows"
        raise InputError(f"the metadata encoder returns an array of shape {out.shape} for the {len(table)} rows of "
                         f"{path}; the models take {expected}")
    bad_rows, bad_cols = np.nonzero(~np.isfinite(out))
    if len(bad_rows):
        ids = [str(table[id_column].iloc[r]) for r in dict.fromkeys(bad_rows)]
        raise InputError(f"the metadata encoder returns NaN or infinite features for ids {listing(ids)} "
                         f"(feature columns {sorted(set(bad_cols.tolist()))[:10]}) of {path}")
    return out


def encode(metadata: Metadata, bundle: Path, path: Path, ids: Sequence[str], paths: Sequence[Path],
           missing: str = "error") -> Encoded:
    """The features of each image (``ids`` with their files ``paths``), from its row of the metadata file ``path``.

    ``missing`` says what an image without a row gets: "error" (the default: the first ids are named), or
    "fill" (the declared fill values; reported)."""
    table = read(path, metadata.id_column)
    rows = row_of_each_id(table, metadata.id_column, ids, path)
    if metadata.encoder is not None:
        file_of = {i: str(p) for i, p in zip(ids, paths)}
        by_row = {r: file_of[i] for i, r in zip(ids, rows) if r is not None}
        table = table.assign(path=[by_row.get(r) for r in range(len(table))])
        with user_code.imported(metadata.encoder, bundle) as module:
            all_rows = run_encoder(user_code.attribute(module, metadata.encoder), table, metadata.id_column,
                                   metadata.width, path)
        unknown: dict[str, dict[str, int]] = {}
        filler = None
    else:
        all_rows, unknown = encode_columns(table, metadata.columns, path)
        filler = fill_row(metadata.columns)
    without = [i for i, r in zip(ids, rows) if r is None]
    if without and (missing != "fill" or filler is None):
        how = "; pass --metadata-missing fill to give them the fill values" if filler is not None else ""
        raise InputError(f"{len(without)} image(s) have no row in the metadata file {path}: {listing(without)}{how}")
    if not ids:
        return Encoded(np.zeros((0, metadata.width or 0), dtype=np.float32), unknown, without)
    features = np.stack([all_rows[r] if r is not None else filler for r in rows])
    return Encoded(features.astype(np.float32), unknown, without)
