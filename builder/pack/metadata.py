"""The metadata settings -> the manifest's frozen metadata encoding, checked on the training metadata.

Declared columns (``--metadata-columns``, a list in the model's feature order) take what they leave open from
``--train-metadata``: a categorical's vocabulary (its values, sorted), a numeric's fill (the median) and, with
``normalize: true``, the shift and scale (mean and std). An encoder (``--metadata-encoder FILE.py:FUNCTION``) is
frozen like model code and run on the training metadata to learn its width. Nothing is refitted at run time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from builder.errors import ConfigError
from builder.pack import code as code_io
from builder.pack.sample import Sample
from builder.pack.settings import Layer, Sourced, lookup
from submission import code as user_code
from submission.errors import InputError
from submission.inputs import metadata as meta_io
from submission.manifest import MetaColumn, Metadata

_KEYS = {"name", "type", "kind", "categories", "fill", "log1p", "normalize", "shift", "scale", "mean", "std"}


@dataclass
class DeclaredMetadata:
    metadata: Metadata
    sources: dict[str, Sourced]  # what was taken from where, for the settings report
    rows: pd.DataFrame | None  # a few rows of the training metadata, for the smoke run
    requirements: dict[str, str] = field(default_factory=dict)  # distributions the encoder imports


def _read_train(path: Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    try:
        return pd.read_csv(path, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read the training metadata {path}: {e}") from None


def _column_list(value: Any, source: str) -> list[Mapping[str, Any]]:
    if isinstance(value, (str, Path)) and Path(value).is_file():
        try:
            value = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError) as e:
            raise ConfigError(f"cannot read the metadata columns {value}: {e}") from None
    if not isinstance(value, list) or not all(isinstance(c, Mapping) for c in value):
        raise ConfigError(f"metadata_columns from {source} must be a list of column declarations "
                          "({name, type: categorical|numeric|count, ...}), not {value!r}")
    return value


def _numbers(train: pd.DataFrame, name: str, source: str) -> np.ndarray:
    values = pd.to_numeric(train[name], errors="coerce")
    bad = values.isna() & train[name].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError(f"training metadata line {row + 2} column {name!r}: {train[name].iloc[row]!r} is not a "
                          f"number, but {source} declares the column numeric")
    return values.to_numpy(dtype=np.float64)


def _column(spec: Mapping[str, Any], train: pd.DataFrame | None, source: str) -> MetaColumn:
    unknown = sorted(set(spec) - _KEYS)
    name, kind = spec.get("name"), spec.get("type", spec.get("kind"))
    where = f"metadata column {name!r} from {source}"
    if unknown or not name or kind not in ("categorical", "numeric", "count"):
        raise ConfigError(f"{where}: needs a name and a type (categorical, numeric or count); unknown keys {unknown}")
    if train is not None and name not in train.columns:
        raise ConfigError(f"{where}: the training metadata has no such column; its columns are {list(train.columns)}")
    log1p = bool(spec.get("log1p", False))
    shift, scale = float(spec.get("shift", spec.get("mean", 0.0))), float(spec.get("scale", spec.get("std", 1.0)))
    if kind == "categorical":
        categories = spec.get("categories")
        if categories is None:
            if train is None:
                raise ConfigError(f"{where}: list its categories, or pass --train-metadata to take them from there")
            cells = train[name].astype("string").str.strip().dropna()
            categories = sorted(set(cells[cells != ""]))
        return MetaColumn(str(name), "categorical", tuple(str(c) for c in categories), 0.0, False, 0.0, 1.0)
    fill = spec.get("fill")
    if kind == "numeric":
        x = _numbers(train, name, source) if train is not None else None
        if fill is None:
            if x is None:
                raise ConfigError(f"{where}: give its fill (the value of a blank cell), or pass --train-metadata")
            fill = float(np.nanmedian(x))
        values = None if x is None else np.where(np.isnan(x), float(fill), x)
    else:
        values = None if train is None else train.groupby(name, dropna=False)[name].transform("size").to_numpy(float)
    if spec.get("normalize"):
        if values is None:
            raise ConfigError(f"{where}: normalize takes its mean and std from --train-metadata; pass it")
        values = np.log1p(values) if log1p else values
        shift, scale = float(values.mean()), float(values.std()) or 1.0
    return MetaColumn(str(name), kind, (), float(fill or 0.0), log1p, shift, scale)


def _placeholder_image(folder: Path) -> Path:
    path = folder / "placeholder.png"
    Image.new("RGB", (64, 64)).save(path)
    return path


def declare(layers: tuple[Layer, ...], sample: Sample | None, bundle: Path) -> DeclaredMetadata | None:
    """The metadata the models take, from the settings (None when no metadata is declared)."""
    columns_s, encoder_s = lookup("metadata_columns", *layers), lookup("metadata_encoder", *layers)
    if columns_s is None and encoder_s is None:
        return None
    if columns_s is not None and encoder_s is not None:
        raise ConfigError(f"metadata comes from {columns_s.source} and from {encoder_s.source}; keep one")
    file_s = lookup("metadata_file", *layers)
    if file_s is None:
        raise ConfigError("pass --metadata-file: where the metadata CSV lies in the test folder (e.g. test.csv)")
    train_s = lookup("train_metadata", *layers)
    train = _read_train(Path(train_s.value) if train_s else None)
    sources: dict[str, Sourced] = {"metadata_file": file_s}
    id_s = lookup("metadata_id_column", *layers)
    if id_s is None:
        candidates = list(train.columns) if train is not None else []
        if sample is not None and (train is None or sample.id_column in candidates):
            id_s = Sourced(sample.id_column, f"the sample's id column ({sample.path.name})")
        elif candidates:
            id_s = Sourced(candidates[0], f"the first column of {Path(train_s.value).name}")
        else:
            raise ConfigError("pass --metadata-id-column: the metadata CSV's column of image ids")
    sources["metadata_id_column"] = id_s
    rows = None if train is None else train.head(3)
    if columns_s is not None:
        columns = tuple(_column(c, train, columns_s.source) for c in _column_list(columns_s.value, columns_s.source))
        sources["metadata_columns"] = Sourced([f"{c.name} ({c.kind}, {c.width})" for c in columns], columns_s.source)
        width = sum(c.width for c in columns)
        metadata = Metadata(str(file_s.value), str(id_s.value), columns, None, width)
        return DeclaredMetadata(metadata, sources, rows)
    if train is None:
        raise ConfigError(f"the metadata encoder from {encoder_s.source} is checked on the training metadata: pass "
                          "--train-metadata (a CSV with the test metadata's columns)")
    code = code_io.freeze(encoder_s.value, encoder_s.source, bundle)
    replay = code_io.replay(bundle, code)
    with tempfile.TemporaryDirectory(prefix="metadata-check-") as tmp, user_code.imported(code, bundle) as module:
        table = train.assign(path=str(_placeholder_image(Path(tmp))))
        try:
            out = np.asarray(user_code.attribute(module, code)(table), dtype=np.float64)
        except Exception as e:
            raise ConfigError(f"the metadata encoder {encoder_s.value} fails on {train_s.value}: {type(e).__name__}: {e}") from None
    width = 1 if out.ndim == 1 else out.shape[1]
    metadata = Metadata(str(file_s.value), str(id_s.value), (), code, width)
    try:
        meta_io.run_encoder(lambda t: out, train, str(id_s.value), width, Path(train_s.value))
    except InputError as e:
        raise ConfigError(f"the metadata encoder {encoder_s.value}: {e}") from None
    sources["metadata_encoder"] = Sourced(f"{encoder_s.value} ({width} features)", encoder_s.source)
    return DeclaredMetadata(metadata, sources, rows, replay.distributions)
