"""The task, decided by one function from what is known, each kind of evidence in a fixed order: pack (the options,
the models' heads, the sample, what the training recorded), validate (the options, the sample) and scoring (the
true labels, last). It says why, and, where nothing decides, says so (or pack's caller asks for --task).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from builder.sample import Sample
from submission import formats
from submission.manifest import TASKS


@dataclass(frozen=True)
class Decided:
    task: str | None  # None: open (what is known fits more than one task)
    why: str
    k: int = 1  # names per row a top-k sample implies
    sample_why: str = ""  # what the sample said, when it left the task open


def decide(*, given: tuple[str, str] | None = None, outputs: tuple[int, ...] | None = None,
           recorded: list[tuple[str, str]] = (), sample: Sample | None = None,
           classes: tuple[str, ...] | None = None, top_k: tuple[int, str] | None = None,
           labels: pd.DataFrame | None = None, default: str | None = None) -> Decided:
    """The task from, in this order: ``given`` (task, source); the heads' sizes ``outputs`` (one output: a
    sigmoid, or a regression where the training recorded so; several heads: multiclass); the sample's layout; a
    ``top_k`` given (a ranked top-k); what the training ``recorded`` ((task, where) of its args, the out-of-fold
    rows); the true ``labels`` (one column: several names per cell that are no class name make it multilabel);
    else ``default``, or open."""
    if given is not None:
        task, source = given
        if task not in TASKS:
            raise ValueError(f"task from {source} is {task!r}; expected one of: {', '.join(TASKS)}")
        return Decided(task, source)
    hint = next(iter(recorded), None)
    if outputs is not None and outputs == (1,):
        if hint is not None and hint[0] == "regression":
            return Decided("regression", hint[1])
        return Decided("multilabel", "the models have one output: a sigmoid, the probability of the positive class")
    if outputs is not None and len(outputs) > 1:
        if hint is not None and hint[0] == "multilabel":
            return Decided("multilabel", hint[1])
        return Decided("multiclass", f"{len(outputs)} heads combine into composite classes")
    found = formats.sample_task(sample, classes) if sample is not None else None
    k = found.k if found is not None else 1
    where = f"{sample.path.name}: " if sample is not None else ""
    if found is not None and found.task is not None:
        return Decided(found.task, where + found.why, k)
    if top_k is not None:
        return Decided("multiclass", f"{top_k[1]}: a ranked top-k", k)
    known = [r for r in recorded if r[0] != "regression"]
    sample_why = found.why if found is not None else ""
    if known:
        task, source = known[0]
        return Decided(task, f"{source} ({where.rstrip(': ')} {sample_why})" if sample_why else source, k)
    if labels is not None and labels.shape[1] == 1:
        several = any(len(str(c).split()) > 1 and str(c).strip() not in (classes or ()) for c in labels.iloc[:, 0])
        return Decided("multilabel" if several else "multiclass",
                       "the labels name several classes per row" if several else "the labels name one class per row", k)
    if default is not None and found is None:
        return Decided(default, f"default ({'no sample' if sample is None else 'the sample says nothing'}, and "
                                "nothing the training left says otherwise)", k)
    return Decided(None, sample_why or "nothing says", k, sample_why)
