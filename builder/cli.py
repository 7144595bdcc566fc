"""``builder``: the host-side CLI. Each command parses its options, calls one library function, prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from builder import __version__
from builder.bundle import Bundle, PackRequest
from builder.errors import BuilderError
from builder.folds import Fold
from builder.pack import pack as pack_folds
from submission.errors import SubmissionError

app = typer.Typer(
    help="Pack k-fold timm checkpoints into an offline Docker image that writes a competition submission CSV.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
DEFAULT_TAG = "submission"


def _default_base() -> str:
    """The official slim Python image of the host's Python minor version."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim-bookworm"


def _say(text: str) -> None:
    """Print text as it is (no rich markup: paths and logs hold brackets)."""
    console.print(text, markup=False, highlight=False)


def _fail(error: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(getattr(error, "exit_code", 1))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"builder {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Pack fold checkpoints into a submission image, then run it the way a leaderboard does."""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GB"


def _report(bundle: Bundle) -> None:
    for f in bundle.folds:
        p = f.preprocess
        resize = "albumentations transform" if p.albumentations else f"{p.crop_mode} crop {p.crop_pct:g}, {p.interpolation}"
        _say(f"{f.name}: {f.arch}, {f.num_classes} classes, input {p.size[0]}x{p.size[1]} ({resize}); "
             f"weights: {f.entry} of {f.checkpoint}")
        if f.dropped_keys:
            _say(f"  left out {len(f.dropped_keys)} key(s) outside the model: {', '.join(f.dropped_keys[:6])}")
    settings = Table(title="where each setting came from", title_justify="left")
    for column in ("setting", "value", "source"):
        settings.add_column(column, overflow="fold")
    for name in ("arch", "num_classes", "input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std", "model_kwargs"):
        rows = {(str(f.sources[name].value), f.sources[name].source) for f in bundle.folds if name in f.sources}
        for value, source in sorted(rows):
            settings.add_row(Text(name), Text(value), Text(source))
    for name, s in bundle.settings.items():
        value = s.value if not isinstance(s.value, tuple) or len(s.value) <= 12 else f"{s.value[:12]} ... ({len(s.value)})"
        settings.add_row(Text(name), Text(str(value)), Text(s.source))
    console.print(settings)
    _say(f"bundle: {bundle.path} ({_size(bundle.size)}, {len(bundle.folds)} fold(s))")


@app.command()
def pack(
    models: Path = typer.Option(..., "--models", help="Folder of fold checkpoints (files, or one sub-folder per fold), or one checkpoint."),
    sample_submission: Optional[Path] = typer.Option(None, "--sample-submission", help="The competition's sample_submission.csv: fixes the id column, columns, format and row order."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML or JSON file of settings (same names as these options, with underscores)."),
    arch: Optional[str] = typer.Option(None, help="timm model name for every fold (default: what the checkpoints record)."),
    num_classes: Optional[int] = typer.Option(None, help="Classes of the model head (default: from the checkpoint's classifier)."),
    img_size: Optional[str] = typer.Option(None, help="Model input size: 384, or 384,512 for height,width."),
    crop_pct: Optional[float] = typer.Option(None, help="Fraction kept by the eval centre crop, in (0, 1]; 1.0 with --crop-mode squash is a plain resize."),
    crop_mode: Optional[str] = typer.Option(None, help="center, squash or border (timm's eval crop modes)."),
    interpolation: Optional[str] = typer.Option(None, help="Resize filter: bilinear, bicubic, nearest, box, hamming, lanczos."),
    mean: Optional[str] = typer.Option(None, help="Normalisation mean, three numbers: 0.485,0.456,0.406."),
    std: Optional[str] = typer.Option(None, help="Normalisation std, three numbers."),
    model_kwargs: Optional[str] = typer.Option(None, help="Extra timm.create_model arguments as JSON, e.g. '{\"img_size\": 384}'."),
    albumentations: Optional[Path] = typer.Option(None, help="JSON file of A.to_dict(eval_transform), used instead of timm's resize and normalisation."),
    task: Optional[str] = typer.Option(None, help="multiclass (default) or multilabel."),
    classes: Optional[str] = typer.Option(None, help="Class names in model output order: a,b,c or a file with one per line."),
    id_column: Optional[str] = typer.Option(None, help="Name of the id column (default: the sample's first column)."),
    format: Optional[str] = typer.Option(None, "--format", help="Output format: label, onehot, probs, labels (default: inferred from the sample)."),
    label_as: Optional[str] = typer.Option(None, help="What label cells hold: name or index (default: inferred from the sample)."),
    tta: Optional[str] = typer.Option(None, help="TTA preset: none (default), hflip, vflip, flips, d4."),
    merge: Optional[str] = typer.Option(None, help="Merge of folds and views: mean (default), gmean, logits."),
    thresholds: Optional[Path] = typer.Option(None, help="Per-class thresholds (multilabel): JSON list or {class: t}, or CSV class,threshold."),
    oof: Optional[Path] = typer.Option(None, "--oof", help="Out-of-fold probabilities (id + class columns): tune the thresholds on them (macro F1; see `builder thresholds`)."),
    oof_labels: Optional[Path] = typer.Option(None, "--oof-labels", help="True labels of --oof."),
    at_least_one: Optional[bool] = typer.Option(None, "--at-least-one/--no-at-least-one", help="Multilabel: give a row with no class above its threshold its most probable class."),
    top_k: Optional[int] = typer.Option(None, help="Multiclass 'labels' format: class names per row."),
    decimals: Optional[int] = typer.Option(None, help="Digits after the decimal point in probability cells (default 6)."),
    fold_weights: Optional[str] = typer.Option(None, help="Ensemble weight of each fold, in fold order: 1,1,2."),
    pick: Optional[str] = typer.Option(None, help="File name pattern choosing the checkpoint in each fold's folder, e.g. 'last.ckpt'."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use state_dict rather than state_dict_ema when a checkpoint has both."),
    allow_unsafe_pickle: bool = typer.Option(False, "--allow-unsafe-pickle", help="Read checkpoints that need full unpickling (runs code from the file: only for files you trust)."),
    bundle_only: Optional[Path] = typer.Option(None, "--bundle-only", help="Write the bundle to this folder and stop (no Docker needed)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Also keep the bundle in this folder (to run `python -m submission` on the host)."),
    tag: str = typer.Option(DEFAULT_TAG, help="Tag of the image to build."),
    base_image: str = typer.Option(_default_base(), help="Base image with python3 (never pulled; see `builder base`)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show pip's and Docker's build logs."),
) -> None:
    """Freeze fold checkpoints, settings and the runtime into a reproducible submission image."""
    options = dict(
        arch=arch, num_classes=num_classes, img_size=img_size, crop_pct=crop_pct, crop_mode=crop_mode,
        interpolation=interpolation, mean=mean, std=std, model_kwargs=model_kwargs,
        albumentations=str(albumentations) if albumentations else None, task=task, classes=classes,
        id_column=id_column, format=format, label_as=label_as, tta=tta, merge=merge,
        thresholds=str(thresholds) if thresholds else None, at_least_one=at_least_one, top_k=top_k,
        decimals=decimals, fold_weights=fold_weights,
    )
    if (oof is None) != (oof_labels is None):
        _fail(BuilderError("--oof and --oof-labels go together"))
    request = PackRequest(
        models=models, options=options, config=config, sample_submission=sample_submission, pick=pick,
        oof=(oof, oof_labels) if oof is not None else None,
        use_ema=not no_ema, allow_unsafe_pickle=allow_unsafe_pickle,
    )
    try:
        result = pack_folds(
            request, tag=tag, base_image=base_image, bundle_dir=bundle_only or bundle,
            bundle_only=bundle_only is not None, phase=console.status,
            log=_say if verbose else (lambda line: None),
            on_fold=_fold_done,
        )
    except (BuilderError, SubmissionError) as e:
        _fail(e)
    _report(result.bundle)
    if result.image is not None:
        env, image, smoke = result.env, result.image, result.smoke
        _say(f"environment: {env.tag} ({'built' if env.built else 'cached'}) on {env.base}")
        _say(f"pins: {image.labels['submission.pins']}")
        _say(f"smoke run: {smoke.rows} images in {smoke.seconds:.1f}s (no network, read-only root)")
        typer.echo(f"built {image.tag}: {image.id} ({_size(image.size)})")


def _fold_done(fold: Fold) -> None:
    _say(f"checked {fold.name}: loads strictly into {fold.arch}, weights finite, runs a batch")


@app.command()
def base(
    tag: str = typer.Option("submission-base:bookworm", help="Tag of the base image to make."),
    suite: str = typer.Option("bookworm", help="Debian release to bootstrap."),
    mirror: Optional[str] = typer.Option(None, help="Debian mirror URL (default: debootstrap's)."),
) -> None:
    """Make a local base image (Debian minbase + python3 + venv) with debootstrap, for machines that cannot pull."""
    from builder.base import make_base
    from builder.image import connect

    try:
        with console.status(f"debootstrap {suite} and docker import as {tag}"):
            image_id = make_base(connect(), tag, suite, mirror)
    except BuilderError as e:
        _fail(e)
    typer.echo(f"made {tag}: {image_id}")


def _print_report(report) -> None:
    table = Table(title="checks", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for c in report.checks:
        result = "pass" if c.passed else ("warn" if c.level == "warning" else "FAIL")
        table.add_row(Text(c.name), Text(result, style="green" if c.passed else ("yellow" if c.level == "warning" else "bold red")),
                      Text(c.detail))
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
        per_class = Table(title="per class", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support"):
            per_class.add_column(column)
        for row in s.per_class:
            per_class.add_row(Text(str(row["class"])), f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                              f"{row['f1']:.3f}", str(row["support"]))
        console.print(per_class)
        others = ", ".join(f"{k} {v:.4f}" for k, v in s.scores.items() if k != s.metric)
        _say(f"other metrics: {others}")
        typer.echo(f"score: {s.metric} = {s.value:.4f}")


@app.command()
def validate(
    image: Optional[str] = typer.Argument(None, help="Submission image to run (omit with --csv)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Test folder, mounted read-only at /data."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Check this CSV alone, without running an image."),
    sample_submission: Optional[Path] = typer.Option(None, "--sample-submission", help="The platform's sample (default: the one bundled in the image)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="True labels (id + class columns, or id + label column): score the CSV."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Headline metric: accuracy, f1_macro, f1_micro, f1_weighted, f1_samples, f2_samples, log_loss, roc_auc_macro, ..."),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", help="Wall-clock limit (9h, 20m, 90s): the run is stopped there and fails."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Memory limit of the container, e.g. 16g."),
    cpus: Optional[float] = typer.Option(None, "--cpus", help="CPU limit of the container."),
    gpus: bool = typer.Option(False, "--gpus", help="Give the container every GPU (NVIDIA container toolkit)."),
    expected_rows: Optional[int] = typer.Option(None, "--expected-rows", help="Rows of the hidden test set (default: the sample's)."),
    task: Optional[str] = typer.Option(None, "--task", help="With --csv: multiclass (default) or multilabel."),
    classes: Optional[str] = typer.Option(None, "--classes", help="With --csv and a label column: class names a,b,c."),
    ignore_sample: bool = typer.Option(False, "--ignore-sample", help="--data is not the competition's test set (a held-out folder): the image predicts the images found; the CSV is checked against --sample-submission."),
    out: Optional[Path] = typer.Option(None, "--out", help="Keep the run's output folder here."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write every check, figure and the score as JSON."),
    verbose: bool = typer.Option(True, "--log/--no-log", help="Stream the container's log."),
) -> None:
    """Run an image the way a leaderboard does and check its CSV (or check a CSV alone); exit 0 only if all pass."""
    from builder.settings import read_classes
    from builder.validate import parse_duration, write_report
    from builder.validate import validate as run_validation

    try:
        result = run_validation(
            image=image, csv=csv, data=data, sample_path=sample_submission, labels=labels, metric=metric,
            time_limit=parse_duration(time_limit) if time_limit else None, memory=memory, cpus=cpus, gpus=gpus,
            expected_rows=expected_rows, out_dir=out, task=task,
            classes=read_classes(classes, "--classes") if classes else None, ignore_sample=ignore_sample,
            log=(lambda line: _say(f"  | {line}")) if verbose else (lambda line: None),
        )
    except (BuilderError, SubmissionError) as e:
        _fail(e)
    _print_report(result)
    if report is not None:
        write_report(result, report)
        _say(f"report: {report}")
    if not result.passed:
        failed = [c.name for c in result.checks if not c.passed and c.level == "error"]
        console.print(f"[bold red]FAILED:[/] {escape(', '.join(failed))}")
        raise typer.Exit(1)
    typer.echo("passed")


@app.command()
def thresholds(
    oof: Path = typer.Option(..., "--oof", help="Out-of-fold probabilities: id + one column per class."),
    labels: Path = typer.Option(..., "--labels", help="True labels: id + 0/1 class columns, or id + space-separated names."),
    metric: str = typer.Option("f1", "--metric", help="F-beta to maximise: f1, f2, f0.5, ..."),
    average: str = typer.Option("macro", "--average", help="macro, micro or samples."),
    out: Path = typer.Option(Path("thresholds.json"), "--out", help="JSON to write (builder pack --thresholds reads it)."),
) -> None:
    """Choose per-class thresholds for a multilabel task on out-of-fold predictions."""
    from builder.thresholds import tune_file, write_thresholds

    try:
        tuned = tune_file(oof, labels, metric, average)
        write_thresholds(tuned, out)
    except (BuilderError, SubmissionError) as e:
        _fail(e)
    _say(", ".join(f"{c} {t:.3f}" for c, t in zip(tuned.classes, tuned.thresholds)))
    typer.echo(f"{tuned.metric}: {tuned.before:.4f} at 0.5 -> {tuned.after:.4f} tuned; wrote {out}")
