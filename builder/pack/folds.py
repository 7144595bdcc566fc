"""One checkpoint + the settings layers -> a checked fold: built by the runtime's model factory, loaded
strictly, finite, and run on a batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.data import resolve_data_config

from builder.errors import CheckpointError, ConfigError
from builder.pack.checkpoints import Checkpoint, fit_state_dict
from builder.pack.settings import Layer, Sourced, as_floats, carried_layer, lookup, read_mapping
from submission import models
from submission.errors import BundleError
from submission.manifest import FileRef, ModelSpec, Preprocess

PLACEHOLDER = FileRef("weights/unsaved.safetensors", "0" * 64)  # a spec's weights before the bundle is written


@dataclass
class Fold:
    name: str
    checkpoint: Path
    entry: str  # where the weights were in the file
    spec: ModelSpec  # the manifest entry, but for its weights file and ensemble weight (set when bundled)
    model: torch.nn.Module  # loaded and checked, on the CPU, eval mode
    sources: dict[str, Sourced] = field(default_factory=dict)  # setting -> value and where it came from
    dropped_keys: list[str] = field(default_factory=list)  # checkpoint keys outside the model (Lightning metrics)
    recorded: dict[str, tuple[Any, str]] = field(default_factory=dict)  # what the training run recorded
    why: str = ""  # why this checkpoint file was chosen in its fold folder

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def preprocess(self) -> Preprocess:
        return self.spec.preprocess


def _spec(name: str, arch: str, num_classes: int, kwargs: dict[str, Any], preprocess: Preprocess) -> ModelSpec:
    try:
        return ModelSpec(name=name, arch=arch, num_classes=num_classes, kwargs=kwargs, weights=PLACEHOLDER,
                         weight=1.0, preprocess=preprocess)
    except BundleError as e:
        raise ConfigError(f"fold {name!r}: {e}") from None


def _build(spec: ModelSpec, path: Path, arch: Sourced) -> torch.nn.Module:
    try:
        return models.build(spec)
    except BundleError as e:
        raise ConfigError(f"{path}: {e} (the architecture from {arch.source})") from None


def _load_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: Sourced) -> None:
    try:
        models.load_state(model, state)
    except BundleError as e:
        raise CheckpointError(
            f"{path} does not load strictly into {arch.value!r} (from {arch.source}): {e}. "
            "Check --arch, --num-classes and --model-kwargs against the training run"
        ) from None


def _input_size(layers: tuple[Layer, ...], default: Sourced) -> Sourced:
    """(3, H, W) from input_size or img_size, whichever the highest layer gives (input_size first within one)."""
    for layer in layers:
        if "input_size" in layer:
            s = layer["input_size"]
            numbers = as_floats(s.value, "input_size", s.source, count=3)
            return Sourced(tuple(int(v) for v in numbers), s.source)
        if "img_size" in layer:
            s = layer["img_size"]
            value = s.value if isinstance(s.value, (list, tuple, str)) else [s.value]
            numbers = [int(v) for v in as_floats(value, "img_size", s.source)]
            if len(numbers) not in (1, 2):
                raise ConfigError(f"img_size from {s.source} must be one number or [height, width], got {s.value!r}")
            h, w = (numbers[0], numbers[0]) if len(numbers) == 1 else numbers
            return Sourced((3, h, w), s.source)
    return default


def prepare_fold(checkpoint: Checkpoint, layers: tuple[Layer, ...]) -> Fold:
    """Resolve the fold's settings, load its weights strictly, and check that it runs.

    ``layers`` are the settings above the checkpoint (options, config file), highest priority first.
    """
    path = checkpoint.fold.path
    layers = (*layers, carried_layer(checkpoint.carried))
    sources: dict[str, Sourced] = {}

    arch = lookup("arch", *layers)
    if arch is None:
        raise ConfigError(f"{path}: no architecture is recorded for this fold; pass --arch (a timm model name)")
    sources["arch"] = arch
    kwargs_s = lookup("model_kwargs", *layers)
    kwargs = read_mapping(kwargs_s.value, "model_kwargs", kwargs_s.source) if kwargs_s else {}
    if kwargs_s:
        sources["model_kwargs"] = Sourced(kwargs, kwargs_s.source)

    unknown_size = Preprocess((3, 224, 224), "center", 1.0, "bilinear", (0.5,) * 3, (0.5,) * 3)
    probe = _build(_spec(checkpoint.fold.name, str(arch.value), 1000, kwargs, unknown_size), path, arch)
    state, dropped = fit_state_dict(checkpoint.state_dict, set(probe.state_dict()))
    head = models.classifier_rows(probe, state)
    num = lookup("num_classes", *layers)
    if num is None:
        if head is None:
            _load_strictly(probe, state, path, arch)  # names the keys at fault when the weights do not fit at all
            raise ConfigError(f"{path}: cannot tell the number of classes from the weights; pass --num-classes")
        num = Sourced(head, f"{path.name} classifier weight")
    try:
        num = Sourced(int(num.value), num.source)
    except (TypeError, ValueError):
        raise ConfigError(f"num_classes from {num.source} must be an integer, got {num.value!r}") from None
    if head is not None and head != num.value:
        raise CheckpointError(
            f"{path}: num_classes is {num.value} (from {num.source}), but the classifier weight has {head} rows"
        )
    sources["num_classes"] = num

    model = _build(_spec(checkpoint.fold.name, str(arch.value), num.value, kwargs, unknown_size), path, arch)
    _load_strictly(model, state, path, arch)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: weight {key!r} has {bad} NaN or infinite value(s); the run diverged")
    model.eval()

    preprocess = _preprocess(layers, model, str(arch.value), path, sources)
    spec = _spec(checkpoint.fold.name, str(arch.value), num.value, kwargs, preprocess)
    _check_forward(model, spec, path)
    return Fold(name=checkpoint.fold.name, checkpoint=path, entry=checkpoint.entry, spec=spec, model=model,
                sources=sources, dropped_keys=dropped, recorded=checkpoint.carried, why=checkpoint.fold.why)


def _preprocess(layers: tuple[Layer, ...], model: torch.nn.Module, arch: str, path: Path,
                sources: dict[str, Sourced]) -> Preprocess:
    """The eval transform from the layers, falling back to timm's defaults for the model."""
    defaults = resolve_data_config({}, model=model)
    default_source = f"timm default for {arch}"
    input_size = _input_size(layers, Sourced(tuple(defaults["input_size"]), default_source))
    sources["input_size"] = input_size
    values: dict[str, Any] = {}
    for name in ("crop_pct", "crop_mode", "interpolation", "mean", "std"):
        found = lookup(name, *layers) or Sourced(defaults.get(name), default_source)
        sources[name] = found
        values[name] = found.value
    album = lookup("albumentations", *layers)
    if album is not None:
        sources["albumentations"] = album
    try:
        return Preprocess(
            input_size=input_size.value,
            crop_mode=str(values["crop_mode"] or "center"),
            crop_pct=float(values["crop_pct"]),
            interpolation=str(values["interpolation"]),
            mean=as_floats(values["mean"], "mean", sources["mean"].source, count=3),
            std=as_floats(values["std"], "std", sources["std"].source, count=3),
            albumentations=read_mapping(album.value, "albumentations", album.source) if album else None,
        )
    except BundleError as e:
        raise ConfigError(f"{path}: {e}") from None


def _check_forward(model: torch.nn.Module, spec: ModelSpec, path: Path) -> None:
    batch = torch.rand(2, *spec.preprocess.input_size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            out = model(batch)
    except Exception as e:
        raise CheckpointError(
            f"{path}: a forward pass on a batch of shape {tuple(batch.shape)} fails: {type(e).__name__}: {e}; "
            "check --img-size (models like ViT take one fixed size) and --model-kwargs"
        ) from None
    try:
        logits = models.logits(out, spec, 2, spec.num_classes)
    except BundleError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if not torch.isfinite(logits).all():
        raise CheckpointError(f"{path}: the model returns NaN or infinite logits on a test batch")
