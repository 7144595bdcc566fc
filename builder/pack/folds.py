"""One checkpoint + the settings layers -> a checked fold: built by the runtime's model factory (a timm
architecture, or the user's code frozen in the bundle), loaded strictly, finite, and run on a batch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from timm.data import resolve_data_config

from builder.errors import CheckpointError, CodeError, ConfigError
from builder.pack import code as code_io
from builder.pack.checkpoints import Checkpoint, fit_state_dict
from builder.pack.settings import Layer, Sourced, as_floats, carried_layer, lookup, read_mapping, refuse_file_keys
from submission import models
from submission.errors import BundleError
from submission.manifest import Code, FileRef, Head, ModelSpec, Preprocess
from submission.models.heads import describe

PLACEHOLDER = FileRef("weights/unsaved.safetensors", "0" * 64)  # a spec's weights before the bundle is written
UNKNOWN_SIZE = Preprocess((3, 224, 224), "center", 1.0, "bilinear", (0.5,) * 3, (0.5,) * 3)  # before it is known


@dataclass
class Fold:
    name: str
    checkpoint: Path
    entry: str  # where the weights were in the file
    spec: ModelSpec  # the manifest entry, but for its weights file and ensemble weight (set when bundled)
    model: torch.nn.Module  # loaded and checked, on the CPU, eval mode
    heads: tuple[Head, ...]  # what the model outputs, as declared or as its forward pass showed
    sources: dict[str, Sourced] = field(default_factory=dict)  # setting -> value and where it came from
    dropped_keys: list[str] = field(default_factory=list)  # checkpoint keys outside the model (Lightning metrics)
    recorded: dict[str, tuple[Any, str]] = field(default_factory=dict)  # what the training run recorded
    why: str = ""  # why this checkpoint file was chosen in its fold folder
    asked: list[str] = field(default_factory=list)  # pretrained weights the constructor asked for (none fetched)
    requirements: dict[str, str] = field(default_factory=dict)  # distributions the user's code imports: versions

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def preprocess(self) -> Preprocess:
        return self.spec.preprocess


def _spec(name: str, **fields: Any) -> ModelSpec:
    values = dict(source="timm", code=None, kwargs={}, output=None, takes_metadata=False, weights=PLACEHOLDER,
                  weight=1.0, preprocess=UNKNOWN_SIZE)
    values.update(fields)
    try:
        return ModelSpec(name=name, **values)
    except BundleError as e:
        raise ConfigError(f"fold {name!r}: {e}") from None


def _build(spec: ModelSpec, path: Path, arch: Sourced, bundle: Path, asked: list[str]) -> torch.nn.Module:
    try:
        return models.build(spec, bundle, asked)
    except BundleError as e:
        if spec.source == "code":
            raise CodeError(f"{arch.value} (from {arch.source}): {e}{_missing_hint(e)}") from None
        raise ConfigError(f"{path}: {e} (the architecture from {arch.source})") from None


def _missing_hint(error: BaseException) -> str:
    cause = error.__cause__
    if isinstance(cause, ModuleNotFoundError) and cause.name:
        name = cause.name.split(".")[0]
        return (f". {name!r} is neither a file of the frozen code nor installed here: if it is your own module, "
                f"pass the folder that holds it (--model-code FOLDER:module.FACTORY); if it is a package, install it "
                f"(pip install {name}) and pass --requirements {name}")
    return ""


def _load_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: Sourced) -> None:
    try:
        models.load_state(model, state)
    except BundleError as e:
        raise CheckpointError(
            f"{path} does not load strictly into {arch.value!r} (from {arch.source}): {e}. "
            "Check --arch/--model-code, --num-classes and --model-kwargs against the training run"
        ) from None


def _input_size(layers: tuple[Layer, ...], default: Sourced | None) -> Sourced | None:
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


def _model_output(layers: tuple[Layer, ...]) -> Sourced | None:
    found = lookup("model_output", *layers)
    if found is None:
        return None
    value = found.value
    return Sourced(int(value) if isinstance(value, int) or str(value).lstrip("-").isdigit() else str(value), found.source)


def prepare_fold(checkpoint: Checkpoint, layers: tuple[Layer, ...], bundle: Path, heads: tuple[Head, ...] | None,
                 code_cache: dict[str, Code], meta_width: int = 0) -> Fold:
    """Resolve the fold's settings, build its model (freezing user code into ``bundle``), load its weights
    strictly, and check that it runs and that its outputs fit ``heads`` (None: one head, whatever its size).

    ``layers`` are the settings above the checkpoint (options, config file), highest priority first;
    ``code_cache`` shares frozen code between folds; ``meta_width`` is the metadata features per image (0: none).
    """
    path = checkpoint.fold.path
    layers = (*layers, carried_layer(checkpoint.carried))
    sources: dict[str, Sourced] = {}
    asked: list[str] = []

    kwargs_s = lookup("model_kwargs", *layers)
    kwargs = read_mapping(kwargs_s.value, "model_kwargs", kwargs_s.source) if kwargs_s else {}
    refuse_file_keys(kwargs, "model_kwargs", kwargs_s.source if kwargs_s else "")
    if kwargs_s:
        sources["model_kwargs"] = Sourced(kwargs, kwargs_s.source)
    output = _model_output(layers)
    if output is not None:
        sources["model_output"] = output
    code_s = lookup("model_code", *layers)
    if code_s is not None:
        if code_s.value not in code_cache:
            code_cache[code_s.value] = code_io.freeze(code_s.value, code_s.source, bundle)
        arch = Sourced(str(code_s.value), code_s.source)
        sources["model_code"] = arch
        spec = _spec(checkpoint.fold.name, source="code", arch=arch.value, code=code_cache[code_s.value],
                     kwargs=kwargs, output=output.value if output else None)
        model = _build(spec, path, arch, bundle, asked)
        state, dropped = fit_state_dict(checkpoint.state_dict, set(model.state_dict()))
    else:
        arch = lookup("arch", *layers)
        if arch is None:
            raise ConfigError(f"{path}: no architecture is recorded for this fold; pass --arch (a timm model name) "
                              "or --model-code (your model's code)")
        sources["arch"] = arch
        probe = _build(_spec(checkpoint.fold.name, arch=str(arch.value), kwargs={"num_classes": 1000, **kwargs}),
                       path, arch, bundle, asked)
        state, dropped = fit_state_dict(checkpoint.state_dict, set(probe.state_dict()))
        num = _num_classes(layers, models.classifier_rows(probe, state), probe, state, path, arch)
        sources["num_classes"] = num
        spec = _spec(checkpoint.fold.name, arch=str(arch.value), kwargs={"num_classes": num.value, **kwargs},
                     output=output.value if output else None)
        model = _build(spec, path, arch, bundle, asked)
    _load_strictly(model, state, path, arch)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: weight {key!r} has {bad} NaN or infinite value(s); the run diverged")
    model.eval()

    preprocess = _preprocess(layers, model, arch, path, sources)
    takes_metadata = models.forward_takes_metadata(model)
    if takes_metadata and not meta_width:
        raise ConfigError(f"{path}: the model's forward takes a second input (metadata), but no metadata is declared; "
                          "pass --metadata-columns or --metadata-encoder")
    spec = replace(spec, preprocess=preprocess, takes_metadata=takes_metadata)
    found_heads = _check_forward(model, spec, heads, meta_width, path)
    requirements: dict[str, str] = {}
    if spec.code is not None:
        replay = code_io.replay(bundle, spec.code, spec, preprocess.input_size, meta_width if takes_metadata else 0)
        asked, requirements = replay.asked, replay.distributions
    return Fold(name=checkpoint.fold.name, checkpoint=path, entry=checkpoint.entry, spec=spec, model=model,
                heads=found_heads, sources=sources, dropped_keys=dropped, recorded=checkpoint.carried,
                why=checkpoint.fold.why, asked=asked, requirements=requirements)


def _num_classes(layers: tuple[Layer, ...], head: int | None, probe: torch.nn.Module, state: dict[str, torch.Tensor],
                 path: Path, arch: Sourced) -> Sourced:
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
    return num


def _timm_config_holder(model: torch.nn.Module) -> torch.nn.Module | None:
    """The model, or its first submodule (a timm backbone), that carries timm's pretrained_cfg."""
    for module in model.modules():
        if isinstance(getattr(module, "pretrained_cfg", None), dict):
            return module
    return None


def _preprocess(layers: tuple[Layer, ...], model: torch.nn.Module, arch: Sourced, path: Path,
                sources: dict[str, Sourced]) -> Preprocess:
    """The eval transform from the layers, falling back to timm's defaults for the model (or for the timm backbone
    inside a user's model); a model that carries no pretrained_cfg needs its input size given."""
    holder = _timm_config_holder(model)
    if holder is not None:
        defaults = resolve_data_config({}, model=holder)
        name = holder.pretrained_cfg.get("architecture") or arch.value
        default_source = f"timm default for {name}" + ("" if holder is model else " (the model's timm backbone)")
        default_size: Sourced | None = Sourced(tuple(defaults["input_size"]), default_source)
    else:
        defaults = resolve_data_config(pretrained_cfg={"input_size": (3, 224, 224)})  # timm's defaults for the rest
        default_source = "timm's default (the model carries no timm pretrained_cfg)"
        default_size = None
    input_size = _input_size(layers, default_size)
    if input_size is None:
        raise ConfigError(f"{path}: {arch.value} carries no timm pretrained_cfg to take the input size from; pass "
                          "--img-size (and --mean/--std, --crop-pct if they are not timm's defaults)")
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


def _check_forward(model: torch.nn.Module, spec: ModelSpec, heads: tuple[Head, ...] | None, meta_width: int,
                   path: Path) -> tuple[Head, ...]:
    """Run a batch of two; the outputs must fit ``heads`` (or be one [2, C] head when none are declared)."""
    batch = torch.rand(2, *spec.preprocess.input_size, generator=torch.Generator().manual_seed(0))
    inputs = (batch, torch.zeros(2, meta_width)) if spec.takes_metadata else (batch,)
    try:
        with torch.inference_mode():
            out = model(*inputs)
    except Exception as e:
        raise CheckpointError(
            f"{path}: a forward pass on a batch of shape {tuple(batch.shape)} fails: {type(e).__name__}: {e}; "
            "check --img-size (models like ViT take one fixed size) and --model-kwargs"
        ) from None
    if heads is None:
        picked = out[spec.output] if spec.output is not None and not isinstance(out, torch.Tensor) else out
        if not isinstance(picked, torch.Tensor) or picked.ndim not in (1, 2):
            raise ConfigError(f"{path}: the model returns {describe(picked)}; declare its heads with "
                              "--heads name=size,... or choose one output with --model-output")
        heads = (Head("output", 1 if picked.ndim == 1 else int(picked.shape[1])),)
    try:
        logits = models.split(out, spec, heads, 2)
    except BundleError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if not all(torch.isfinite(y).all() for y in logits):
        raise CheckpointError(f"{path}: the model returns NaN or infinite logits on a test batch")
    return heads
