"""What every output format spec provides, and the pieces the specs share (checks, cell parsing, listings).

A format spec owns everything about one submission layout: the tasks it serves, its header and defaults, what a
sample of its layout says of the task, every way a sample can be read as this format given what is known
(``readings``: pack takes the one reading, validate checks a CSV under each), how a table is written from
probabilities, how a CSV of it is checked the way a leaderboard checks it, and how such a CSV is read back for
scoring. Specs are pure numpy/pandas and sit below the bundle contract: they read a manifest through the
``ManifestLike`` protocol and import nothing of it, so the builder imports them without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

INTEGER = re.compile(r"[+-]?\d+")
SHOW = 5  # how many offending cells a check lists before "and N more"


class DecisionLike(Protocol):
    """What a spec reads of the manifest's decisions (``submission.manifest.Decision``)."""

    thresholds: tuple[float, ...]
    at_least_one: bool
    top_k: int
    positive_class: str | None
    cutoffs: tuple[float, ...]
    new_class: str | None
    new_threshold: float | None


class OutputLike(Protocol):
    """What a spec reads of the manifest's output settings (``submission.manifest.Output``)."""

    format: str
    id_column: str
    columns: tuple[str, ...]
    label_as: str
    decimals: int


class ManifestLike(Protocol):
    """What a spec reads of a bundle's manifest (``submission.manifest.Manifest``)."""

    task: str
    classes: tuple[str, ...]
    merge: str
    decision: DecisionLike
    output: OutputLike


class SampleLike(Protocol):
    """What a spec reads of a sample submission (``builder.sample.Sample``)."""

    columns: tuple[str, ...]
    id_column: str
    values: pd.DataFrame  # every column but the id column, as text

    @property
    def value_columns(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Context:
    """What is known besides the sample when a format is inferred: at pack time the task, the models' outputs and
    the options; when a CSV is validated alone, the options only. The file under check is never part of it: only
    the sample, the options and the manifest decide how a submission is read."""

    task: str | None = None  # None: not known
    outputs: int | None = None  # the number of classes the models' heads give (pack), None when validating
    top_k: int = 1
    positive_class: str | None = None
    classes: tuple[str, ...] | None = None  # the class names, when known
    format: str | None = None  # the format asked for (--format), None when it is to be inferred


@dataclass(frozen=True)
class SampleTask:
    """What a sample's layout says of the task."""

    task: str | None  # None: the layout fits more than one task
    why: str
    k: int = 1  # names per row, for a sample whose every row names k classes


@dataclass(frozen=True)
class Check:
    name: str  # as platforms name it: "CSV not found", "wrong columns", "empty values", ...
    passed: bool
    detail: str = ""  # what is wrong, with the rows and columns at fault
    level: str = "error"  # "error" fails the submission; "warning" is reported and passes; "undecided": what it
    # was told cannot decide it (the detail names the option that does), and the submission does not pass


@dataclass(frozen=True)
class Expectation:
    """What a submission CSV must look like: from an image's manifest, or inferred from a sample and options."""

    columns: tuple[str, ...]  # the header the platform expects, in order
    id_column: str
    ids: tuple[str, ...]  # the ids it expects (the sample's), in order
    format: str  # a registered format name
    task: str | None  # "multiclass", "multilabel", "regression", or None when it cannot be told
    classes: tuple[str, ...] | None  # class names, when known: label cells must be one of them
    label_as: str = "name"  # "name" or "index"
    top_k: int = 1  # names per row a multiclass "labels" cell may hold
    positive_class: str | None = None  # "binary": the class whose probability the column holds
    grades: bool = False  # "value": the cells are integer grades (a regression cut at cutoffs)
    probability: bool = True  # "value": False when the column may hold any number; "binary": always True
    notes: tuple[str, ...] = field(default=())  # what was inferred, and why, for the report
    reading: str = ""  # how this reads the sample's layout, e.g. "one value column: the positive class's probability"
    decided_by: str = ""  # the option that picks this reading when the sample allows several, e.g. "--task regression"


@dataclass(frozen=True)
class ReadBack:
    """A checked submission read back for scoring; each format fills what it holds."""

    decisions: np.ndarray | None = None  # [N, C] 0/1 over the classes: what the submission predicts
    probabilities: np.ndarray | None = None  # [N, C] floats, where the format holds them
    scores: np.ndarray | None = None  # [N] the positive class's probability ("binary")
    values: np.ndarray | None = None  # [N] numbers or grades ("value")
    ranked: list[list[str]] | None = None  # the class names of each row, best first ("labels" top-k)


class Ambiguous(ValueError):
    """The sample allows several readings and nothing known picks one; the message names the options that do."""


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


def numeric(column: pd.Series) -> pd.Series | None:
    """The column's cells as numbers, or None when any is not a number."""
    parsed = pd.to_numeric(column, errors="coerce")
    return None if parsed.isna().any() else parsed


def tokens(cell: str, classes: tuple[str, ...] | None, several: bool) -> list[str]:
    """The class tokens of one cell: the whole cell when it is a known class name (a name may hold spaces) or when
    a cell holds one label; else its space-separated names."""
    cell = cell.strip()
    if not cell:
        return []
    if not several or (classes is not None and cell in classes):
        return [cell]
    return cell.split()


def one_hot(indices: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(indices), n), dtype=np.int64)
    out[np.arange(len(indices)), indices] = 1
    return out


def one_column(sample: SampleLike) -> pd.Series | None:
    """The sample's only value column, or None when it has several."""
    return sample.values.iloc[:, 0] if len(sample.value_columns) == 1 else None


def number_checks(values: pd.DataFrame, what: str, low: float | None = None, high: float | None = None) -> list[Check]:
    """Every cell a finite number (in [low, high] when given)."""
    columns = list(values.columns)
    parsed = values.apply(pd.to_numeric, errors="coerce")
    blank = values.apply(lambda col: col.str.strip() == "").to_numpy()
    bad = parsed.isna().to_numpy() & ~blank
    if bad.any():
        return [Check("wrong type", False, f"{what} cells must be numbers: {show(cells_at(values, bad, columns))}")]
    array = parsed.to_numpy(dtype=float)
    problems = ~np.isfinite(array) & ~blank
    if low is not None:
        problems |= (array < low) | (array > high)
    rows, cols = np.nonzero(problems)
    where = [f"line {line(r)} column {columns[c]!r} = {values.iat[r, c]}" for r, c in zip(rows, cols)]
    bounds = f"outside [{low:g}, {high:g}]" if low is not None else "not finite"
    detail = f"{what}s {bounds}: {show(where)}" if where else ""
    return [Check("wrong type", True), Check("invalid values", not detail, detail)]


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

    def check_manifest(self, manifest: ManifestLike) -> str | None:
        """Why the manifest's output settings do not fit this format (None when they do)."""
        o, d = manifest.output, manifest.decision
        if d.top_k != 1 and not self.writes_top_k(manifest):
            return f"top_k applies to the 'labels' format of multiclass tasks, not to {self.name!r}"
        if d.new_class is not None and not self.writes_top_k(manifest):
            return f"new_class applies to the 'labels' format of multiclass tasks, not to {self.name!r}"
        if manifest.merge == "rank" and not self.accepts_ranks(manifest.task):
            return (f"merge 'rank' writes percentile ranks, which format {self.name!r} of a {manifest.task} task "
                    "cannot hold; it suits 'binary' and multilabel 'probs' (scored by ROC AUC)")
        if self.per_class_columns:
            if sorted(o.columns[1:]) != sorted(manifest.classes):
                return (f"format {self.name!r} needs one column per class; columns {list(o.columns[1:])} "
                        f"do not match classes {list(manifest.classes)}")
        elif len(o.columns) != 2:
            return f"format {self.name!r} writes two columns, not {list(o.columns)}"
        return None

    def writes_top_k(self, manifest: ManifestLike) -> bool:
        """Whether this format writes the ``top_k`` most probable classes."""
        return False

    def accepts_ranks(self, task: str) -> bool:
        """Whether percentile ranks (merge 'rank') are valid cells of this format."""
        return False

    def default_for(self, task: str, outputs: int, top_k: int) -> bool:
        """Whether this is the format written for ``task`` when no sample submission gives one."""
        return False

    # --- pack and validate: from a sample ------------------------------------------------------------------
    def sample_task(self, sample: SampleLike, classes: tuple[str, ...] | None) -> SampleTask | None:
        """What the sample says of the task when its layout is this format's (None: not this format's layout)."""
        return None

    def fits(self, sample: SampleLike, context: Context) -> str | None:
        """Why ``sample`` calls for this format in ``context`` (None when it does not); a spec that can read a
        sample in several ways overrides ``readings`` instead."""
        return None

    def readings(self, sample: SampleLike, context: Context) -> list[Expectation]:
        """Every way ``sample`` can be read as this format in ``context``, each with why and the option that picks
        it; empty when the sample is not of this format."""
        reason = self.fits(sample, context)
        if reason is None:
            return []
        classes = sample.value_columns if self.per_class_columns else context.classes
        return [Expectation(sample.columns, sample.id_column, sample.ids, self.name, context.task or self.tasks[0],
                            classes, top_k=context.top_k, positive_class=context.positive_class, reading=reason,
                            decided_by=f"--format {self.name}")]

    def expectation(self, manifest: ManifestLike, sample: SampleLike) -> Expectation:
        """What a CSV written from ``manifest`` must look like, against ``sample``'s header and ids."""
        d = manifest.decision
        return Expectation(sample.columns, sample.id_column, sample.ids, self.name, manifest.task, manifest.classes,
                           manifest.output.label_as, top_k=d.top_k, positive_class=d.positive_class,
                           grades=bool(d.cutoffs), probability=manifest.task != "regression")

    def positive_class(self, given: str | None, classes: tuple[str, ...], task: str) -> tuple[str | None, str]:
        """The class whose probability a single value column holds, and why (formats of all classes: none)."""
        return None, "not used"

    # --- run: probabilities -> table -----------------------------------------------------------------------
    def values(self, probs: np.ndarray, manifest: ManifestLike) -> dict[str, Any]:
        """The value columns of the submission, by column name, from [N, C] probabilities (values, for regression)."""
        raise NotImplementedError

    # --- validate: a CSV of this format --------------------------------------------------------------------
    def check(self, values: pd.DataFrame, exp: Expectation) -> list[Check]:
        """Checks of the value cells (text, as read), each failure naming lines and columns."""
        raise NotImplementedError

    def read_back(self, values: pd.DataFrame, exp: Expectation) -> ReadBack:
        """What a CSV that passed ``check`` predicts."""
        raise NotImplementedError

    def default_metric(self, exp: Expectation) -> str:
        return "accuracy"

    def empty_cells_allowed(self, exp: Expectation) -> bool:
        """Whether an empty value cell is a valid answer in this format (multilabel: no class predicted)."""
        return False
