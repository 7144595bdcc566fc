"""The competition's sample_submission.csv -> id column, header, ids and cells (the format specs read it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from builder.errors import ConfigError
from submission import formats
from submission.formats.base import INTEGER, Context
from submission.formats.probs import sums_to_one


@dataclass(frozen=True)
class Sample:
    path: Path
    columns: tuple[str, ...]  # the header, in order
    id_column: str
    ids: tuple[str, ...]  # the id column as written
    values: pd.DataFrame  # every other column, as text

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c != self.id_column)


def read_sample(path: Path, id_column: str | None = None) -> Sample:
    """Read the sample as text (ids like "001" stay as written) and check that it has an id column."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"cannot read the sample submission {path}: {e}") from None
    columns = tuple(str(c) for c in table.columns)
    if len(columns) < 2:
        raise ConfigError(
            f"the sample submission {path} has the columns {list(columns)}; it needs an id column and at least "
            "one prediction column"
        )
    if id_column is None:
        id_column = columns[0]
    elif id_column not in columns:
        raise ConfigError(f"--id-column {id_column!r} is not a column of {path}; its columns are {list(columns)}")
    ids = table[id_column]
    if (ids == "").any():
        row = int((ids == "").to_numpy().argmax()) + 2
        raise ConfigError(f"{path} line {row}: empty id in column {id_column!r}")
    repeated = ids[ids.duplicated()].unique().tolist()
    if repeated:
        raise ConfigError(
            f"column {id_column!r} of {path} repeats values ({repeated[:5]}), so it is not an id column; "
            "name the id column with --id-column"
        )
    return Sample(path, columns, id_column, tuple(ids), table.drop(columns=id_column))


def infer_label_as(sample: Sample, classes: tuple[str, ...]) -> tuple[str, str]:
    """Whether label cells are class names or indices, judged from the sample's own cells."""
    cells = {v for v in sample.values.iloc[:, 0] for v in v.split() if v}
    if not cells:
        return "name", "the sample's label column is empty"
    if cells <= set(classes):
        return "name", "the sample's label cells are class names"
    if all(INTEGER.fullmatch(c) for c in cells):
        return "index", "the sample's label cells are integers"
    return "name", "the sample's label cells are text"


def sample_task(sample: Sample) -> tuple[str | None, str, int]:
    """(task or None when the sample leaves it open, why, names per row for a top-k sample)."""
    if len(sample.value_columns) == 1:
        cells = list(sample.values.iloc[:, 0])
        counts = {len(cell.split()) for cell in cells}
        if max(counts, default=0) <= 1:
            return "multiclass", "one label per row", 1
        if len(counts) == 1:  # the whale sample (a ranked top 5) and Planet's (5 tags) look alike
            k = counts.pop()
            return None, f"every row names {k} classes (a ranked top {k}, or {k} labels)", k
        return "multilabel", "rows name varying numbers of classes", 1
    if formats.get("probs").fits(sample, Context()) is not None and sums_to_one(sample.values):
        return "multiclass", "its class columns sum to 1 in every row", 1
    kind = "0/1" if formats.get("onehot").fits(sample, Context()) else "probability"
    return None, f"has one {kind} column per class", 1
