"""Fold checkpoints + settings -> a checked bundle folder: manifest.json, weights/*.safetensors, the sample.

This is everything ``builder pack`` does before Docker is involved (``--bundle-only`` stops here): the settings
resolved and checked (``resolve``), the metadata declared, every fold read, built, loaded and run (``folds``), the
submission decided (``target``), then the bundle written in a staging folder that replaces ``out`` only when whole.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import save_file

from builder import __version__
from builder.errors import ConfigError
from builder.pack import code as code_io
from builder.pack import engines
from builder.pack.checkpoints import read_checkpoint
from builder.pack.folds import Fold, prepare_fold
from builder.pack.metadata import DeclaredMetadata
from builder.pack.metadata import declare as declare_metadata
from builder.pack.resolve import PackRequest, PackSettings, fold_settings, fold_weights, said
from builder.pack.settings import Sourced
from builder.pack.target import Target, decide_target
from submission.errors import BundleError
from submission.manifest import SCHEMA_VERSION, Code, Deadline, FileRef, Manifest, sha256_file, write_manifest

SAMPLE_NAME = "sample_submission.csv"

__all__ = ["SAMPLE_NAME", "Bundle", "PackRequest", "make_bundle"]


@dataclass
class Bundle:
    path: Path
    manifest: Manifest
    folds: list[Fold]
    settings: dict[str, Sourced]  # the ensemble-wide settings and where they came from
    size: int  # bytes on disk
    metadata_rows: pd.DataFrame | None = None  # a few rows of the training metadata, for the smoke run


def make_bundle(request: PackRequest, out: Path, on_fold: Callable[[Fold], None] | None = None,
                settings: PackSettings | None = None) -> Bundle:
    """Resolve the settings (unless ``settings`` are ``request``'s, resolved already), read and check every fold,
    decide the submission, and write the bundle to ``out`` (replacing it only when complete)."""
    settings = settings or said(request)
    with _staging(Path(out)) as staging:
        metadata = declare_metadata(settings, staging)
        folds = check_folds(settings, staging, metadata, on_fold)
        target = decide_target(settings, folds)
        folds = choose_engines(settings, folds, staging, target.task.value, metadata)
        report = _report(settings, target, folds, metadata)
        manifest = _write(staging, settings, folds, target, metadata, report)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return Bundle(path=Path(out), manifest=manifest, folds=folds, settings=report, size=size,
                  metadata_rows=metadata.rows if metadata else None)


def check_folds(s: PackSettings, staging: Path, metadata: DeclaredMetadata | None,
                on_fold: Callable[[Fold], None] | None = None) -> list[Fold]:
    """Every fold read (without running code), built, loaded strictly and run; they must agree on their outputs."""
    folds: list[Fold] = []
    code_cache: dict[str, Code] = {}
    heads = s.heads.value if s.heads else None
    for fold_file in s.fold_files:
        checkpoint = read_checkpoint(fold_file, use_ema=s.ema.value, allow_unsafe=s.allow_unsafe_pickle.value)
        folds.append(prepare_fold(checkpoint, fold_settings(s, fold_file, checkpoint.carried), staging, heads,
                                  code_cache, metadata, len(s.classes.value) if s.classes else None))
        if on_fold is not None:
            on_fold(folds[-1])
    if metadata is not None and not any(f.spec.takes_metadata for f in folds):
        declared = " and ".join(v.source for k, v in metadata.sources.items()
                                if k in ("metadata_columns", "metadata_encoder"))
        models = ", ".join(sorted({f"{type(f.model).__name__}.forward ({f.name})" for f in folds}))
        raise ConfigError(f"metadata is declared ({declared}), but no model takes it: {models} take the image alone; "
                          "drop the metadata settings, or pack the model whose forward takes the metadata")
    if len({f.heads for f in folds}) > 1:
        def outputs(f: Fold) -> str:
            return str(f.heads[0].size) if len(f.heads) == 1 else ", ".join(f"{h.name}={h.size}" for h in f.heads)

        detail = ", ".join(f"{f.checkpoint} has {outputs(f)}" for f in folds)
        raise ConfigError(f"the folds disagree on the number of classes: {detail}; pack folds of one task")
    return folds


def choose_engines(s: PackSettings, folds: list[Fold], staging: Path, task: str,
                   metadata: DeclaredMetadata | None) -> list[Fold]:
    """Each fold on the engine the settings name, exported and gated (``engines``)."""
    width = metadata.metadata.width if metadata and metadata.metadata.width else 0
    chosen, taken = [], set()
    for fold in folds:
        made = engines.choose(fold, s.engine.value, staging, f"{_fold_file_name(fold.name, taken)}.onnx", task=task,
                              tolerance=s.engine_tolerance.value,
                              images=s.gate_images.value if s.gate_images else None, meta_width=width)
        made.fold.engines = made.table
        chosen.append(made.fold)
    return chosen


def _report(s: PackSettings, target: Target, folds: list[Fold], metadata: DeclaredMetadata | None) -> dict[str, Sourced]:
    """Every ensemble-wide setting, decided or given, with where it came from."""
    report = {**s.report(), **target.report()}
    report["fold_weights"] = Sourced(fold_weights(s), s.fold_weights.source if s.fold_weights else "default (equal)")
    if s.heads is not None:
        report["heads"] = Sourced(", ".join(f"{h.name}={h.size}" for h in s.heads.value), s.heads.source)
    report["requirements"] = _requirements(s, folds, metadata)
    if metadata is not None:
        report.update(metadata.sources)
    return report


def _requirements(s: PackSettings, folds: list[Fold], metadata: DeclaredMetadata | None) -> Sourced:
    """"name==version" of every distribution the user's code needs beyond the runtime: what it imports (found by
    replaying it) and what --requirements names, at the versions installed here."""
    pins: dict[str, str] = {}
    sources = []
    if s.requirements is not None:
        pins.update(code_io.requirement(n, s.requirements.source) for n in s.requirements.value)
        sources.append(s.requirements.source)
    imported = {k: v for f in folds for k, v in f.requirements.items()}
    imported.update(metadata.requirements if metadata else {})
    if imported:
        sources.append("what the code imports")
    pins.update(imported)
    return Sourced(tuple(f"{n}=={v}" for n, v in sorted(pins.items())), " and ".join(sources) or "none needed")


def _fold_file_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "fold"
    candidate, i = base, 1
    while candidate in taken:
        candidate, i = f"{base}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path))
    path.chmod(0o644)


def _provenance(s: PackSettings, folds: list[Fold], report: dict[str, Sourced]) -> dict[str, Any]:
    def where(path: Path) -> str:
        try:
            return str(path.relative_to(s.models_path))
        except ValueError:
            return path.name

    return {
        "builder_version": __version__,
        "settings": {k: v.source for k, v in report.items()},
        "folds": {
            f.name: {
                "checkpoint": where(f.checkpoint),
                "entry": f.entry,
                "settings": {k: v.source for k, v in f.sources.items()},
                "called_as": f.call,
                "dropped_keys": f.dropped_keys,
                "pretrained_weights_asked_for": f.asked,
            }
            for f in folds
        },
    }


def _write(staging: Path, s: PackSettings, folds: list[Fold], target: Target, metadata: DeclaredMetadata | None,
           report: dict[str, Sourced]) -> Manifest:
    """The weights, the sample and the manifest, in the staging folder."""
    (staging / "weights").mkdir()
    specs, taken = [], set()
    for fold, weight in zip(folds, fold_weights(s)):
        file_name = f"weights/{_fold_file_name(fold.name, taken)}.safetensors"
        _save_weights(fold.model, staging / file_name)
        specs.append(replace(fold.spec, weights=FileRef(file_name, sha256_file(staging / file_name)), weight=weight))
    sample_ref = None
    if s.sample is not None:
        shutil.copyfile(s.sample.path, staging / SAMPLE_NAME)
        sample_ref = FileRef(SAMPLE_NAME, sha256_file(staging / SAMPLE_NAME))
    try:
        manifest = Manifest(
            schema_version=SCHEMA_VERSION, task=target.task.value, classes=tuple(target.classes.value),
            heads=folds[0].heads, models=tuple(specs), tta=s.tta.value, merge=s.merge.value, decode=s.decode.value,
            decision=target.decision(), output=target.output(), sample_submission=sample_ref,
            metadata=metadata.metadata if metadata else None, requirements=report["requirements"].value,
            entry=s.entry(), provenance=_provenance(s, folds, report),
        )
        seconds = s.deadline_seconds()
        if manifest.merge == "rank" and s.deadline is None:
            seconds = None  # the platform's limit cannot be kept by dropping work under rank: no default deadline
        given = Deadline(seconds, s.drop_order.value if s.drop_order else ())
        manifest = replace(manifest, deadline=given)  # checked against the models and views, then written in full
        manifest = replace(manifest, deadline=replace(given, drop_order=manifest.drop_order()))
    except BundleError as e:
        raise ConfigError(f"the settings do not make a valid bundle: {e}") from None
    _remove_unused_code(staging, manifest)
    write_manifest(staging, manifest)
    return manifest


def _remove_unused_code(bundle: Path, manifest: Manifest) -> None:
    """Frozen code that no model or encoder of the manifest uses (it cannot happen, but the bundle holds exactly
    what the manifest names)."""
    used = {f.path for f in manifest.files}
    for entry in sorted((bundle / "code").rglob("*"), reverse=True) if (bundle / "code").exists() else []:
        if entry.is_file() and entry.relative_to(bundle).as_posix() not in used:
            entry.unlink()
        elif entry.is_dir() and not any(entry.iterdir()):
            entry.rmdir()


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A staging folder beside ``out`` that replaces it when the block completes, and is removed when it fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    staging.chmod(0o755)
    try:
        yield staging
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` at ``target``; an old ``target`` is removed only after the swap."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder; choose another bundle path")
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
