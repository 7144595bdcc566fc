"""One submission run: bundle + test folder -> checked inputs -> predictions on every device -> the CSV, written
atomically; or one shard's values (``--shard``), and the merge of all shards into the CSV.

``python -m submission`` is a thin argument parser over ``run`` and ``merge``; benchmarks and tests call them
directly.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from submission import STARTED, interrupt, shards
from submission.devices import Job, has_torch, plan, score
from submission.devices import parse as device_list
from submission.ensemble import finish
from submission.errors import BundleError, InputError
from submission.formats import build_table
from submission.inputs import metadata as meta_io
from submission.inputs.images import IMAGE_SUFFIXES, TestSet, list_images, match_ids, report_skipped, warning_kinds
from submission.manifest import (
    IMAGE_BUNDLE_DIR,
    MANIFEST_NAME,
    Manifest,
    expand,
    load_manifest,
    resolve_file,
    sha256_file,
    verify_files,
)
from submission.models.engines import ENGINES
from submission.output import check_writable, problems_path_for, write_csv, write_json
from submission.progress import Progress
from submission.shards import parse_shard
from submission.tta import views_of

DEFAULT_BUNDLE = Path(IMAGE_BUNDLE_DIR)
DEFAULT_OUT = Path("/output/submission.csv")


@dataclass(frozen=True)
class Options:
    batch_size: int = 32  # images per batch; each model sees batch_size x TTA views per forward pass
    workers: int | None = None  # loader processes; None: one per available CPU (0 decodes in-process)
    devices: str | None = None  # "all" (every GPU it can drive, else the CPU), "cpu", "cuda", "0,1", "cpu,cpu", ...;
    # None: the manifest's entry says (packed with --devices cpu, the CPU)
    quiet: bool = False  # no progress or info lines on stderr (warnings are still shown)
    ignore_sample: bool = False  # predict the images found, in natural order, ignoring the bundled sample
    strict: bool = False  # an image that cannot be decoded is an error, not a row predicted from a blank image
    recursive: bool = False  # take images from sub-folders of the test folder too
    metadata: Path | None = None  # the metadata CSV (default: where the manifest says, in the test folder)
    metadata_missing: str = "error"  # an image without a metadata row: "error", or "fill" with the fill values
    shard: str | None = None  # "I/N", "auto" or "auto/N": predict one share of the ids (needs out_probs)
    out_probs: Path | None = None  # the folder for shard files (the CSV is written by ``merge``)
    deadline: float | None = None  # seconds from the start by which the file is written (0: none); None: the manifest's


@dataclass(frozen=True)
class Result:
    path: Path  # the CSV written (a shard file with --shard)
    rows: int
    columns: int
    device: str
    seconds: float  # prediction time (decode, models, merge), without model loading
    images_per_second: float
    problems: tuple[dict[str, str], ...]  # {"id", "file", "reason"} of each image predicted from a blank image
    problems_path: Path  # the JSON beside the CSV that lists them (written on every run)
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each stage, ``STAGES``' keys


# the stages of a run whose seconds ``Result.timings`` holds: start-up (from the process's start until every model is
# loaded), decode (waiting for the loader's batches), forward (the models and views of each batch, merged per batch),
# merge (the ensemble over the whole set), write (decisions, the CSV and the problems JSON)
STAGES = ("startup", "decode", "forward", "merge", "write")


def timing_line(timings: dict[str, float]) -> str:
    """"time: startup 2.1s, decode 0.4s, ..." (``builder validate`` reads it back from the log)."""
    return "time: " + ", ".join(f"{k} {timings[k]:.2f}s" for k in STAGES if k in timings)


def read_sample_ids(bundle: Path, manifest: Manifest) -> list[str] | None:
    """The ids of the bundled sample submission, as text exactly as written there."""
    if manifest.sample_submission is None:
        return None
    path = resolve_file(bundle, manifest.sample_submission)
    column = manifest.output.id_column
    try:
        sample = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=[column], encoding="utf-8-sig")
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise BundleError(f"cannot read the id column {column!r} of {path}: {e}") from None
    return sample[column].tolist()


def _metadata_features(manifest: Manifest, bundle: Path, test_dir: Path, ids: Sequence[str], paths: Sequence[Path],
                       options: Options) -> meta_io.Encoded | None:
    """The metadata features of every image, when the models take them: from --metadata, else where the platform
    says (the entry), else where the manifest says relative to the test folder."""
    if manifest.metadata is None:
        return None
    if options.metadata_missing not in ("error", "fill"):
        raise InputError(f"--metadata-missing is {options.metadata_missing!r}; expected error or fill")
    platform = expand(manifest.entry.metadata, os.environ) if manifest.entry.metadata else ""
    path = options.metadata or (Path(platform) if platform else None) or (
        Path(test_dir) / manifest.metadata.file if manifest.metadata.file else None)
    if path is None:
        raise InputError("the models take metadata features: pass the metadata CSV with --metadata PATH")
    return meta_io.encode(manifest.metadata, bundle, path, ids, paths, options.metadata_missing)


def info_for(options: Options) -> Callable[[str], None]:
    return (lambda message: None) if options.quiet else (lambda message: print(message, file=sys.stderr, flush=True))


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass
class Predicted:
    """The values of a test set (or one shard of it), and what the run met on the way."""

    ids: list[str]
    paths: list[Path]
    values: np.ndarray  # ``predict.empty_values``' shape
    report: dict[str, object]  # the problems JSON: undecodable images, skipped files, warnings, metadata
    problems: tuple[dict[str, str], ...]  # {"id", "file", "reason"} of each image predicted from a blank image
    where: str  # the devices, for people
    seconds: float  # prediction time, without model loading
    timings: dict[str, float]  # startup, decode and forward seconds (``STAGES``)


def open_bundle(bundle: Path, options: Options) -> Manifest:
    """The options checked, the manifest read, and every bundle file checked against its sha256."""
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.workers is not None and options.workers < 0:
        raise InputError(f"--workers must be 0 or more, got {options.workers}")
    manifest = load_manifest(bundle)
    verify_files(bundle, manifest)
    return manifest


def test_set(test_dir: Path, bundle: Path, manifest: Manifest, options: Options) -> TestSet:
    """The ids and files of the test folder, in the sample's order (or natural order, without a sample)."""
    sample_ids = None if options.ignore_sample else read_sample_ids(bundle, manifest)
    test = match_ids(list_images(test_dir, options.recursive), sample_ids)
    report_skipped(test.skipped)
    if not test.ids:
        raise InputError(f"no images found in {test_dir} (looked for {', '.join(IMAGE_SUFFIXES)}, any case)")
    return test


def predict_rows(manifest: Manifest, bundle: Path, test_dir: Path, test: TestSet, rows: list[int], options: Options,
                 shard: tuple[int, int] | None = None) -> Predicted:
    """The values of the test set's ``rows``, on every device the options allow."""
    info = info_for(options)
    ids, paths = [test.ids[r] for r in rows], [test.paths[r] for r in rows]
    # metadata is encoded over the whole test set (per-group counts, the encoder's path column), then selected
    encoded = _metadata_features(manifest, bundle, test_dir, test.ids, test.paths, options)
    asked = options.devices or manifest.entry.devices
    devices = device_list(asked, warn)
    if asked in ("all", "auto") and devices[0].type == "cpu":
        info("no GPU is visible: running on the CPU" if has_torch() else
             "running on the CPU: the image has no torch, as every model runs on an engine")
    if any(d.type == "cuda" for d in devices):
        engines = dict.fromkeys(m.engine for m in manifest.models if m.engine in ENGINES)
        on_cpu = [e for e in engines if not ENGINES[e].drives_gpus()]
        if on_cpu:
            warn(f"the models on {' and '.join(on_cpu)} run on the CPU, not on the GPU: the engine's installed "
                 "build has no GPU support (ONNX Runtime's CUDA provider is onnxruntime-gpu's)")
    loaders, threads = plan(devices, options.workers)
    deadline = deadline_of(manifest, options)
    job = Job(Path(bundle), tuple(paths), tuple(ids), encoded.features[rows] if encoded else None, options.batch_size,
              loaders, threads, options.strict, None if deadline is None else STARTED + deadline)
    where = ", ".join(str(d) for d in devices)
    info(
        f"{len(manifest.models)} model(s), TTA {manifest.tta!r} ({len(views_of(manifest.tta))} view(s)), merge "
        f"{manifest.merge!r}, on {where}, {len(ids)} image(s)"
        + (f" (shard {shard[0]} of {shard[1]})" if shard else "")
        + f", batch {options.batch_size}, {loaders} loader worker(s)" + (" per device" if len(devices) > 1 else "")
        + (f", deadline {deadline:g} s" if deadline is not None else "")
    )
    progress = Progress(len(ids), enabled=not options.quiet)

    def on_batch(n: int) -> None:
        interrupt.checkpoint()
        progress.update(n)

    ready = [time.time()]

    def on_ready() -> None:
        ready[0] = time.time()
        progress.restart()

    scores = score(manifest, job, devices, on_batch=on_batch, on_ready=on_ready, log=warn)
    seconds = time.perf_counter() - progress.start
    problems = tuple({"id": ids[i], "file": str(paths[i]), "reason": scores.problems[i]} for i in sorted(scores.problems))
    found = [{"file": str(paths[i]), "library": library, "message": message}
             for i in sorted(scores.warnings) for library, message in scores.warnings[i]]
    report = _problems_report(problems, test.skipped, encoded, found)
    if deadline is not None:
        report["watchdog"] = _watchdog_report(manifest, ids, scores.reduced, deadline)
    timings = {"startup": ready[0] - STARTED, "decode": scores.decode_seconds, "forward": scores.forward_seconds}
    return Predicted(ids, paths, scores.values, report, problems, where, seconds, timings)


def run(test_dir: Path, bundle: Path, out: Path, options: Options = Options()) -> Result:
    """Every image of ``test_dir`` -> the CSV at ``out`` (or, with ``--shard``, one shard's values)."""
    manifest = open_bundle(bundle, options)
    sharded = options.shard is not None or options.out_probs is not None
    if sharded and options.out_probs is None:
        raise InputError("--shard needs --out-probs DIR: the folder where the shards' files meet for the merge")
    shard = parse_shard(options.shard or "auto") if sharded else None
    if not sharded:
        check_writable(out)
    test = test_set(test_dir, bundle, manifest, options)
    rows = list(range(len(test.ids)))
    manifest_sha = sha256_file(Path(bundle) / MANIFEST_NAME)
    if shard is not None:
        rows = shards.rows_of(test.ids, *shard)
        if shards.finished(options.out_probs, *shard, manifest_sha, shards.digest(test.ids)):
            path = options.out_probs / shards.file_name(*shard)
            info_for(options)(f"shard {shard[0]}/{shard[1]} is already in {path}: nothing to do")
            return Result(path, len(rows), 0, "", 0.0, 0.0, (), path)
    p = predict_rows(manifest, bundle, test_dir, test, rows, options, shard)
    rate = len(p.ids) / p.seconds if p.seconds > 0 else 0.0
    if shard is not None:
        path = shards.write(options.out_probs, shards.Shard(
            shard[0], shard[1], manifest_sha, shards.digest(test.ids), len(test.ids), np.array(rows, dtype=np.int64),
            tuple(p.ids), p.values, p.report))
        return Result(path, len(p.ids), 0, p.where, p.seconds, rate, p.problems, path)
    merging = time.perf_counter()
    probs = finish(p.values, manifest.merge, np.array([m.weight for m in manifest.models]))
    writing = time.perf_counter()
    summary = _write(manifest, p.ids, probs, p.report, out, options.quiet)
    timings = {**p.timings, "merge": writing - merging, "write": time.perf_counter() - writing}
    return Result(path=Path(out), rows=len(p.ids), columns=len(manifest.output.columns), device=p.where,
                  seconds=p.seconds, images_per_second=rate, problems=p.problems, problems_path=summary,
                  timings=timings)


def probabilities(test_dir: Path, bundle: Path, options: Options = Options()) -> tuple[list[str], np.ndarray]:
    """The ids of ``test_dir``'s images and the ensemble's merged [N, C] probabilities for them, before any decision
    or format: what the CSV is made from."""
    manifest = open_bundle(bundle, options)
    test = test_set(test_dir, bundle, manifest, options)
    p = predict_rows(manifest, bundle, test_dir, test, list(range(len(test.ids))), options)
    return p.ids, finish(p.values, manifest.merge, np.array([m.weight for m in manifest.models]))


def deadline_of(manifest: Manifest, options: Options) -> float | None:
    """The run's deadline in seconds from the start: --deadline, else the manifest's; None: no watchdog."""
    seconds = options.deadline if options.deadline is not None else (manifest.deadline and manifest.deadline.seconds)
    if not seconds:
        return None
    if seconds < 0:
        raise InputError(f"--deadline is {seconds:g}; expected the seconds from the start (0: none)")
    if manifest.merge == "rank":
        raise InputError("--deadline cannot drop work under merge 'rank' (ranks are taken over the whole test set); "
                         "run without it (--deadline 0)")
    return seconds


def _watchdog_report(manifest: Manifest, ids: Sequence[str], reduced: dict, seconds: float) -> dict[str, object]:
    """What the watchdog did: the deadline, and which ids were predicted with which models and views."""
    by_plan: dict = {}
    for row in sorted(reduced):
        by_plan.setdefault(reduced[row], []).append(ids[row])
    return {"deadline_seconds": seconds, "drop_order": list(manifest.drop_order()),
            "reduced": [{**plan.describe(manifest), "ids": found} for plan, found in by_plan.items()]}


def _problems_report(problems: tuple[dict[str, str], ...], skipped: Sequence[Path],
                     encoded: meta_io.Encoded | None, found: list[dict[str, str]]) -> dict[str, object]:
    report: dict[str, object] = {"undecodable": list(problems), "skipped_files": [str(p) for p in skipped],
                                 "warnings": found}
    if encoded is not None:
        report["metadata"] = {"unknown_categories": encoded.unknown, "filled_ids": encoded.filled}
    return report


def _write(manifest: Manifest, ids: Sequence[str], probs: np.ndarray, report: dict, out: Path, quiet: bool) -> Path:
    """The CSV and the problems JSON beside it, each atomically; then the lines a person should read (with
    ``quiet``, the count of the image libraries' warnings only, not one line per kind)."""
    table = build_table(ids, probs, manifest)
    summary = problems_path_for(out)
    write_json(report, summary)
    write_csv(table, out, manifest.output.decimals)
    metadata = report.get("metadata") or {}
    for column, values in (metadata.get("unknown_categories") or {}).items():
        warn(f"metadata column {column!r}: {sum(values.values())} row(s) hold categories unseen at pack time "
              f"({', '.join(list(values)[:5])}); their one-hot is all zero")
    if metadata.get("filled_ids"):
        warn(f"{len(metadata['filled_ids'])} image(s) without a metadata row got the fill values (--metadata-missing fill)")
    found = report["warnings"]
    if found and not quiet:
        for kind in warning_kinds(found):
            warn(kind)
    if found:
        files = len({w["file"] for w in found})
        warn(f"the image libraries warned {len(found)} time(s) on {files} file(s); all are listed in {summary}")
    reduced = report.get("watchdog", {}).get("reduced", [])
    if reduced:
        warn(f"{sum(len(p['ids']) for p in reduced)} image(s) were predicted with fewer models or views to keep the "
             f"deadline; {summary} lists them")
    problems = report["undecodable"]
    if problems:
        listed = "; ".join(f"{p['id']} ({p['reason']})" for p in problems[:10])
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        warn(f"{len(problems)} image(s) could not be decoded and were predicted from a blank image: {listed}{more}. "
              f"All are listed in {summary}")
    return summary


def merge(folder: Path, bundle: Path, out: Path, options: Options = Options()) -> Result:
    """Every shard of ``folder`` -> the decisions and the CSV, as a single run would have written them."""
    manifest = load_manifest(bundle)
    verify_files(bundle, manifest)
    check_writable(out)
    start = time.perf_counter()
    merged = shards.merge(folder, sha256_file(Path(bundle) / MANIFEST_NAME))
    probs = finish(merged.values, manifest.merge, np.array([m.weight for m in manifest.models]))
    first = merged.problems[0]
    report: dict[str, object] = {
        "undecodable": [p for r in merged.problems for p in r["undecodable"]],
        "skipped_files": first["skipped_files"],
        "warnings": [w for r in merged.problems for w in r["warnings"]],
    }
    if "metadata" in first:  # metadata is encoded over the whole test set: alike in every shard
        report["metadata"] = first["metadata"]
    watched = [r["watchdog"] for r in merged.problems if "watchdog" in r]
    if watched:  # each shard kept its own deadline
        report["watchdog"] = {**watched[0], "reduced": [plan for w in watched for plan in w["reduced"]]}
    summary = _write(manifest, merged.ids, probs, report, out, options.quiet)
    info_for(options)(f"merged {len(merged.problems)} shard(s) of {len(merged.ids)} image(s)")
    seconds = time.perf_counter() - start
    return Result(Path(out), len(merged.ids), len(manifest.output.columns), "", seconds, 0.0,
                  tuple(report["undecodable"]), summary)
