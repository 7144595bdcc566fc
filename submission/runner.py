"""One submission run: bundle + test folder -> checked inputs -> predictions -> the CSV, written atomically.

``python -m submission`` is a thin argument parser over ``run``; benchmarks and tests call ``run`` directly.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from submission import predict as engine
from submission.errors import BundleError, InputError
from submission.formats import build_table
from submission.inputs import metadata as meta_io
from submission.inputs.images import IMAGE_SUFFIXES, TestSet, list_images, match_ids, report_skipped
from submission.manifest import (
    IMAGE_BUNDLE_DIR,
    Manifest,
    load_manifest,
    resolve_file,
    verify_files,
)
from submission.output import check_writable, problems_path_for, write_csv, write_json
from submission.progress import Progress

DEFAULT_BUNDLE = Path(IMAGE_BUNDLE_DIR)
DEFAULT_OUT = Path("/output/submission.csv")


@dataclass(frozen=True)
class Options:
    batch_size: int = 32  # images per batch; each model sees batch_size x TTA views per forward pass
    workers: int | None = None  # loader processes; None: one per available CPU (0 decodes in-process)
    device: str = "auto"  # "auto", "cpu" or "cuda"
    quiet: bool = False  # no progress or info lines on stderr (warnings are still shown)
    ignore_sample: bool = False  # predict the images found, in natural order, ignoring the bundled sample
    strict: bool = False  # an image that cannot be decoded is an error, not a row predicted from a blank image
    recursive: bool = False  # take images from sub-folders of the test folder too
    metadata: Path | None = None  # the metadata CSV (default: where the manifest says, in the test folder)
    metadata_missing: str = "error"  # an image without a metadata row: "error", or "fill" with the fill values


@dataclass(frozen=True)
class Result:
    path: Path  # the CSV written
    rows: int
    columns: int
    device: str
    seconds: float  # prediction time (decode, models, merge), without model loading
    images_per_second: float
    problems: tuple[dict[str, str], ...]  # {"id", "file", "reason"} of each image predicted from a blank image
    problems_path: Path  # the JSON beside the CSV that lists them (written on every run)


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


def _metadata_features(manifest: Manifest, bundle: Path, test_dir: Path, test: TestSet,
                       options: Options) -> meta_io.Encoded | None:
    """The metadata features of every image, when the models take them."""
    if manifest.metadata is None:
        return None
    if options.metadata_missing not in ("error", "fill"):
        raise InputError(f"--metadata-missing is {options.metadata_missing!r}; expected error or fill")
    path = options.metadata or (Path(test_dir) / manifest.metadata.file if manifest.metadata.file else None)
    if path is None:
        raise InputError("the models take metadata features: pass the metadata CSV with --metadata PATH")
    return meta_io.encode(manifest.metadata, bundle, path, test.ids, test.paths, options.metadata_missing)


def run(test_dir: Path, bundle: Path, out: Path, options: Options = Options()) -> Result:
    def info(message: str) -> None:
        if not options.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.workers is not None and options.workers < 0:
        raise InputError(f"--workers must be 0 or more, got {options.workers}")
    manifest = load_manifest(bundle)
    verify_files(bundle, manifest)
    check_writable(out)
    sample_ids = None if options.ignore_sample else read_sample_ids(bundle, manifest)
    test = match_ids(list_images(test_dir, options.recursive), sample_ids)
    report_skipped(test.skipped)
    if not test.ids:
        raise InputError(f"no images found in {test_dir} (looked for {', '.join(IMAGE_SUFFIXES)}, any case)")

    encoded = _metadata_features(manifest, bundle, test_dir, test, options)

    device = engine.select_device(options.device)
    if options.device == "auto" and device.type == "cpu":
        info("no GPU is visible: running on the CPU")
    workers = engine.available_cpus() if options.workers is None else options.workers
    groups = engine.load_groups(manifest, bundle, device)
    info(
        f"{len(manifest.models)} model(s) in {len(groups)} input group(s), TTA {manifest.tta!r} "
        f"({len(engine.views_of(manifest.tta))} view(s)), merge {manifest.merge!r}, on {device}, "
        f"{len(test.ids)} image(s), batch {options.batch_size}, {workers} worker(s)"
    )
    progress = Progress(len(test.ids), enabled=not options.quiet)
    batches = engine.loader(test.paths, groups, device=device, batch_size=options.batch_size, workers=workers,
                            strict=options.strict)
    probs, failed = engine.predict(manifest, groups, batches, len(test.paths), device=device,
                                   features=encoded.features if encoded else None, on_batch=progress.update, log=warn)
    seconds = time.perf_counter() - progress.start
    table = build_table(test.ids, probs, manifest)
    problems = tuple({"id": test.ids[i], "file": str(test.paths[i]), "reason": failed[i]} for i in sorted(failed))
    summary = problems_path_for(out)
    report: dict[str, object] = {"undecodable": list(problems), "skipped_files": [str(p) for p in test.skipped]}
    if encoded is not None:
        report["metadata"] = {"unknown_categories": encoded.unknown, "filled_ids": encoded.filled}
        for column, values in encoded.unknown.items():
            warn(f"metadata column {column!r}: {sum(values.values())} row(s) hold categories unseen at pack time "
                 f"({', '.join(list(values)[:5])}); their one-hot is all zero")
        if encoded.filled:
            warn(f"{len(encoded.filled)} image(s) without a metadata row got the fill values (--metadata-missing fill)")
    write_json(report, summary)
    write_csv(table, out, manifest.output.decimals)
    if problems:
        listed = "; ".join(f"{p['id']} ({p['reason']})" for p in problems[:10])
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        warn(f"{len(problems)} image(s) could not be decoded and were predicted from a blank image: {listed}{more}. "
             f"All are listed in {summary}")
    return Result(
        path=Path(out),
        rows=len(table),
        columns=len(table.columns),
        device=str(device),
        seconds=seconds,
        images_per_second=len(table) / seconds if seconds > 0 else 0.0,
        problems=problems,
        problems_path=summary,
    )
