"""Fold checkpoints + settings -> a checked bundle folder: manifest.json, weights/*.safetensors, the sample.

This is everything ``builder pack`` does before Docker is involved (``--bundle-only`` stops here).
"""

from __future__ import annotations

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
from builder.pack.sample import read_sample
from builder.pack.settings import (
    Sourced,
    as_floats,
    as_list,
    config_layer,
    fold_layer,
    lookup,
    option_layer,
)
from builder.pack.task import path, resolve, submission_settings
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


def _ensemble_settings(layers: tuple, folds: list[Fold]) -> dict[str, Sourced]:
    """TTA, merge, the decode mode and the folds' weights."""
    s = {name: resolve(name, layers) for name in ("tta", "merge", "decode")}
    weights = lookup("fold_weights", *layers)
    if weights is not None:
        s["fold_weights"] = Sourced(as_floats(weights.value, "fold_weights", weights.source, count=len(folds)), weights.source)
    else:
        s["fold_weights"] = Sourced((1.0,) * len(folds), "default (equal)")
    return s


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
    id_column = lookup("id_column", *layers)
    sample_path = path("sample_submission", layers)
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
            checkpoint = read_checkpoint(fold_file, use_ema=bool(resolve("ema", layers).value),
                                         allow_unsafe=bool(resolve("allow_unsafe_pickle", layers).value))
            fold_layers = (options, fold_layer(config, fold_file.name), config)
            folds.append(prepare_fold(checkpoint, fold_layers, staging, heads.value if heads else None, code_cache,
                                      declared.metadata.width if declared else 0))
            if on_fold is not None:
                on_fold(folds[-1])
        _check_folds_agree(folds)
        settings = {**submission_settings(layers, folds, sample), **_ensemble_settings(layers, folds)}
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
                decode=settings["decode"].value,
                decision=Decision(
                    thresholds=tuple(settings["thresholds"].value),
                    at_least_one=bool(settings["at_least_one"].value),
                    top_k=int(settings["top_k"].value),
                    positive_class=settings["positive_class"].value,
                    cutoffs=tuple(settings["cutoffs"].value),
                    new_class=settings["new_class"].value,
                    new_threshold=settings["new_threshold"].value,
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
    for entry in sorted((bundle / "code").rglob("*"), reverse=True) if (bundle / "code").exists() else []:
        if entry.is_file() and entry.relative_to(bundle).as_posix() not in used:
            entry.unlink()
        elif entry.is_dir() and not any(entry.iterdir()):
            entry.rmdir()


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
