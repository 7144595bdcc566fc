"""Fold checkpoints + settings -> a checked bundle folder: manifest.json, weights/*.safetensors, the sample.

This is everything ``builder pack`` does before Docker is involved (``--bundle-only`` stops here).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from builder import __version__
from builder.checkpoints import find_folds, read_checkpoint
from builder.errors import ConfigError
from builder.folds import Fold, prepare_fold
from builder.sample import Sample, infer_format, infer_label_as, read_sample
from builder.settings import (
    Sourced,
    as_floats,
    config_layer,
    lookup,
    option_layer,
    read_classes,
    read_thresholds,
)
from builder.thresholds import tune_file
from submission.errors import BundleError
from submission.manifest import (
    SCHEMA_VERSION,
    Decision,
    FileRef,
    Manifest,
    ModelSpec,
    Output,
    sha256_file,
    write_manifest,
)

SAMPLE_NAME = "sample_submission.csv"


@dataclass(frozen=True)
class PackRequest:
    models: Path  # folder of fold checkpoints (or one checkpoint file)
    options: dict[str, Any] = field(default_factory=dict)  # settings given on the command line (None: not given)
    config: Path | None = None  # YAML/JSON file of settings
    sample_submission: Path | None = None
    oof: tuple[Path, Path] | None = None  # (out-of-fold probabilities, labels): tune multilabel thresholds on them
    pick: str | None = None  # file name pattern choosing the checkpoint in each fold's sub-folder
    use_ema: bool = True  # prefer state_dict_ema when a checkpoint has one
    allow_unsafe_pickle: bool = False


@dataclass
class Bundle:
    path: Path
    manifest: Manifest
    folds: list[Fold]
    settings: dict[str, Sourced]  # the ensemble-wide settings and where they came from
    size: int  # bytes on disk


def _fold_file_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "fold"
    candidate, i = base, 1
    while candidate in taken:
        candidate, i = f"{base}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _resolve(name: str, layers: tuple, default: Any, why: str) -> Sourced:
    return lookup(name, *layers) or Sourced(default, why)


def _task_settings(
    layers: tuple, folds: list[Fold], sample: Sample | None, oof: tuple[Path, Path] | None = None
) -> dict[str, Sourced]:
    """The ensemble-wide settings: task, classes, output format and decisions."""
    s: dict[str, Sourced] = {}
    s["task"] = _resolve("task", layers, "multiclass", "default")
    task = s["task"].value
    if task not in ("multiclass", "multilabel"):
        raise ConfigError(f"task from {s['task'].source} is {task!r}; expected multiclass or multilabel")
    n = folds[0].num_classes

    fmt = lookup("format", *layers)
    if fmt is None:
        if sample is None:
            fmt = Sourced("label" if task == "multiclass" else "labels", f"default for {task} without a sample")
        else:
            value, reason = infer_format(sample, task)
            fmt = Sourced(value, f"{sample.path.name}: {reason}")
    s["format"] = fmt

    classes = lookup("classes", *layers)
    if classes is not None:
        classes = Sourced(read_classes(classes.value, classes.source), classes.source)
    elif sample is not None and fmt.value in ("onehot", "probs"):
        classes = Sourced(sample.value_columns, f"{sample.path.name} columns (taken to be the model's output order)")
    else:
        classes = Sourced(tuple(str(i) for i in range(n)), "class indices (no --classes given)")
    if len(classes.value) != n:
        raise ConfigError(f"{len(classes.value)} classes from {classes.source}, but the folds have {n} outputs")
    s["classes"] = classes

    if sample is not None:
        s["id_column"] = Sourced(sample.id_column, f"{sample.path.name} (its {'--id-column' if lookup('id_column', *layers) else 'first column'})")
        s["columns"] = Sourced(sample.columns, f"{sample.path.name} header")
    else:
        s["id_column"] = _resolve("id_column", layers, "id", "default")
        columns = (s["id_column"].value, "label") if fmt.value in ("label", "labels") else (s["id_column"].value, *classes.value)
        s["columns"] = Sourced(tuple(columns), "id column and classes (no sample submission)")

    label_as = lookup("label_as", *layers)
    if label_as is None and sample is not None and fmt.value in ("label", "labels"):
        value, reason = infer_label_as(sample, classes.value)
        label_as = Sourced(value, f"{sample.path.name}: {reason}")
    s["label_as"] = label_as or Sourced("name", "default")

    s["tta"] = _resolve("tta", layers, "none", "default")
    s["merge"] = _resolve("merge", layers, "mean", "default")
    if task == "multilabel":
        t = lookup("thresholds", *layers)
        if t is not None and oof is not None:
            raise ConfigError(f"thresholds come from {t.source} and from --oof; keep one")
        if oof is not None:
            tuned = tune_file(*oof)
            source = f"tuned on {oof[0].name}: {tuned.metric} {tuned.before:.4f} at 0.5 -> {tuned.after:.4f}"
            t = Sourced(dict(zip(tuned.classes, tuned.thresholds)), source)
        s["thresholds"] = (
            Sourced(read_thresholds(t.value, t.source, classes.value), t.source) if t else Sourced((0.5,) * n, "default")
        )
    else:
        if lookup("thresholds", *layers) or oof is not None:
            raise ConfigError("thresholds apply to multilabel tasks; pass --task multilabel or drop --thresholds/--oof")
        s["thresholds"] = Sourced((), "not used (multiclass)")
    s["at_least_one"] = _resolve("at_least_one", layers, False, "default")
    s["top_k"] = _resolve("top_k", layers, 1, "default")
    s["decimals"] = _resolve("decimals", layers, 6, "default")
    weights = lookup("fold_weights", *layers)
    if weights is not None:
        values = as_floats(weights.value, "fold_weights", weights.source, count=len(folds))
        s["fold_weights"] = Sourced(values, weights.source)
    else:
        s["fold_weights"] = Sourced((1.0,) * len(folds), "default (equal)")
    return s


def _check_folds_agree(folds: list[Fold]) -> None:
    counts = {f.num_classes for f in folds}
    if len(counts) > 1:
        detail = ", ".join(f"{f.checkpoint} has {f.num_classes}" for f in folds)
        raise ConfigError(f"the folds disagree on the number of classes: {detail}; pack folds of one task")


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path))
    path.chmod(0o644)


def _provenance(folds: list[Fold], settings: dict[str, Sourced], models_dir: Path) -> dict[str, Any]:
    def where(path: Path) -> str:
        try:
            return str(path.relative_to(models_dir))
        except ValueError:
            return path.name

    return {
        "builder_version": __version__,
        "settings": {k: v.source for k, v in settings.items()},
        "folds": {
            f.name: {
                "checkpoint": where(f.checkpoint),
                "entry": f.entry,
                "settings": {k: v.source for k, v in f.sources.items()},
                "dropped_keys": f.dropped_keys,
            }
            for f in folds
        },
    }


def make_bundle(request: PackRequest, out: Path, on_fold: Any = None) -> Bundle:
    """Find, read and check every fold, then write the bundle to ``out`` (replacing it only when complete)."""
    layers = (option_layer(request.options), config_layer(request.config))
    id_column = lookup("id_column", *layers)
    sample = read_sample(request.sample_submission, id_column.value if id_column else None) if request.sample_submission else None

    folds = []
    for fold_file in find_folds(request.models, request.pick):
        checkpoint = read_checkpoint(fold_file, use_ema=request.use_ema, allow_unsafe=request.allow_unsafe_pickle)
        folds.append(prepare_fold(checkpoint, layers))
        if on_fold is not None:
            on_fold(folds[-1])
    _check_folds_agree(folds)
    settings = _task_settings(layers, folds, sample, request.oof)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    staging.chmod(0o755)
    try:
        (staging / "weights").mkdir()
        specs, taken = [], set()
        for fold, weight in zip(folds, settings["fold_weights"].value):
            file_name = f"weights/{_fold_file_name(fold.name, taken)}.safetensors"
            _save_weights(fold.model, staging / file_name)
            specs.append(ModelSpec(
                name=fold.name, arch=fold.arch, num_classes=fold.num_classes, kwargs=fold.kwargs,
                weights=FileRef(file_name, sha256_file(staging / file_name)), weight=weight,
                preprocess=fold.preprocess,
            ))
        sample_ref = None
        if sample is not None:
            shutil.copyfile(sample.path, staging / SAMPLE_NAME)
            sample_ref = FileRef(SAMPLE_NAME, sha256_file(staging / SAMPLE_NAME))
        try:
            manifest = Manifest(
                schema_version=SCHEMA_VERSION,
                task=settings["task"].value,
                classes=tuple(settings["classes"].value),
                models=tuple(specs),
                tta=settings["tta"].value,
                merge=settings["merge"].value,
                decision=Decision(
                    thresholds=tuple(settings["thresholds"].value),
                    at_least_one=bool(settings["at_least_one"].value),
                    top_k=int(settings["top_k"].value),
                ),
                output=Output(
                    format=settings["format"].value,
                    id_column=settings["id_column"].value,
                    columns=tuple(settings["columns"].value),
                    label_as=settings["label_as"].value,
                    decimals=int(settings["decimals"].value),
                ),
                sample_submission=sample_ref,
                provenance=_provenance(folds, settings, Path(request.models)),
            )
        except BundleError as e:
            raise ConfigError(f"the settings do not make a valid bundle: {e}") from None
        write_manifest(staging, manifest)
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return Bundle(path=out, manifest=manifest, folds=folds, settings=settings, size=size)


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
