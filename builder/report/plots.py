"""The report's figures, drawn with matplotlib without a display (its Figure object, no pyplot, no backend to pick)
and returned as inline SVG: text stays text (searchable, small), nothing refers to a file or a font to fetch, and
the same figures give the same bytes (no date, fixed ids)."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

STYLE = {"svg.fonttype": "none", "svg.hashsalt": "submission-report", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False}
STAGE_COLOURS = {"startup": "#8c959f", "decode": "#54aeff", "forward": "#0969da", "merge": "#8250df",
                 "write": "#bf8700"}


def svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element to put inline (no XML prologue, no DOCTYPE)."""
    out = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = out.getvalue()
    return re.sub(r"^.*?(?=<svg)", "", text, count=1, flags=re.S)


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), dpi=96, layout="constrained")


def confusion(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix, each row scaled to its true class's count (colour) with the counts written in when
    there are few classes; rows true, columns predicted."""
    n = len(classes)
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = min(max(3.2, 0.32 * n + 1.6), 11.0)
    fig = _figure(side + 1.0, side)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        shown = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8, label="share of the true class")
        ticks = np.arange(n)
        labels = [c if len(c) <= 18 else c[:17] + "…" for c in classes]
        ax.set_xticks(ticks, labels, rotation=90, fontsize=max(5, 9 - n // 10))
        ax.set_yticks(ticks, labels, fontsize=max(5, 9 - n // 10))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    if matrix[i, j]:
                        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                                color="white" if share[i, j] > 0.5 else "#1d2329")
    return svg(fig)


def confused_pairs(pairs: Sequence[tuple[str, str, int]]) -> str:
    """The most confused (true, predicted, count) pairs as bars, most first."""
    fig = _figure(7.5, 0.28 * len(pairs) + 0.9)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        names = [f"{t} → {p}" for t, p, _ in pairs][::-1]
        ax.barh(names, [c for _, _, c in pairs][::-1], color="#cf222e")
        ax.set_xlabel("images of the true class predicted as the other")
    return svg(fig)


def threshold_curves(curves: Sequence[dict], thresholds: Sequence[float], chosen: dict[str, float]) -> str:
    """Small multiples: each class's F1 against its threshold, the chosen threshold as a line, the best as a dot."""
    n = len(curves)
    columns = min(4, n)
    rows = -(-n // columns)
    fig = _figure(2.6 * columns, 1.9 * rows)
    with matplotlib.rc_context(STYLE):
        axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)).ravel()
        for ax, curve in zip(axes, curves):
            ax.plot(thresholds, curve["f1"], color="#0969da", linewidth=1.4)
            at = chosen.get(curve["class"], 0.5)
            ax.axvline(at, color="#cf222e", linewidth=1.0, linestyle="--")
            ax.plot([curve["best_threshold"]], [curve["best_f1"]], "o", color="#1a7f37", markersize=4)
            ax.set_title(curve["class"] if len(curve["class"]) <= 28 else curve["class"][:27] + "…", fontsize=8)
            ax.set_ylim(0, 1.02)
        for ax in axes[n:]:
            ax.set_visible(False)
        fig.supxlabel("threshold (dashed: the one used; dot: the best)")
        fig.supylabel("F1")
    return svg(fig)


def time_split(stages: dict[str, float], projected: dict[str, float] | None, limit: float | None) -> str:
    """The measured run by stage on its own scale, and (when known) the hidden set's projected run by stage against
    the limit on the limit's scale."""
    bars = [("this run", stages, None)] + ([("hidden set (projected)", projected, limit)] if projected else [])
    fig = _figure(8.0, 1.0 * len(bars) + 0.9)
    with matplotlib.rc_context(STYLE):
        axes = np.atleast_1d(fig.subplots(len(bars), 1, squeeze=False)).ravel()
        for ax, (name, parts, line) in zip(axes, bars):
            left = 0.0
            for stage, seconds in parts.items():
                ax.barh(0, seconds, left=left, color=STAGE_COLOURS.get(stage, "#57606a"), height=0.6,
                        label=stage if ax is axes[0] else None)
                left += seconds
            if line:
                ax.axvline(line, color="#cf222e", linewidth=1.5)
                ax.text(line, 0.42, f"limit {line:g} s ", color="#cf222e", ha="right", va="bottom")
                ax.set_xlim(0, max(line, left) * 1.02)
            ax.set_yticks([0], [name])
            ax.set_ylim(-0.5, 0.75)
        axes[-1].set_xlabel("seconds")
        axes[0].legend(ncols=len(STAGE_COLOURS), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return svg(fig)


def layer_sizes(layers: Sequence[tuple[str, int]]) -> str:
    """The image's layers by size, bottom first."""
    fig = _figure(7.5, 0.3 * len(layers) + 0.9)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        names = [name for name, _ in layers][::-1]
        ax.barh(names, [size / 1e6 for _, size in layers][::-1], color="#0969da")
        ax.set_xlabel("MB")
    return svg(fig)


def plans(points: Sequence[tuple[float, float]], packed: tuple[float, float], budget: float, limit: float,
          metric: str) -> str:
    """Every plan that fits as (projected seconds, score), the bundle as packed, the budget and the limit."""
    fig = _figure(7.5, 3.6)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        if points:
            ax.scatter([s for s, _ in points], [v for _, v in points], s=14, color="#0969da", label="plans that fit")
            best = points[0]
            ax.scatter([best[0]], [best[1]], s=60, facecolors="none", edgecolors="#1a7f37", linewidths=1.5,
                       label="the best")
        ax.scatter([packed[0]], [packed[1]], s=40, marker="x", color="#cf222e", label="as packed")
        ax.axvline(budget, color="#9a6700", linestyle="--", linewidth=1.0, label="limit less the margin")
        ax.axvline(limit, color="#cf222e", linewidth=1.2, label="limit")
        ax.set_xlabel("projected seconds on the hidden set")
        ax.set_ylabel(metric)
        ax.legend(frameon=False, fontsize=8)
    return svg(fig)
