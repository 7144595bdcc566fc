"""``builder plan --html``: what was measured, the bundle as packed, and the plans that fit the limit (a table and a
picture of score against projected time)."""

from __future__ import annotations

from pathlib import Path

from builder.report import plots
from builder.report.page import Page, figure, paragraph, table


def plan_page(planned, top: int = 20) -> Page:
    """The page of a ``builder.plan.make_plan`` result."""
    m = planned.measured
    fits = planned.fitting
    page = Page(f"plan: {len(m.manifest.models)} model(s) x TTA {m.manifest.tta!r}",
                f"{planned.rows} images within {planned.budget:.0f} s ({planned.limit:.0f} s less the margin)",
                "a plan fits" if fits else "nothing fits", kind="passed" if fits else "failed")
    per_view = [(spec.name, *(f"{s * 1e3:.1f}" for s in m.seconds[i])) for i, spec in enumerate(m.manifest.models)]
    page.section("Measured", paragraph(
        f"on {len(m.ids)} held-out images: start {m.start_seconds:.1f} s, decode {m.decode_seconds * 1e3:.1f} ms an "
        "image; ms an image for each model and view:"),
        table(("model", *m.views), per_view, numeric=tuple(range(1, len(m.views) + 1))), anchor="measured")
    packed = planned.full
    page.section("Plans", paragraph(
        f"as packed: {packed.seconds:.0f} s, {planned.metric} {packed.score:.4f}"
        + ("" if packed.seconds <= planned.budget else " (does not fit)")),
        figure(plots.plans([(c.seconds, c.score) for c in fits], (packed.seconds, packed.score), planned.budget,
                           planned.limit, planned.metric)),
        table(("models", "TTA", "projected", planned.metric, "left of the limit"),
              [(", ".join(c.names(m)), c.tta, f"{c.seconds:.0f} s", f"{c.score:.4f}",
                f"{planned.limit - c.seconds:.0f} s ({1 - c.seconds / planned.limit:.0%})") for c in fits[:top]],
              numeric=(2, 3, 4)), anchor="plans")
    return page


def write_plan_page(planned, path: Path) -> None:
    plan_page(planned).write(path)
