"""Fold checkpoints + settings -> a checked bundle folder: manifest.json, weights/*.safetensors, the sample.

This is everything ``builder pack`` does before Docker is involved (``--bundle-only`` stops here).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import save_file

from builder import __version__
from builder.errors import ConfigError
from builder.pack import code as code_io
from builder.pack.checkpoints import find_folds, read_checkpoint
from builder.pack.folds import Fold, prepare_fold
from builder.pack.metadata import DeclaredMetadata
from builder.pack.metadata import declare as declare_metadata
from builder.pack.sample import Sample, infer_label_as, read_sample
from builder.pack.settings import (
    BY_NAME,
    Sourced,
    as_floats,
    as_list,
    config_layer,
    default_layer,
    fold_layer,
    lookup,
    option_layer,
    read_classes,
    read_thresholds,
)
from builder.pack.thresholds import tune_file
from submission import formats
from submission.errors import BundleError
from submission.manifest import (
    SCHEMA_VERSION,
    Decision,
    FileRef,
    Head,
    Manifest,
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


@dataclass
class Bundle:
    path: Path
    manifest: Manifest
    folds: list[Fold]
    settings: dict[str, Sourced]  # the ensemble-wide settings and where they came from
    size: int  # bytes on disk
    metadata_rows: pd.DataFrame | None = None  # a few rows of the training metadata, for the smoke run


def _fold_file_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "fold"
    candidate, i = base, 1
    while candidate in taken:
        candidate, i = f"{base}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _resolve(name: str, layers: tuple) -> Sourced:
    """A setting from the layers, else its declared default."""
    found = lookup(name, *layers)
    return found if found is not None else Sourced(BY_NAME[name].default, "default")


def _path(name: str, layers: tuple) -> Path | None:
    found = lookup(name, *layers)
    return Path(found.value) if found is not None else None


def _heads(layers: tuple) -> Sourced | None:
    """The declared heads: "mask=3,gender=2,age=3", or a mapping/list of name: size in order."""
    found = lookup("heads", *layers)
    if found is None:
        return None
    value = found.value
    pairs = list(value.items()) if isinstance(value, Mapping) else [
        tuple(item.split("=", 1)) if isinstance(item, str) and "=" in item else (None, None)
        for item in as_list(value, "heads", found.source)]
    try:
        heads = tuple(Head(str(name), int(size)) for name, size in pairs)
    except (TypeError, ValueError):
        heads = ()
    if not heads or any(h.size < 1 or not h.name or h.name == "None" for h in heads):
        raise ConfigError(f"heads from {found.source} is {value!r}; write name=size,... in the model's output order, "
                          "e.g. mask=3,gender=2,age=3")
    return Sourced(heads, found.source)


def _task_settings(layers: tuple, folds: list[Fold], sample: Sample | None) -> dict[str, Sourced]:
    """The ensemble-wide settings: task, classes, output format and decisions."""
    s: dict[str, Sourced] = {}
    s["task"] = _resolve("task", layers)
    task = s["task"].value
    if task not in ("multiclass", "multilabel"):
        raise ConfigError(f"task from {s['task'].source} is {task!r}; expected multiclass or multilabel")
    sizes = [h.size for h in folds[0].heads]
    n = math.prod(sizes) if task == "multiclass" else sum(sizes)

    fmt = lookup("format", *layers)
    if fmt is None:
        if sample is None:
            fmt = Sourced("label" if task == "multiclass" else "labels", f"default for {task} without a sample")
        else:
            try:
                value, reason = formats.infer(sample, task)
            except ValueError as e:
                raise ConfigError(f"{sample.path}: {e}; pass --format") from None
            fmt = Sourced(value, f"{sample.path.name}: {reason}")
    if fmt.value not in formats.FORMATS:
        raise ConfigError(f"format from {fmt.source} is {fmt.value!r}; expected one of: {', '.join(formats.FORMATS)}")
    s["format"] = fmt
    spec = formats.get(fmt.value)

    classes = lookup("classes", *layers) or _recorded(folds, "classes")
    if classes is not None:
        classes = Sourced(read_classes(classes.value, classes.source), classes.source)
    elif sample is not None and spec.per_class_columns:
        classes = Sourced(sample.value_columns, f"{sample.path.name} columns (taken to be the model's output order)")
    else:
        classes = Sourced(tuple(str(i) for i in range(n)), "class indices (no --classes given)")
    if len(classes.value) != n:
        raise ConfigError(f"{len(classes.value)} classes from {classes.source}, but the folds have {n} outputs")
    s["classes"] = classes

    if sample is not None:
        given = "--id-column" if lookup("id_column", *layers) else "first column"
        s["id_column"] = Sourced(sample.id_column, f"{sample.path.name} (its {given})")
        s["columns"] = Sourced(sample.columns, f"{sample.path.name} header")
    else:
        found = lookup("id_column", *layers)
        s["id_column"] = found if found is not None else Sourced("id", "default")
        s["columns"] = Sourced(spec.header(s["id_column"].value, classes.value),
                               "id column and classes (no sample submission)")

    label_as = lookup("label_as", *layers)
    if label_as is None and sample is not None and not spec.per_class_columns:
        value, reason = infer_label_as(sample, classes.value)
        label_as = Sourced(value, f"{sample.path.name}: {reason}")
    s["label_as"] = label_as or Sourced("name", "default")

    s["tta"] = _resolve("tta", layers)
    s["merge"] = _resolve("merge", layers)
    oof, oof_labels = _path("oof", layers), _path("oof_labels", layers)
    if (oof is None) != (oof_labels is None):
        raise ConfigError("--oof and --oof-labels go together")
    if task == "multilabel":
        t = lookup("thresholds", *layers)
        if t is not None and oof is not None:
            raise ConfigError(f"thresholds come from {t.source} and from --oof; keep one")
        if oof is not None and oof_labels is not None:
            tuned = tune_file(oof, oof_labels)
            source = f"tuned on {oof.name}: {tuned.metric} {tuned.before:.4f} at 0.5 -> {tuned.after:.4f}"
            t = Sourced(dict(zip(tuned.classes, tuned.thresholds)), source)
        s["thresholds"] = (
            Sourced(read_thresholds(t.value, t.source, classes.value), t.source) if t else Sourced((0.5,) * n, "default")
        )
    else:
        if lookup("thresholds", *layers) or oof is not None:
            raise ConfigError("thresholds apply to multilabel tasks; pass --task multilabel or drop --thresholds/--oof")
        s["thresholds"] = Sourced((), "not used (multiclass)")
    for name in ("at_least_one", "top_k", "decimals"):
        s[name] = _resolve(name, layers)
    weights = lookup("fold_weights", *layers)
    if weights is not None:
        values = as_floats(weights.value, "fold_weights", weights.source, count=len(folds))
        s["fold_weights"] = Sourced(values, weights.source)
    else:
        s["fold_weights"] = Sourced((1.0,) * len(folds), "default (equal)")
    return s


def _recorded(folds: list[Fold], name: str) -> Sourced | None:
    """A setting every fold's training run recorded alike (None when none did); folds that disagree are an error."""
    found = [(f, f.recorded[name]) for f in folds if name in f.recorded]
    if not found:
        return None
    values = {repr(value) for _, (value, _) in found}
    if len(values) > 1:
        detail = "; ".join(f"{f.name}: {value!r} ({source})" for f, (value, source) in found)
        raise ConfigError(f"the folds' training runs record different {name}: {detail}; pass --{name.replace('_', '-')}")
    value, source = found[0][1]
    return Sourced(value, source if len(found) == 1 else f"{source}, and the other folds alike")


def _check_folds_agree(folds: list[Fold]) -> None:
    if len({f.heads for f in folds}) > 1:
        def outputs(f: Fold) -> str:
            return str(f.heads[0].size) if len(f.heads) == 1 else ", ".join(f"{h.name}={h.size}" for h in f.heads)

        detail = ", ".join(f"{f.checkpoint} has {outputs(f)}" for f in folds)
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
                "pretrained_weights_asked_for": f.asked,
            }
            for f in folds
        },
    }


def _requirements(layers: tuple, folds: list[Fold], declared: DeclaredMetadata | None) -> Sourced:
    """"name==version" of every distribution the user's code needs beyond the runtime: what it imports (found by
    replaying it) and what --requirements names, at the versions installed here."""
    pins: dict[str, str] = {}
    sources = []
    named = lookup("requirements", *layers)
    if named is not None:
        pins.update(code_io.requirement(n, named.source) for n in as_list(named.value, "requirements", named.source))
        sources.append(named.source)
    imported = {k: v for f in folds for k, v in f.requirements.items()}
    imported.update(declared.requirements if declared else {})
    if imported:
        sources.append("what the code imports")
    pins.update(imported)
    return Sourced(tuple(f"{n}=={v}" for n, v in sorted(pins.items())), " and ".join(sources) or "none needed")


def make_bundle(request: PackRequest, out: Path, on_fold: Any = None) -> Bundle:
    """Find, read and check every fold, then write the bundle to ``out`` (replacing it only when complete)."""
    options, config = option_layer(request.options), config_layer(request.config)
    layers = (options, config)
    with_defaults = (*layers, default_layer())
    id_column = lookup("id_column", *layers)
    sample_path = _path("sample_submission", layers)
    sample = read_sample(sample_path, id_column.value if id_column else None) if sample_path else None
    heads = _heads(layers)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    staging.chmod(0o755)
    try:
        declared = declare_metadata(layers, sample, staging)
        folds, code_cache = [], {}
        pick = lookup("pick", *layers)
        for fold_file in find_folds(request.models, pick.value if pick else None):
            checkpoint = read_checkpoint(fold_file, use_ema=bool(_resolve("ema", with_defaults).value),
                                         allow_unsafe=bool(_resolve("allow_unsafe_pickle", with_defaults).value))
            fold_layers = (options, fold_layer(config, fold_file.name), config)
            folds.append(prepare_fold(checkpoint, fold_layers, staging, heads.value if heads else None, code_cache,
                                      declared.metadata.width if declared else 0))
            if on_fold is not None:
                on_fold(folds[-1])
        _check_folds_agree(folds)
        settings = _task_settings(layers, folds, sample)
        if heads is not None:
            settings["heads"] = Sourced(", ".join(f"{h.name}={h.size}" for h in heads.value), heads.source)
        settings["requirements"] = _requirements(layers, folds, declared)
        if declared is not None:
            settings.update(declared.sources)

        (staging / "weights").mkdir()
        specs, taken = [], set()
        for fold, weight in zip(folds, settings["fold_weights"].value):
            file_name = f"weights/{_fold_file_name(fold.name, taken)}.safetensors"
            _save_weights(fold.model, staging / file_name)
            specs.append(replace(fold.spec, weights=FileRef(file_name, sha256_file(staging / file_name)), weight=weight))
        sample_ref = None
        if sample is not None:
            shutil.copyfile(sample.path, staging / SAMPLE_NAME)
            sample_ref = FileRef(SAMPLE_NAME, sha256_file(staging / SAMPLE_NAME))
        try:
            manifest = Manifest(
                schema_version=SCHEMA_VERSION,
                task=settings["task"].value,
                classes=tuple(settings["classes"].value),
                heads=folds[0].heads,
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
                metadata=declared.metadata if declared else None,
                requirements=settings["requirements"].value,
                provenance=_provenance(folds, settings, Path(request.models)),
            )
        except BundleError as e:
            raise ConfigError(f"the settings do not make a valid bundle: {e}") from None
        _remove_unused_code(staging, manifest)
        write_manifest(staging, manifest)
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return Bundle(path=out, manifest=manifest, folds=folds, settings=settings, size=size,
                  metadata_rows=declared.rows if declared else None)


def _remove_unused_code(bundle: Path, manifest: Manifest) -> None:
    """Frozen code that no model or encoder of the manifest uses (it cannot happen, but the bundle holds exactly
    what the manifest names)."""
    used = {f.path for f in manifest.files}
    for path in sorted((bundle / "code").rglob("*"), reverse=True) if (bundle / "code").exists() else []:
        if path.is_file() and path.relative_to(bundle).as_posix() not in used:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


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
