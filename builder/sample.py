"""The competition's sample_submission.csv -> id column, header, ids and cells, as text (the format specs read it).

Shared by pack (the format and columns to write) and validate (what a submission must look like)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from builder.errors import ConfigError


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
