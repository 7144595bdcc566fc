"""The output formats, one spec module each, and the submission table built through them.

``FORMATS`` maps a format name to its spec; ``register`` adds one (a new format is one new module and one
``register`` call, nothing else). Order matters for inference: the first format that fits a sample wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from submission.formats import binary, label, labels, onehot, probs, value
from submission.formats.base import Check, Context, Expectation, Format, ReadBack, SampleLike

if TYPE_CHECKING:
    from submission.manifest import Manifest

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


def infer(sample: SampleLike, context: Context) -> tuple[str, str]:
    """(format, reason): the first registered format that fits the sample in ``context``."""
    for spec in FORMATS.values():
        reason = spec.fits(sample, context)
        if reason is not None and (context.task is None or context.task in spec.tasks):
            return spec.name, reason
    task = f"a {context.task} task" if context.task else "any task"
    raise ValueError(f"no output format fits a sample with the columns {list(sample.columns)} for {task}")


def build_table(ids: Sequence[str], probs: np.ndarray, manifest: Manifest) -> pd.DataFrame:
    """The submission: one row per id, columns exactly ``manifest.output.columns``."""
    out = manifest.output
    if probs.shape != (len(ids), len(manifest.classes)):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(ids)} ids and {len(manifest.classes)} classes")
    columns = {out.id_column: pd.array(list(ids), dtype=object), **get(out.format).values(probs, manifest)}
    return pd.DataFrame(columns)[list(out.columns)]


__all__ = ["FORMATS", "Check", "Context", "Expectation", "Format", "ReadBack", "build_table", "get", "infer", "register"]
