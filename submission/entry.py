"""How the image answers on platforms that do not take a folder's CSV: image paths on stdin and one line per image
on stdout (``stream``, the AISG challenge), or one case and its JSON value (``case``, Grand Challenge).

- ``stream``: paths arrive on stdin, one per line, as they come; each batch is predicted as soon as no more lines
  are waiting (a platform may send one path and wait for its answer) or once it is full, and its lines are written
  and flushed in input order. A path that cannot be decoded is predicted from a blank image and still gets its
  line. Only answers go to stdout; every log goes to stderr.
- ``case``: the folder holds one case (its image under any sub-folder, as ``/input/images/<interface>/``); its
  answer is the format's one row as JSON (one value column: the bare value, such as a probability; several: an
  object of them), written atomically.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

import numpy as np

from submission import interrupt
from submission.devices import parse as device_list
from submission.ensemble import finish
from submission.errors import BundleError, InputError
from submission.formats import build_table
from submission.inputs.images import TestSet, list_images, natural_key
from submission.inputs.loader import DecodedImages, collate
from submission.manifest import Manifest
from submission.output import check_writable, write_json
from submission.predict import available_cpus, cpu_threads, load_groups, predict_batch
from submission.runner import Options, info_for, open_bundle, predict_rows, warn


def _waiting(stream: IO[str]) -> bool:
    """Whether another line can be read from ``stream`` without blocking."""
    try:
        return bool(select.select([stream], [], [], 0)[0])
    except (OSError, ValueError, TypeError):  # not a file (a test's StringIO): everything is there
        return True


def batches(stream: IO[str], size: int) -> Iterator[list[str]]:
    """The paths of ``stream`` in batches of at most ``size``, each handed on as soon as no more lines wait."""
    batch: list[str] = []
    while True:
        line = stream.readline()
        if not line:
            break
        if line.strip():
            batch.append(line.strip())
        if batch and (len(batch) >= size or not _waiting(stream)):
            yield batch
            batch = []
    if batch:
        yield batch


def answer_lines(probs: np.ndarray, manifest: Manifest) -> list[str]:
    """One line per row: the entry's template over ``proba`` (the one value the format writes) and ``label`` (1 where
    it reaches the decision threshold, else 0)."""
    table = build_table([str(i) for i in range(len(probs))], probs, manifest)
    values = table[manifest.output.columns[1]].to_numpy(dtype=float)
    threshold = manifest.decision.thresholds[0] if manifest.decision.thresholds else 0.5
    return [manifest.entry.line.format(proba=float(p), label=int(p >= threshold)) for p in values]


def _check_stream(manifest: Manifest) -> None:
    if len(manifest.output.columns) != 2 or manifest.merge == "rank":
        raise BundleError(f"stream mode writes one value per image, as it comes, but the format "
                          f"{manifest.output.format!r} (merge {manifest.merge!r}) does not; pack with --format binary")
    if manifest.metadata is not None:
        raise BundleError("stream mode reads image paths only, but the models take metadata; pack without metadata")


def run_stream(bundle: Path, source: IO[str], sink: IO[str], options: Options | None = None) -> int:
    """Answer every path of ``source`` with one line on ``sink``, in order; returns how many."""
    options = options or Options()
    manifest = open_bundle(bundle, options)
    _check_stream(manifest)
    device = device_list(options.devices or manifest.entry.devices, warn)[0]
    if device.type == "cpu":
        cpu_threads(manifest, available_cpus())
    groups = load_groups(manifest, bundle, device)
    info_for(options)(f"{len(manifest.models)} model(s) loaded on {device}: reading image paths from stdin")
    preprocessors = [g.preprocessor for g in groups]
    weights = np.array([m.weight for m in manifest.models])
    answered = 0
    for paths in batches(source, options.batch_size):
        files = [Path(p) for p in paths]
        images = DecodedImages(files, preprocessors, options.strict, manifest.decode, [f.stem for f in files])
        batch = collate([images[i] for i in range(len(files))]).checked()
        for path, problem in zip(paths, batch.problems):
            if problem:
                warn(f"{path}: predicted from a blank image ({problem})")
        probs = finish(predict_batch(manifest, groups, batch.pixels, None, device=device, log=warn), manifest.merge,
                       weights)
        sink.write("".join(f"{line}\n" for line in answer_lines(probs, manifest)))
        sink.flush()
        answered += len(paths)
        interrupt.checkpoint()
    info_for(options)(f"answered {answered} image path(s)")
    return answered


def case_value(probs: np.ndarray, manifest: Manifest) -> object:
    """A case's answer: the format's one row, as its bare value (one value column) or an object of its columns."""
    row = build_table(["case"], probs, manifest).iloc[0].drop(manifest.output.id_column)
    values = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    return next(iter(values.values())) if len(values) == 1 else values


def run_case(folder: Path, bundle: Path, out: Path, options: Options | None = None) -> object:
    """The one image of the case folder -> its JSON value at ``out``."""
    options = options or Options()
    manifest = open_bundle(bundle, options)
    check_writable(out)
    paths = list_images(folder, recursive=True)
    if len(paths) != 1:
        listed = ", ".join(str(p.relative_to(folder)) for p in sorted(paths, key=lambda p: natural_key(p.name))[:5])
        raise InputError(f"a case folder holds one image, but {folder} holds {len(paths)}{': ' if paths else ''}"
                         f"{listed}; one job is one case")
    test = TestSet(ids=(paths[0].stem,), paths=(paths[0],), skipped=())
    predicted = predict_rows(manifest, bundle, folder, test, [0], replace(options, ignore_sample=True))
    probs = finish(predicted.values, manifest.merge, np.array([m.weight for m in manifest.models]))
    value = case_value(probs, manifest)
    write_json(value, out)
    for problem in predicted.problems:
        warn(f"{problem['file']}: predicted from a blank image ({problem['reason']})")
    return value
