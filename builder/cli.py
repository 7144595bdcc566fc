"""``builder``: the host-side CLI. Each command parses its options, calls one library function, prints.

Imports are lazy: a command imports its library when it runs, so ``builder --help``, ``builder validate
--csv`` and ``builder thresholds`` never load torch. Every error the libraries raise becomes a message and an
exit code in ``_errors`` (codes in ``builder.errors``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from builder import __version__
from builder.errors import CHECK_FAILED, KNOWN, UNDECIDED, exit_code
from builder.metrics import NAMES as METRICS
from builder.pack.settings import SETTINGS
from builder.report.page import size as _size

app = typer.Typer(
    help="Pack k-fold checkpoints into an offline Docker image that writes a competition submission CSV.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
DEFAULT_TAG = "submission"


def _say(text: str) -> None:
    """Print text as it is (no rich markup: paths and logs hold brackets)."""
    console.print(text, markup=False, highlight=False)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """The one error funnel: a known error is printed as one line and exits with its class's code."""
    try:
        yield
    except KNOWN as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(exit_code(e)) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"builder {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Pack fold checkpoints into a submission image, then run it the way a leaderboard does."""


def _report(bundle: Any) -> None:
    from builder.pack.describe import fold_checks, fold_summary, settings_rows

    for f in bundle.folds:
        _say(fold_summary(f))
        for line in fold_checks(f)[1:]:  # the first was said as the fold was checked
            _say(f"  {line}")
    table = Table(title="where each setting came from", title_justify="left")
    for column in ("setting", "value", "source"):
        table.add_column(column, overflow="fold")
    for row in settings_rows(bundle):
        table.add_row(*map(Text, row))
    console.print(table)
    _say(f"bundle: {bundle.path} ({_size(bundle.size)}, {len(bundle.folds)} fold(s))")


def _setting_parameters() -> list[inspect.Parameter]:
    """One keyword parameter of ``pack`` per declared setting (None: not given on the command line)."""
    parameters = []
    for s in SETTINGS:
        if not s.cli:
            continue
        default = f" Default: {s.default}." if s.default is not None and s.type is not bool else ""
        option = typer.Option(None, *(s.flag or s.option).split(" "), help=s.help + default)
        annotation = Optional[list[str]] if s.type is list else Optional[s.type]
        parameters.append(inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return parameters


def _pack(models: Path, config: Optional[Path], bundle_dir: Optional[Path], bundle_only: bool, tag: str,
          base_image: Optional[str], full_env: bool, verbose: bool, settings: dict[str, Any],
          export_to: Optional[Path] = None, html: Optional[Path] = None) -> Any:
    """``pack`` and ``export``: the pipeline, then its report."""
    from builder.image.base import default_base
    from builder.pack.describe import fold_checks
    from builder.pack.resolve import PackRequest
    from builder.pipeline import pack as pack_folds

    request = PackRequest(models=models, options=settings, config=config)
    with _errors():
        result = pack_folds(
            request, tag=tag, base_image=base_image or default_base(), full_env=full_env,
            bundle_dir=bundle_dir, bundle_only=bundle_only, phase=console.status,
            log=_say if verbose else (lambda line: None), say=_say, export_to=export_to,
            on_fold=lambda fold: _say(f"checked {fold.name}: {fold_checks(fold)[0]}"),
        )
    _report(result.bundle)
    if result.image is not None:
        env, image, smoke = result.env, result.image, result.smoke
        _say(f"environment: {env.tag} ({'built' if env.built else 'cached'}) on {env.base.name} ({env.base.id[:19]}), "
             f"layers {', '.join(env.layers)}")
        if env.left_out:
            parts = ", ".join(f"{why} {_size(n)}" for why, n in sorted(env.left_out.items(), key=lambda kv: -kv[1]))
            _say(f"left out what inference never loads ({_size(sum(env.left_out.values()))}; --full-env keeps it): {parts}")
        _say(f"pins: {image.labels['submission.pins']}")
        if smoke.skipped:
            _say(f"smoke run: not run: {smoke.skipped}")
        else:
            _say(f"smoke run: {smoke.rows} images in {smoke.seconds:.1f}s (no network, read-only root)")
        entry = result.bundle.manifest.entry
        _say(f"runs on {entry.platform} with no arguments: {entry.mode} mode, input {entry.input}, output {entry.output}")
        typer.echo(f"built {image.tag}: {image.spec.id} ({_size(image.size)})")
    if html is not None:
        from builder.report.pack_page import write_pack_page

        write_pack_page(result, html)
        _say(f"report page: {html}")
    return result


def pack(
    models: Path = typer.Option(..., "--models", help="Folder of fold checkpoints (files, or one sub-folder per fold), or one checkpoint."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML or JSON file of settings: the names of these options, with underscores."),
    bundle_only: Optional[Path] = typer.Option(None, "--bundle-only", help="Write the bundle to this folder and stop (no Docker needed)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Also keep the bundle in this folder (to run `python -m submission` on the host)."),
    tag: str = typer.Option(DEFAULT_TAG, help="Tag of the image to build."),
    base_image: Optional[str] = typer.Option(None, help="Base image with python3, never pulled (see `builder base`; default: python:X.Y-slim-bookworm of this Python)."),
    full_env: bool = typer.Option(False, "--full-env", help="Keep every file of the environment's packages (triton, headers, CUDA libraries nothing loads)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show pip's output."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the pack's report page here: one self-contained HTML file."),
    **settings: Any,
) -> None:
    """Freeze fold checkpoints, settings and the runtime into a reproducible submission image."""
    _pack(models, config, bundle_only or bundle, bundle_only is not None, tag, base_image, full_env, verbose, settings,
          html=html)


def export(
    out: Path = typer.Argument(..., metavar="OUT", help="The folder to write what the platform takes into."),
    models: Path = typer.Option(..., "--models", help="Folder of fold checkpoints (files, or one sub-folder per fold), or one checkpoint."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML or JSON file of settings: the names of these options, with underscores."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Also keep the bundle in this folder."),
    tag: str = typer.Option(DEFAULT_TAG, help="Tag of the image to build."),
    base_image: Optional[str] = typer.Option(None, help="Base image with python3, never pulled (see `builder base`)."),
    full_env: bool = typer.Option(False, "--full-env", help="Keep every file of the environment's packages."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show pip's output."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the pack's report page here: one self-contained HTML file."),
    **settings: Any,
) -> None:
    """Pack as `builder pack` does, then write what --platform takes: the image archive (its size checked against the
    platform's cap) and, where the platform takes the weights apart, the model tarball; for a platform that runs code
    (codabench, drivendata, dacon), its zip, and for kaggle its two datasets and the notebook, with no Docker needed."""
    result = _pack(models, config, bundle, False, tag, base_image, full_env, verbose, settings, export_to=out, html=html)
    for path in result.exported.files:
        _say(f"  {path} ({_size(result.exported.sizes[path.name])})")
    for note in result.exported.notes:
        _say(f"upload {note}")
    typer.echo(f"exported to {out}")


def verify(
    image: str = typer.Argument(..., help="The image to check, as the engine names it."),
    models: Path = typer.Option(..., "--models", help="The fold checkpoints it was packed from."),
    config: Optional[Path] = typer.Option(None, "--config", help="The settings file it was packed with."),
    base_image: Optional[str] = typer.Option(None, help="Base image to rebuild on (default: the one that the image's labels name by ID)."),
    full_env: bool = typer.Option(False, "--full-env", help="It was packed with --full-env."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show pip's output."),
    **settings: Any,
) -> None:
    """Rebuild the image that these inputs make and say whether IMAGE is exactly it (exit 1 where not)."""
    from builder.pack.resolve import PackRequest
    from builder.pipeline import verify as verify_image

    request = PackRequest(models=models, options=settings, config=config)
    with _errors():
        verdict = verify_image(request, image, base_image=base_image, full_env=full_env, phase=console.status,
                               log=_say if verbose else (lambda line: None), say=_say)
    if verdict.same:
        typer.echo(f"{image} is exactly the image these inputs make: {verdict.expected_id}")
        return
    _say(f"{image} ({verdict.actual_id}) is not the image these inputs make ({verdict.expected_id})")
    _say(f"first difference: {verdict.difference}")
    raise typer.Exit(CHECK_FAILED)


for _command in (pack, export, verify):  # every setting of the bundle is an option of each
    _command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p for p in inspect.signature(_command).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        + _setting_parameters()
    )
    app.command()(_command)


@app.command()
def base(
    tag: str = typer.Option("submission-base:bookworm", help="Tag of the base image to make."),
    suite: str = typer.Option("bookworm", help="Debian release to bootstrap."),
    mirror: Optional[str] = typer.Option(None, help="Debian mirror URL (default: debootstrap's)."),
) -> None:
    """Make a local base image (Debian minbase + python3 + venv) with debootstrap, for machines that cannot pull."""
    from builder.image.base import make_base
    from builder.image.engine import connect

    with _errors(), console.status(f"debootstrap {suite} and docker import as {tag}"):
        image_id = make_base(connect(), tag, suite, mirror)
    typer.echo(f"made {tag}: {image_id}")


def _print_report(report: Any) -> None:
    for note in report.inferred:
        _say(f"inferred: {note}")
    table = Table(title="checks", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for c in report.checks:
        result = "pass" if c.passed else {"warning": "warn", "undecided": "UNDECIDED"}.get(c.level, "FAIL")
        style = "green" if c.passed else {"warning": "yellow", "undecided": "bold yellow"}.get(c.level, "bold red")
        table.add_row(Text(c.name), Text(result, style=style), Text(c.detail))
    console.print(table)
    if report.run is not None:
        r = report.run
        memory = f", peak memory {_size(r.peak_memory_bytes)}" if r.peak_memory_bytes else ""
        _say(f"run: {'timed out' if r.timed_out else f'exit code {r.exit_code}'} after {r.seconds:.1f}s{memory}")
    if report.projection is not None:
        p = report.projection
        limit = f" ({p['fraction_of_limit']:.0%} of the limit)" if "fraction_of_limit" in p else ""
        _say(f"projected for {p['expected_rows']} rows: {p['projected_seconds']:.0f}s{limit}")
    if report.score is not None:
        s = report.score
        if s.per_class:
            per_class = Table(title="per class", title_justify="left")
            for column in ("class", "precision", "recall", "f1", "support"):
                per_class.add_column(column)
            for row in s.per_class:
                per_class.add_row(Text(str(row["class"])), f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                                  f"{row['f1']:.3f}", str(row["support"]))
            console.print(per_class)
        others = ", ".join(f"{k} {v:.4f}" for k, v in s.scores.items() if k != s.metric)
        if others:
            _say(f"other metrics: {others}")
        typer.echo(f"score: {s.metric} = {s.value:.4f}")


@app.command()
def validate(
    image: Optional[str] = typer.Argument(None, help="The submission image to run (omit it with --csv); for a platform that runs code, what `builder export` wrote (the zip; Kaggle's folder)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The test folder, mounted read-only at /data."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Check this CSV alone, without running an image."),
    sample_submission: Optional[Path] = typer.Option(None, "--sample-submission", help="The platform's sample (default: the one bundled in the image)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="True labels (id + class columns, or id + label column): the CSV is scored."),
    metric: Optional[str] = typer.Option(None, "--metric", help="The headline metric: " + ", ".join(METRICS) + "."),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", help="The wall-clock limit (9h, 20m, 90s): the run is stopped there and fails."),
    memory: Optional[str] = typer.Option(None, "--memory", help="The container's memory limit, e.g. 16g."),
    cpus: Optional[float] = typer.Option(None, "--cpus", help="The container's CPU limit."),
    gpus: bool = typer.Option(False, "--gpus", help="Give the container every GPU (NVIDIA container toolkit)."),
    expected_rows: Optional[int] = typer.Option(None, "--expected-rows", help="Rows of the hidden test set (default: the sample's)."),
    task: Optional[str] = typer.Option(None, "--task", help="With --csv: multiclass, multilabel or regression (default: every task the sample allows; a check they disagree on is undecided)."),
    output_format: Optional[str] = typer.Option(None, "--format", help="With --csv: the output format the sample is read as (default: every format it allows)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="With --csv and a label column: the class names a,b,c (or a file with one per line)."),
    top_k: int = typer.Option(1, "--top-k", help="With --csv: class names per row a top-k column may hold."),
    positive_class: Optional[str] = typer.Option(None, "--positive-class", help="With --csv: the class whose probability a single value column holds."),
    ignore_sample: bool = typer.Option(False, "--ignore-sample", help="--data is not the competition's test set (a held-out folder): the image predicts the images found, and the CSV is checked against --sample-submission."),
    platform: str = typer.Option("generic", "--platform", help="Replay this platform's run: its mounts, variables, flags, limits (the defaults of --time-limit, --cpus, --memory) and messages."),
    model: Optional[Path] = typer.Option(None, "--model", help="The model tarball `builder export` wrote, for an image packed for a platform that takes the weights apart."),
    base_image: Optional[str] = typer.Option(None, "--base-image", help="An export's run: the base of the pinned environment it runs in (default: pack's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Keep the run's output folder here."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write every check, figure and the score as JSON."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the report page here: one self-contained HTML file (checks, score, confusion, thresholds, time)."),
    oof: Optional[Path] = typer.Option(None, "--oof", help="Multilabel: out-of-fold probabilities (id + one column per class, as `builder thresholds` reads them): the page draws each class's F1 on them against its threshold."),
    oof_labels: Optional[Path] = typer.Option(None, "--oof-labels", help="The labels of --oof's ids (default: --labels)."),
    verbose: bool = typer.Option(True, "--log/--no-log", help="Stream the container's log."),
) -> None:
    """Run an image the way a leaderboard does and check its CSV (or check a CSV alone): exit 0 only if every check
    passes, 1 if one fails, 15 if one could not be decided from what it was told."""
    from builder.pack.settings import read_classes
    from builder.validate.expect import Told
    from builder.validate.report import ValidateRequest, write_report
    from builder.validate.report import validate as run_validation
    from builder.validate.run import parse_duration

    with _errors():
        told = Told(task=task, classes=read_classes(classes, "--classes") if classes else None, top_k=top_k,
                    positive_class=positive_class, format=output_format)
        request = ValidateRequest(
            image=image, csv=csv, data=data, sample=sample_submission, labels=labels, metric=metric,
            time_limit=parse_duration(time_limit) if time_limit else None, memory=memory, cpus=cpus, gpus=gpus,
            expected_rows=expected_rows, out_dir=out, told=told, ignore_sample=ignore_sample, platform=platform,
            model=model, oof=oof, oof_labels=oof_labels, base_image=base_image,
        )
        result = run_validation(request, log=(lambda line: _say(f"  | {line}")) if verbose else (lambda line: None))
        _print_report(result)
        if report is not None:
            write_report(result, report)
            _say(f"report: {report}")
        if html is not None:
            from builder.report.validate_page import write_validate_page

            write_validate_page(result, html)
            _say(f"report page: {html}")
    if result.verdict == "failed":
        failed = [c.name for c in result.checks if not c.passed and c.level == "error"]
        console.print(f"[bold red]FAILED:[/] {escape(', '.join(failed))}")
        raise typer.Exit(CHECK_FAILED)
    if result.verdict == "undecided":
        open_ = [c.name for c in result.checks if not c.passed and c.level == "undecided"]
        console.print(f"[bold yellow]UNDECIDED:[/] {escape(', '.join(open_))}: not passed; the detail of each names "
                      "the option that decides it")
        raise typer.Exit(UNDECIDED)
    typer.echo("passed")


@app.command()
def thresholds(
    oof: Path = typer.Option(..., "--oof", help="Out-of-fold probabilities: id + one column per class."),
    labels: Path = typer.Option(..., "--labels", help="True labels: id + 0/1 class columns, or id + space-separated names."),
    metric: str = typer.Option("f1", "--metric", help="F-beta to maximise: f1, f2, f0.5, ...; or qwk: cutoffs that cut "
                               "regression values into grades (--oof: id,value; --labels: id,grade)."),
    average: str = typer.Option("macro", "--average", help="macro, micro or samples."),
    out: Path = typer.Option(Path("thresholds.json"), "--out", help="JSON to write (builder pack --thresholds reads it)."),
) -> None:
    """Choose per-class thresholds (multilabel) or grade cutoffs (regression, --metric qwk) on out-of-fold predictions."""
    from builder.pack.thresholds import tune_cutoffs_file, tune_file, write_thresholds

    with _errors():
        tuned = tune_cutoffs_file(oof, labels) if metric.lower() == "qwk" else tune_file(oof, labels, metric, average)
        write_thresholds(tuned, out)
    if tuned.metric == "qwk":
        _say("cutoffs " + ", ".join(f"{t:.3f}" for t in tuned.thresholds))
        typer.echo(f"qwk: {tuned.before:.4f} at the midpoints -> {tuned.after:.4f} tuned; wrote {out}")
    else:
        _say(", ".join(f"{c} {t:.3f}" for c, t in zip(tuned.classes, tuned.thresholds)))
        typer.echo(f"{tuned.metric}: {tuned.before:.4f} at 0.5 -> {tuned.after:.4f} tuned; wrote {out}")


@app.command()
def plan(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="The bundle folder `builder pack --bundle` kept."),
    data: Path = typer.Option(..., "--data", help="A labelled held-out folder of images (not the hidden test set)."),
    labels: Path = typer.Option(..., "--labels", help="Their true labels: id + class columns, or id + label column."),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", help="The platform's limit (9h, 20m, 90s); default: the --platform profile's."),
    platform: str = typer.Option("generic", "--platform", help="The platform whose time limit applies."),
    expected_rows: Optional[int] = typer.Option(None, "--expected-rows", help="Rows of the hidden set (default: the bundled sample's, else the held-out folder's)."),
    margin: float = typer.Option(0.1, "--margin", help="The share of the limit kept free."),
    metric: Optional[str] = typer.Option(None, "--metric", help="accuracy (multiclass default), auc (multilabel default) or log_loss."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per batch of the measured run."),
    device: str = typer.Option("cpu", "--device", help="Where the measured run runs: cpu or cuda (plan on hardware like the platform's)."),
    top: int = typer.Option(10, "--top", help="Plans to list."),
    out: Path = typer.Option(Path("plan.yaml"), "--out", help="The chosen plan, as a config `builder pack --config` takes."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the plans' report page here: one self-contained HTML file."),
) -> None:
    """Measure each model and TTA view on a held-out folder, and list the best-scoring plans that fit the time limit
    on the hidden set; write the best as a pack config (TTA, folds left out, their drop order and the deadline)."""
    from builder import platforms
    from builder.errors import ConfigError
    from builder.plan import make_plan, write_config
    from builder.validate.run import parse_duration
    from submission.manifest import load_manifest

    with _errors():
        limit = parse_duration(time_limit) if time_limit else platforms.get(platform).limits.time_seconds
        if limit is None:
            raise ConfigError(f"the {platform} platform sets no time limit of its own: pass --time-limit")
        manifest = load_manifest(bundle)
        rows = expected_rows
        if rows is None and manifest.sample_submission is not None:
            with open(bundle / manifest.sample_submission.path, encoding="utf-8-sig") as f:
                rows = max(0, sum(1 for line in f if line.strip()) - 1)
        planned = make_plan(bundle, data, labels, limit, rows, margin, metric, batch_size, device)
        write_config(planned, out)
        if html is not None:
            from builder.report.plan_page import write_plan_page

            write_plan_page(planned, html)
            _say(f"report page: {html}")
    m = planned.measured
    _say(f"measured on {len(m.ids)} held-out images: start {m.start_seconds:.1f} s, decode {m.decode_seconds * 1e3:.1f} "
         f"ms/image; per image, each view: " + "; ".join(
             f"{spec.name} " + " ".join(f"{v} {s * 1e3:.1f} ms" for v, s in zip(m.views, m.seconds[i]))
             for i, spec in enumerate(m.manifest.models)))
    _say(f"as packed: {len(m.manifest.models)} model(s) x TTA {m.manifest.tta!r}: {planned.full.seconds:.0f} s, "
         f"{planned.metric} {planned.full.score:.4f}" + ("" if planned.full.seconds <= planned.budget else " (does not fit)"))
    table = Table("models", "TTA", "projected", planned.metric, "left of the limit", box=None)
    for c in planned.fitting[:top]:
        table.add_row(", ".join(c.names(m)), c.tta, f"{c.seconds:.0f} s", f"{c.score:.4f}",
                      f"{planned.limit - c.seconds:.0f} s ({1 - c.seconds / planned.limit:.0%})")
    console.print(table)
    typer.echo(f"best plan for {planned.rows} images within {planned.budget:.0f} s ({planned.limit:.0f} s less "
               f"{margin:.0%}): wrote {out}")
