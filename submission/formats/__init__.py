"""The output formats, one spec module each, and the submission table built through them.

``FORMATS`` maps a format name to its spec; ``register`` adds one (a new format is one new module and one
``register`` call, nothing else). Every format-specific decision goes through these functions and the specs:
what a sample says of the task (``sample_task``), the ways a sample can be read (``readings``; ``choose`` takes the
one that fits, or names the options that pick among several), the format written without a sample (``default``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from submission.formats import binary, label, labels, onehot, probs, value
from submission.formats.base import (
    Ambiguous,
    Check,
    Context,
    Expectation,
    Format,
    ManifestLike,
    ReadBack,
    SampleLike,
    SampleTask,
)

FORMATS: dict[str, Format] = {}


def register(spec: Format, first: bool = False) -> Format:
    """Add a format; ``first`` puts it ahead of the others when a sample is matched to a format."""
    if first:
        rest = {name: f for name, f in FORMATS.items() if name != spec.name}
        FORMATS.clear()
        FORMATS.update({spec.name: spec, **rest})
    else:
        FORMATS[spec.name] = spec
    return spec


for _module in (value, binary, labels, label, onehot, probs):  # inference order: the most specific first
    register(_module.FORMAT)


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown output format {name!r}; expected one of: {', '.join(FORMATS)}") from None


def sample_task(sample: SampleLike, classes: tuple[str, ...] | None = None) -> SampleTask | None:
    """What the sample's layout says of the task (the first format whose layout it is), or None."""
    for spec in FORMATS.values():
        found = spec.sample_task(sample, classes)
        if found is not None:
            return found
    return None


def readings(sample: SampleLike, context: Context) -> list[Expectation]:
    """Every way the sample can be read in ``context``, over every format, in registry order."""
    return [r for spec in FORMATS.values() for r in spec.readings(sample, context)
            if context.task is None or r.task in (None, context.task)]


def choose(sample: SampleLike, context: Context) -> Expectation:
    """The one reading of the sample in ``context``; ``Ambiguous`` names the options that pick among several, and a
    ValueError says that none fits."""
    found = readings(sample, context)
    if len(found) == 1:
        return found[0]
    if found:
        raise Ambiguous("the sample can be read in several ways: " + "; ".join(
            f"{r.reading} (say so with {r.decided_by})" for r in found))
    task = f"a {context.task} task" if context.task else "any task"
    raise ValueError(f"no output format fits a sample with the columns {list(sample.columns)} for {task}")


def infer(sample: SampleLike, context: Context) -> tuple[str, str]:
    """(format, reason) of the one reading of the sample in ``context``."""
    chosen = choose(sample, context)
    return chosen.format, chosen.reading


def default(task: str, outputs: int, top_k: int = 1) -> str:
    """The format written for ``task`` when there is no sample."""
    for spec in FORMATS.values():
        if spec.default_for(task, outputs, top_k):
            return spec.name
    raise ValueError(f"no output format is the default for a {task} task")


def build_table(ids: Sequence[str], probs: np.ndarray, manifest: ManifestLike) -> pd.DataFrame:
    """The submission: one row per id, columns exactly ``manifest.output.columns``."""
    out = manifest.output
    if probs.shape != (len(ids), len(manifest.classes)):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(ids)} ids and {len(manifest.classes)} classes")
    columns = {out.id_column: pd.array(list(ids), dtype=object), **get(out.format).values(probs, manifest)}
    return pd.DataFrame(columns)[list(out.columns)]


__all__ = ["FORMATS", "Ambiguous", "Check", "Context", "Expectation", "Format", "ManifestLike", "ReadBack",
           "SampleTask", "build_table", "choose", "default", "get", "infer", "readings", "register", "sample_task"]
