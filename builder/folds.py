"""One checkpoint + the settings layers -> a checked fold: timm model loaded strictly, finite, runs a batch."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_data_config

from builder.checkpoints import Checkpoint, fit_state_dict
from builder.errors import CheckpointError, ConfigError
from builder.settings import (
    Layer,
    Sourced,
    as_floats,
    carried_layer,
    lookup,
    read_mapping,
)
from submission.errors import BundleError
from submission.manifest import Preprocess


@dataclass
class Fold:
    name: str
    checkpoint: Path
    entry: str  # where the weights were in the file
    arch: str
    num_classes: int
    kwargs: dict[str, Any]
    preprocess: Preprocess
    model: torch.nn.Module  # loaded and checked, on the CPU, eval mode
    sources: dict[str, Sourced] = field(default_factory=dict)  # setting -> value and where it came from
    dropped_keys: list[str] = field(default_factory=list)  # checkpoint keys outside the model (Lightning metrics)


def _create(arch: str, path: Path, **kwargs: Any) -> torch.nn.Module:
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ConfigError(f"{path}: {arch!r} is not a timm model name in timm {timm.__version__}{hint}")
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except Exception as e:
        raise ConfigError(f"{path}: timm cannot create {arch!r} with {kwargs}: {e}") from None


def _head_size(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """Rows of the classifier weight in ``state``, found through timm's pretrained_cfg['classifier']."""
    heads = model.pretrained_cfg.get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def _load_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: Sourced) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = str(e).replace("\n\t", " ").replace("\n", " ")
        raise CheckpointError(
            f"{path} does not load strictly into {arch.value!r} (from {arch.source}): {detail[:1500]}. "
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

    probe = _create(arch.value, path, **kwargs)
    state, dropped = fit_state_dict(checkpoint.state_dict, set(probe.state_dict()))
    head = _head_size(probe, state)
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

    model = _create(arch.value, path, num_classes=num.value, **kwargs)
    _load_strictly(model, state, path, arch)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: weight {key!r} has {bad} NaN or infinite value(s); the run diverged")
    model.eval()

    defaults = resolve_data_config({}, model=model)
    default_source = f"timm default for {arch.value}"
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
        preprocess = Preprocess(
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

    _check_forward(model, preprocess, num.value, path)
    return Fold(
        name=checkpoint.fold.name,
        checkpoint=path,
        entry=checkpoint.entry,
        arch=arch.value,
        num_classes=num.value,
        kwargs=kwargs,
        preprocess=preprocess,
        model=model,
        sources=sources,
        dropped_keys=dropped,
    )


def _check_forward(model: torch.nn.Module, pre: Preprocess, num_classes: int, path: Path) -> None:
    batch = torch.rand(2, *pre.input_size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            out = model(batch)
    except Exception as e:
        raise CheckpointError(
            f"{path}: a forward pass on a batch of shape {tuple(batch.shape)} fails: {type(e).__name__}: {e}; "
            "check --img-size (models like ViT take one fixed size) and --model-kwargs"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckpointError(f"{path}: the model returns {shape} for 2 images, expected (2, {num_classes})")
    if not torch.isfinite(out).all():
        raise CheckpointError(f"{path}: the model returns NaN or infinite logits on a test batch")
