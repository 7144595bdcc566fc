"""``builder validate --html``: the verdict and every check (failures first), the score with its per-class table, the
confusion matrix or the most confused pairs (multiclass), each class's F1 against its threshold (multilabel, when
there are probabilities), the run's time by stage and its peak memory, and the hidden set's projected time against the
platform's limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from builder import platforms
from builder.report import plots
from builder.report.page import Page, figure, items, paragraph, size, table, tag
from builder.validate.report import Report
from builder.validate.scoring import THRESHOLDS

MATRIX_UP_TO = 40  # classes drawn as a whole confusion matrix; above, the most confused pairs
PAIRS = 20  # confused pairs listed
CURVES = 24  # classes whose F1 curve is drawn (those whose threshold costs most first); every class is in the table
_ORDER = {"error": 0, "undecided": 1, "warning": 2}
_SHOWN = {"warning": ("warn", "warn"), "undecided": ("undecided", "undecided")}  # a level -> its tag's text and style


def _checks(report: Report) -> str:
    ordered = sorted(report.checks, key=lambda c: (c.passed, _ORDER.get(c.level, 3)))
    rows = [(tag("pass", "pass") if c.passed else tag(*_SHOWN.get(c.level, ("FAIL", "fail"))), c.name, c.detail)
            for c in ordered]
    open_ = [c.level for c in report.checks if not c.passed]
    summary = f"{len(report.checks)} checks: {open_.count('error')} failed, {open_.count('undecided')} undecided, " \
              f"{open_.count('warning')} warnings"
    notes = items(f"inferred: {note}" for note in report.inferred) if report.inferred else ""
    return paragraph(summary) + notes + table(("result", "check", "detail"), rows, detail=(2,))


def _score(report: Report) -> list[str]:
    s = report.score
    parts = [paragraph(f"{s.metric} = {s.value:.4f}"),
             table(("metric", "value"), [(k, f"{v:.4f}") for k, v in s.scores.items()], numeric=(1,))]
    if s.per_class:
        parts.append(table(("class", "precision", "recall", "F1", "support"),
                           [(r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"])
                            for r in s.per_class], numeric=(1, 2, 3, 4)))
    return parts


def _confusion(report: Report) -> list[str]:
    matrix = np.array(report.score.confusion)
    classes = [str(r["class"]) for r in report.score.per_class]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:PAIRS]
    pairs = [(classes[i], classes[j], int(off[i, j])) for i, j in zip(*np.unravel_index(order, off.shape)) if off[i, j]]
    parts = []
    if len(classes) <= MATRIX_UP_TO:
        parts.append(figure(plots.confusion(matrix, classes), "rows: the true class; columns: the predicted one"))
    elif pairs:
        parts.append(figure(plots.confused_pairs(pairs), f"the {len(pairs)} most confused pairs of {len(classes)} classes"))
    if pairs:
        support = matrix.sum(1)
        parts.append(table(("true", "predicted as", "images", "share of the true class"),
                           [(t, p, c, f"{c / support[classes.index(t)]:.1%}") for t, p, c in pairs], numeric=(2, 3)))
    else:
        parts.append(paragraph("no image was predicted as another class"))
    return parts


def _curves(report: Report, curves: list[dict], on: str) -> list[str]:
    """Each class's F1 against its threshold (those whose threshold costs most F1 first), and the table of all."""
    cost = sorted(curves, key=lambda c: -(c["best_f1"] - c["f1_at_threshold"]))
    source = "the image's per-class thresholds" if report.thresholds else "0.5 (no per-class thresholds)"
    parts = [paragraph(f"F1 on {on}; the threshold used: {source}")]
    parts.append(figure(plots.threshold_curves(cost[:CURVES], THRESHOLDS, {c["class"]: c["threshold"] for c in curves}),
                        "" if len(curves) <= CURVES else f"the {CURVES} classes whose threshold costs most F1 of "
                                                         f"{len(curves)}; all are in the table"))
    parts.append(table(("class", "threshold used", "F1 there", "best threshold", "best F1"),
                       [(c["class"], f"{c['threshold']:.3f}", f"{c['f1_at_threshold']:.3f}", f"{c['best_threshold']:.2f}",
                         f"{c['best_f1']:.3f}") for c in cost], numeric=(1, 2, 3, 4)))
    return parts


def _time(report: Report) -> list[str]:
    run, split, p = report.run, report.time_split, report.projection
    limit = (report.limits or {}).get("time_limit")
    parts = []
    facts = [f"{'timed out' if run.timed_out else f'exit code {run.exit_code}'} after {run.seconds:.1f} s"]
    if run.peak_memory_bytes:
        facts.append(f"peak memory {size(run.peak_memory_bytes)}")
    parts.append(paragraph("; ".join(facts)))
    if split:
        projected = None
        if p:
            scale = p["expected_rows"] / max(p["measured_rows"], 1)
            # as ``run.project`` projects: the prediction (decode and forward) scales with the rows, the rest not
            projected = {k: v * scale if k in ("decode", "forward") else v for k, v in split.items()}
        parts.append(figure(plots.time_split(split, projected, limit),
                            "start-up: the container's start, the imports and loading the models"))
        parts.append(table(("stage", "seconds", "share"),
                           [(k, f"{v:.2f}", f"{v / max(run.seconds, 1e-9):.1%}") for k, v in split.items()],
                           numeric=(1, 2)))
    if p:
        line = f"projected for {p['expected_rows']} rows: {p['projected_seconds']:.0f} s (measured on {p['measured_rows']})"
        if "fraction_of_limit" in p:
            line += f", {p['fraction_of_limit']:.0%} of the {limit:g} s limit"
        parts.append(paragraph(line))
    return parts


def _platform(report: Report) -> list[str]:
    platform = platforms.get(report.platform)
    limits = report.limits or {}
    time_limit, cpus = limits.get("time_limit"), limits.get("cpus")
    rows = [("platform", platform.title), ("time limit", f"{time_limit:g} s" if time_limit else "none"),
            ("memory", limits.get("memory") or "not limited"), ("CPUs", f"{cpus:g}" if cpus else "all"),
            ("GPU", "yes" if limits.get("gpus") else "no")]
    if platform.limits.gpus:
        rows.append(("the platform's GPU", ", ".join(platform.limits.gpus)))
    parts = [table(("limit", "this run"), rows)]
    if platform.unverified:
        parts.append(paragraph("not known for sure of this platform:") + items(platform.unverified))
    return parts


def validate_page(report: Report) -> Page:
    what = report.image or "a CSV checked alone"
    platform = platforms.get(report.platform)
    page = Page(f"validate: {what}", f"the run replayed for the {platform.name} platform ({platform.title})"
                if report.run else "",
                report.verdict)
    page.section("Checks", _checks(report), anchor="checks")
    if report.score is not None:
        page.section("Score", *_score(report), anchor="score")
        if report.score.confusion is not None:
            page.section("Confusion", *_confusion(report), anchor="confusion")
        if report.score.curves:
            page.section("Thresholds", *_curves(report, report.score.curves, "this CSV's probabilities and the labels"),
                         anchor="thresholds")
    if report.oof_curves:
        page.section("Thresholds on the out-of-fold predictions",
                     *_curves(report, report.oof_curves, "the out-of-fold probabilities (--oof) and their labels"),
                     anchor="oof")
    if report.run is not None:
        page.section("Time and memory", *_time(report), anchor="time")
        page.section("Limits", *_platform(report), anchor="limits")
    return page


def write_validate_page(report: Report, path: Path) -> None:
    validate_page(report).write(path)
