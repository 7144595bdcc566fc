"""What every output format spec provides, and the pieces the specs share (checks, cell parsing, listings).

A format spec owns everything about one submission layout: the tasks it serves, its header, how it is inferred
from a sample submission, how a table is written from probabilities, how a CSV of it is checked the way a
leaderboard checks it, and how such a CSV is read back into a matrix for scoring. Specs are pure numpy/pandas:
the builder imports them without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from submission.manifest import Manifest

INTEGER = re.compile(r"[+-]?\d+")
SHOW = 5  # how many offending cells a check lists before "and N more"


class SampleLike(Protocol):
    """What a spec reads of a sample submission (``builder.pack.sample.Sample``)."""

    columns: tuple[str, ...]
    id_column: str
    values: pd.DataFrame  # every column but the id column, as text

    @property
    def value_columns(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Check:
    name: str  # as platforms name it: "CSV not found", "wrong columns", "empty values", ...
    passed: bool
    detail: str = ""  # what is wrong, with the rows and columns at fault
    level: str = "error"  # "error" fails the submission; "warning" is reported and passes


@dataclass(frozen=True)
class Expectation:
    """What a submission CSV must look like: from an image's manifest, or from a sample and options."""

    columns: tuple[str, ...]  # the header the platform expects, in order
    id_column: str
    ids: tuple[str, ...]  # the ids it expects (the sample's), in order
    format: str  # a registered format name
    task: str  # "multiclass" or "multilabel"
    classes: tuple[str, ...] | None  # class names, when known: label cells must be one of them
    label_as: str = "name"  # "name" or "index"


@dataclass(frozen=True)
class ReadBack:
    """A checked submission turned back into matrices over the classes, row by row."""

    decisions: np.ndarray  # [N, C] 0/1: the classes the submission predicts
    probabilities: np.ndarray | None = None  # [N, C] floats, where the format holds them


def show(items: list) -> str:
    text = ", ".join(str(x) for x in items[:SHOW])
    return text + (f" and {len(items) - SHOW} more" if len(items) > SHOW else "")


def line(row: int) -> int:
    """CSV line number of data row ``row`` (the header is line 1)."""
    return int(row) + 2


def cells_at(values: pd.DataFrame, mask: np.ndarray, columns: list[str]) -> list[str]:
    rows, cols = np.nonzero(mask)
    return [f"line {line(r)} column {columns[c]!r} = {values.iat[r, c]!r}" for r, c in zip(rows, cols)]


def is_integer_text(values: pd.DataFrame) -> bool:
    cells = [v for column in values.columns for v in values[column] if v != ""]
    return all(INTEGER.fullmatch(v) for v in cells)


def one_hot(indices: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(indices), n), dtype=np.int64)
    out[np.arange(len(indices)), indices] = 1
    return out


class Format:
    """Base of the format specs; each spec module defines one subclass and registers one instance of it."""

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]  # the tasks whose probabilities this format can write
    summary: ClassVar[str]  # one line for --help and the README: the sample header and a row
    per_class_columns: ClassVar[bool]  # one column per class (else one value column)

    # --- the contract --------------------------------------------------------------------------------------
    def header(self, id_column: str, classes: tuple[str, ...]) -> tuple[str, ...]:
        """The header written when no sample submission gives one."""
        return (id_column, *classes) if self.per_class_columns else (id_column, "label")

    def check_manifest(self, manifest: Manifest) -> str | None:
        """Why the manifest's output settings do not fit this format (None when they do)."""
        o = manifest.output
        if manifest.decision.top_k != 1 and not self.writes_top_k(manifest):
            return f"top_k applies to the 'labels' format of multiclass tasks, not to {self.name!r}"
        if self.per_class_columns:
            if sorted(o.columns[1:]) != sorted(manifest.classes):
                return (f"format {self.name!r} needs one column per class; columns {list(o.columns[1:])} "
                        f"do not match classes {list(manifest.classes)}")
        elif len(o.columns) != 2:
            return f"format {self.name!r} writes two columns, not {list(o.columns)}"
        return None

    def writes_top_k(self, manifest: Manifest) -> bool:
        """Whether this format writes the ``top_k`` most probable classes."""
        return False

    # --- pack: from a sample -------------------------------------------------------------------------------
    def fits(self, sample: SampleLike, task: str) -> str | None:
        """Why ``sample`` calls for this format for ``task`` (None when it does not)."""
        raise NotImplementedError

    # --- run: probabilities -> table -----------------------------------------------------------------------
    def values(self, probs: np.ndarray, manifest: Manifest) -> dict[str, Any]:
        """The value columns of the submission, by column name, from [N, C] probabilities."""
        raise NotImplementedError

    # --- validate: a CSV of this format --------------------------------------------------------------------
    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        """Checks of the value cells (text, as read), each failure naming lines and columns."""
        raise NotImplementedError

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        """The decisions (and probabilities) of a CSV that passed ``check``."""
        raise NotImplementedError

    def default_metric(self, task: str) -> str:
        return "accuracy"

    def empty_cells_allowed(self, exp: Expectation) -> bool:
        """Whether an empty value cell is a valid answer in this format (multilabel: no class predicted)."""
        return False
