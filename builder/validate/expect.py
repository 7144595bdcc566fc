"""What a submission CSV must look like: exactly what an image's manifest says, or, for a CSV checked alone, every
reading of the sample that the options allow (the format specs say which). Only the sample, the options and the
manifest decide: the file under check never chooses its own checks.

A CSV checked alone is checked under each reading, and each reading judged whole. When every reading passes, the
CSV passes; when every reading fails, it fails (each failure says under which reading); when one passes and another
does not, the checks they disagree on are *undecided*: what validate was told cannot decide them, and the detail
names the option that does (``--task``, ``--positive-class``, ``--classes``, ``--format``). Given that option, one
reading is left, and the CSV passes or fails.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from builder.errors import ConfigError
from builder.sample import Sample
from builder.task import decide
from submission import formats
from submission.formats.base import Check, Context, Expectation
from submission.manifest import Manifest


@dataclass(frozen=True)
class Told:
    """What validate was told of a CSV checked alone."""

    task: str | None = None  # --task
    classes: tuple[str, ...] | None = None  # --classes
    top_k: int = 1  # --top-k
    positive_class: str | None = None  # --positive-class
    format: str | None = None  # --format


def from_manifest(manifest: Manifest, sample: Sample) -> Expectation:
    return formats.get(manifest.output.format).expectation(manifest, sample)


def readings(sample: Sample, told: Told) -> list[Expectation]:
    """Every way the sample can be read with what validate was told (at least one)."""
    context = Context(task=told.task, top_k=told.top_k, positive_class=told.positive_class, classes=told.classes,
                      format=told.format)
    found = formats.readings(sample, context)
    if not found:
        said = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(told).items() if v not in (None, 1))
        raise ConfigError(f"{sample.path}: no output format reads a sample with the columns {list(sample.columns)}"
                          f"{f' with {said}' if said else ''}; pass --task or --format")
    return found


def notes(found: list[Expectation]) -> list[str]:
    """What was inferred, for the report."""
    if len(found) == 1:
        return [f"format {found[0].format!r}: {found[0].reading}"]
    return [f"the sample can be read {len(found)} ways; each check is made under each:"] + [
        f"  format {r.format!r}: {r.reading} (pick it with {r.decided_by})" for r in found]


def _verdict(checks: list[Check]) -> str:
    if any(not c.passed and c.level == "error" for c in checks):
        return "failed"
    return "undecided" if any(not c.passed and c.level == "undecided" for c in checks) else "passed"


def merge(per_reading: list[tuple[Expectation, list[Check]]]) -> list[Check]:
    """The checks of every reading as one list: what all readings agree on as it is; where they disagree, failed
    when every reading fails, else undecided, naming the options that pick a reading."""
    if len(per_reading) == 1:
        return per_reading[0][1]
    verdicts = [_verdict(checks) for _, checks in per_reading]
    names: list[str] = []
    for _, checks in per_reading:
        names += [c.name for c in checks if c.name not in names]
    merged = []
    for name in names:
        found = [(r, next((c for c in checks if c.name == name), None)) for r, checks in per_reading]
        warnings = [c for _, c in found if c is not None and c.level == "warning"]
        if warnings:
            merged.append(warnings[0])
            continue
        failing = [(r, c) for r, c in found if c is not None and not c.passed]
        passing = [r for r, c in found if c is None or c.passed]
        if not failing:
            merged.append(next(c for _, c in found if c is not None))
        elif not passing:
            details = list(dict.fromkeys(c.detail for _, c in failing))
            level = "error" if any(c.level == "error" for _, c in failing) else "undecided"
            detail = details[0] if len(details) == 1 else "; ".join(f"read as {r.reading}: {c.detail}" for r, c in failing)
            merged.append(Check(name, False, detail, level))
        elif all(v == "failed" for v in verdicts):
            merged.append(Check(name, False, "; ".join(f"read as {r.reading}: {c.detail}" for r, c in failing)))
        else:
            fails = "; ".join(f"fails read as {r.reading} ({c.detail})" for r, c in failing)
            passes = "; ".join(f"passes read as {r.reading}" for r in passing)
            options = " or ".join(dict.fromkeys(r.decided_by for r in [*passing, *(r for r, _ in failing)]))
            merged.append(Check(name, False, f"{passes}; {fails}; say which with {options}", level="undecided"))
    return merged


def for_scoring(found: list[Expectation], checks_of: dict[int, list[Check]], truth: pd.DataFrame | None) -> Expectation:
    """The reading to score under: the one whose checks all pass; among several, the one whose task the labels
    decide."""
    passing = [r for i, r in enumerate(found) if all(c.passed or c.level == "warning" for c in checks_of[i])]
    if len(passing) <= 1 or truth is None:
        return (passing or found)[0]
    decided = decide(labels=truth, classes=passing[0].classes)
    same = [r for r in passing if r.task == decided.task]
    chosen = (same or passing)[0]
    return replace(chosen, top_k=1) if decided.task == "multilabel" else chosen
