"""A packed bundle in words, for people: what each fold is and how it was checked, and where each setting came from.
The terminal report (``builder pack``) and the report page (``--html``) both say it this way."""

from __future__ import annotations

from builder.pack.bundle import Bundle
from builder.pack.folds import Fold
from builder.pack.settings import SETTINGS


def fold_summary(f: Fold) -> str:
    """"fold0: resnet18, 10 outputs, input 224x224 (center crop 0.875, bicubic); weights: state_dict of fold0.pth"."""
    p = f.preprocess
    resize = "albumentations transform" if p.albumentations else f"{p.crop_mode} crop {p.crop_pct:g}, {p.interpolation}"
    heads = ", ".join(f"{h.name}={h.size}" for h in f.heads)
    outputs = f"{f.heads[0].size} outputs" if len(f.heads) == 1 else f"heads {heads}"
    return f"{f.name}: {f.arch}, {outputs}, input {p.size[0]}x{p.size[1]} ({resize}); weights: {f.entry} of {f.checkpoint}"


def fold_checks(f: Fold) -> list[str]:
    """What was checked of the fold and what was decided for it, a line each."""
    lines = [f"loads strictly into {f.arch}, weights finite" + (", runs a batch" if not f.unchecked else "")]
    if f.why:
        lines.append(f"chose {f.checkpoint.name}: {f.why}")
    lines.append(f"called as {f.call}")
    if f.engines:
        gate = f.spec.gate
        timed = ", ".join(f"{m.engine} {m.images_per_second:.1f} img/s" + ("" if m.passed else f" (fails: {m.why})")
                          for m in f.engines if m.images_per_second is not None)
        kept = f"runs on {f.spec.engine}" + (f": gate on {gate['images']} {gate['source']} images, largest "
                                             f"probability difference {gate['max_difference']:.1e} (tolerance "
                                             f"{gate['tolerance']:g}), argmax agrees" if gate else "")
        lines.append(kept + (f"; timed on this machine: {timed}" if timed else ""))
    if f.unchecked:
        lines.append(f.unchecked)
    if f.asked:
        lines.append(f"its constructor asked for {'; '.join(f.asked)}: none fetched; every parameter comes from the "
                     "checkpoint (strict load)")
    if f.dropped_keys:
        lines.append(f"left out {len(f.dropped_keys)} key(s) outside the model: {', '.join(f.dropped_keys[:6])}")
    return lines


def settings_rows(bundle: Bundle) -> list[tuple[str, str, str]]:
    """(setting, value, where it came from) of every setting the bundle was packed with; a per-fold setting whose
    folds differ has a row per value."""
    rows: list[tuple[str, str, str]] = []
    for s in SETTINGS:
        if s.per_fold:
            found = {(str(f.sources[s.name].value), f.sources[s.name].source) for f in bundle.folds if s.name in f.sources}
        elif s.name in bundle.settings:
            value = bundle.settings[s.name].value
            if isinstance(value, tuple) and len(value) > 12:
                value = f"{value[:12]} ... ({len(value)})"
            found = {(str(value), bundle.settings[s.name].source)}
        else:
            continue
        rows.extend((s.name, value, source) for value, source in sorted(found))
    for name in sorted(set(bundle.settings) - {s.name for s in SETTINGS}):  # derived: the columns of the CSV
        rows.append((name, str(bundle.settings[name].value), bundle.settings[name].source))
    return rows
