"""``builder pack --html``: each fold and its checks, where each setting came from, the image's layers and their
sizes, what the slim environment left out, the smoke run, and where the image runs with no arguments."""

from __future__ import annotations

from pathlib import Path

from builder.pack.describe import fold_checks, fold_summary, settings_rows
from builder.report import plots
from builder.report.page import Page, esc, figure, items, paragraph, size, table


def _folds(result) -> list[str]:
    parts = []
    for f in result.bundle.folds:
        parts.append(f"<h3>{esc(f.name)}</h3>" + paragraph(fold_summary(f)) + items(fold_checks(f)))
    return parts


def _layers(result) -> list[str]:
    env, image = result.env, result.image
    sizes = env.layer_sizes if len(env.layer_sizes) == len(env.layers) else (0,) * len(env.layers)
    above = [(f"environment: {name}", n) for name, n in zip(env.layers, sizes)]
    above += [(layer.name, layer.size) for layer in image.layers]
    layers = []
    if image.size and all(above_size for _, above_size in above):
        layers.append((f"base: {env.base.name}", max(image.size - sum(n for _, n in above), 0)))
    layers += above
    parts = [paragraph(f"{image.tag}: {image.spec.id} ({size(image.size)}), environment {env.tag} "
                       f"({'built' if env.built else 'cached'}) on {env.base.name} ({env.base.id[:19]})")]
    if layers and all(n for _, n in layers):
        parts.append(figure(plots.layer_sizes(layers), "bottom layer first"))
    parts.append(table(("layer", "size"), [(name, size(n) if n else "not recorded") for name, n in layers],
                       numeric=(1,)))
    parts.append(paragraph(f"pins: {image.labels.get('submission.pins', '')}", muted=True))
    return parts


def _left_out(result) -> list[str]:
    env = result.env
    if env.full:
        return [paragraph("--full-env: every file of the environment's packages is kept")]
    if not env.left_out:
        return [paragraph("nothing was left out")]
    rows = sorted(env.left_out.items(), key=lambda kv: -kv[1])
    return [paragraph(f"left out what inference never loads: {size(sum(env.left_out.values()))} (--full-env keeps it)"),
            table(("why", "size"), [(why, size(n)) for why, n in rows], numeric=(1,))]


def _run(result) -> list[str]:
    smoke, entry = result.smoke, result.bundle.manifest.entry
    lines = [f"smoke run: not run: {smoke.skipped}" if smoke.skipped else
             f"smoke run: {smoke.rows} images in {smoke.seconds:.1f} s (no network, read-only root)",
             f"runs on {entry.platform} with no arguments: {entry.mode} mode, input {entry.input}, output {entry.output}"]
    if result.exported is not None:
        lines += [f"exported {p.name} ({size(result.exported.sizes[p.name])})" for p in result.exported.files]
        lines += [f"upload {note}" for note in result.exported.notes]
    return [items(lines)]


def pack_page(result) -> Page:
    """The page of a ``builder.pipeline.pack`` result (a bundle alone when it was packed with --bundle-only)."""
    bundle = result.bundle
    title = f"pack: {result.image.tag}" if result.image is not None else f"pack: bundle {bundle.path}"
    page = Page(title, f"{len(bundle.folds)} fold(s), bundle {size(bundle.size)}", "built", kind="passed")
    page.section("Folds", *_folds(result), anchor="folds")
    page.section("Settings", table(("setting", "value", "source"), settings_rows(bundle), detail=(1,)),
                 anchor="settings")
    if result.image is not None:
        page.section("Image layers", *_layers(result), anchor="layers")
        page.section("Slim environment", *_left_out(result), anchor="slim")
        page.section("Runs", *_run(result), anchor="runs")
    return page


def write_pack_page(result, path: Path) -> None:
    pack_page(result).write(path)
