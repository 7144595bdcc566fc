"""The metadata settings -> the manifest's frozen metadata encoding, checked on the training metadata when given.

Declared columns (``--metadata-columns``, a list in the model's feature order) take what they leave open from
``--train-metadata``: a categorical's vocabulary (its values, sorted), a numeric's fill (the median) and, with
``normalize: true``, the shift and scale (mean and std). An encoder (``--metadata-encoder FILE.py:FUNCTION``) is
frozen like model code and imported; with ``--train-metadata`` it is run on it to learn and check its width, else
the width is ``--metadata-width`` or, when that is not given either, what the encoder returns at run time. The
metadata file's place (``--metadata-file``, relative to the test folder) is optional: without it, the run takes
``--metadata PATH``. Nothing is refitted at run time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from builder.errors import ConfigError
from builder.pack import code as code_io
from builder.pack.resolve import PackSettings
from builder.pack.settings import Sourced
from builder.sample import Sample
from submission import code as user_code
from submission.errors import InputError
from submission.inputs import metadata as meta_io
from submission.manifest import Code, Manifest, MetaColumn, Metadata

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


def declare(s: PackSettings, bundle: Path) -> DeclaredMetadata | None:
    """The metadata the models take, from the settings (None when no metadata is declared)."""
    if s.metadata_columns is None and s.metadata_encoder is None:
        return None
    train = _read_train(s.train_metadata.value if s.train_metadata else None)
    sources: dict[str, Sourced] = {}
    if s.metadata_file is not None:
        sources["metadata_file"] = s.metadata_file
    id_column = _id_column(s, train)
    sources["metadata_id_column"] = id_column
    file = s.metadata_file.value if s.metadata_file else None
    rows = None if train is None else train.head(3)
    if s.metadata_columns is not None:
        columns = tuple(_column(c, train, s.metadata_columns.source) for c in s.metadata_columns.value)
        sources["metadata_columns"] = Sourced([f"{c.name} ({c.kind}, {c.width})" for c in columns],
                                              s.metadata_columns.source)
        metadata = Metadata(file, str(id_column.value), columns, None, sum(c.width for c in columns))
        return DeclaredMetadata(metadata, sources, rows)
    encoder = s.metadata_encoder
    code = code_io.freeze(encoder.value, encoder.source, bundle)
    replay = code_io.replay(bundle, code)
    if train is None:
        width = s.metadata_width.value if s.metadata_width else None
        said = f"{width} features, from {s.metadata_width.source}" if width else "its width learned at run time"
        sources["metadata_encoder"] = Sourced(f"{encoder.value} ({said}; not run at pack time: no --train-metadata)",
                                              encoder.source)
        return DeclaredMetadata(Metadata(file, str(id_column.value), (), code, width), sources, None,
                                replay.distributions)
    width = _encoder_width(code, bundle, train, str(id_column.value), s)
    sources["metadata_encoder"] = Sourced(f"{encoder.value} ({width} features)", encoder.source)
    return DeclaredMetadata(Metadata(file, str(id_column.value), (), code, width), sources, rows, replay.distributions)


def _id_column(s: PackSettings, train: pd.DataFrame | None) -> Sourced:
    if s.metadata_id_column is not None:
        return s.metadata_id_column
    candidates = list(train.columns) if train is not None else []
    sample: Sample | None = s.sample
    if sample is not None and (train is None or sample.id_column in candidates):
        return Sourced(sample.id_column, f"the sample's id column ({sample.path.name})")
    if candidates:
        return Sourced(candidates[0], f"the first column of {s.train_metadata.value.name}")
    raise ConfigError("pass --metadata-id-column: the metadata CSV's column of image ids")


def _encoder_width(code: Code, bundle: Path, train: pd.DataFrame, id_column: str, s: PackSettings) -> int:
    """The encoder run on the training metadata: its width, checked against --metadata-width when given."""
    encoder, source = s.metadata_encoder, s.train_metadata.value
    with tempfile.TemporaryDirectory(prefix="metadata-check-") as tmp, user_code.imported(code, bundle) as module:
        table = train.assign(path=str(_placeholder_image(Path(tmp))))
        try:
            out = np.asarray(user_code.attribute(module, code)(table), dtype=np.float64)
        except Exception as e:
            raise ConfigError(f"the metadata encoder {encoder.value} fails on {source}: {type(e).__name__}: {e}") from None
    width = 1 if out.ndim == 1 else out.shape[1]
    if s.metadata_width is not None and s.metadata_width.value != width:
        raise ConfigError(f"the metadata encoder {encoder.value} returns {width} features per row of {source}, but "
                          f"{s.metadata_width.source} says {s.metadata_width.value}")
    try:
        meta_io.run_encoder(lambda t: out, train, id_column, width, Path(source))
    except InputError as e:
        raise ConfigError(f"the metadata encoder {encoder.value}: {e}") from None
    return width


def generated_metadata(manifest: Manifest, ids: list[str], rows: pd.DataFrame | None) -> pd.DataFrame:
    """Metadata rows for images generated to run the bundle on (the smoke run, an export's check): the training
    metadata's first rows, else the declared columns' fills."""
    meta = manifest.metadata
    if rows is not None and len(rows):
        table = pd.concat([rows] * len(ids), ignore_index=True).head(len(ids))
    else:
        table = pd.DataFrame({c.name: [c.categories[0] if c.kind == "categorical" else c.fill if c.kind == "numeric"
                                       else "group"] * len(ids) for c in meta.columns})
    return table.assign(**{meta.id_column: ids})
