"""One checkpoint + its resolved settings -> a checked fold: built by the runtime's model factory (a timm
architecture, or the user's code frozen in the bundle), loaded strictly, finite, fed by the runtime's own
preprocessing, called with its metadata where it takes any, and run on a batch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import resolve_data_config

from builder.errors import CheckpointError, CodeError, ConfigError
from builder.pack import code as code_io
from builder.pack.checkpoints import Checkpoint, fit_state_dict
from builder.pack.metadata import DeclaredMetadata
from builder.pack.resolve import FoldSettings
from builder.pack.settings import Sourced
from submission import models
from submission.errors import BundleError, SubmissionError
from submission.inputs.preprocess import Preprocessor
from submission.manifest import Code, FileRef, Head, ModelSpec, Preprocess
from submission.models import eager
from submission.models.heads import describe

PLACEHOLDER = FileRef("weights/unsaved.safetensors", "0" * 64)  # a spec's weights before the bundle is written
UNKNOWN_SIZE = Preprocess((3, 224, 224), "center", 1.0, "bilinear", (0.5,) * 3, (0.5,) * 3)  # before it is known
PROBE_SHAPES = ((300, 200), (257, 341))  # (height, width) of the generated images the preprocessing is tried on
META_PROBE_WIDTH = 0  # the features a batch check gives a metadata model whose width is not known at pack time


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
    call: str = ""  # how the model is called, and why: "forward(image, meta): ..."
    engines: list = field(default_factory=list)  # the engines measured for it, and the gate's figures (pack report)
    unchecked: str = ""  # what could not be run at pack time, and what to pass so it is

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def preprocess(self) -> Preprocess:
        return self.spec.preprocess


@dataclass
class _Built:
    model: torch.nn.Module
    spec: ModelSpec
    state: dict[str, torch.Tensor]  # the checkpoint's weights, renamed to the model's keys
    dropped: list[str]
    arch: Sourced  # the timm name or the factory, and where it came from
    sources: dict[str, Sourced]
    asked: list[str]


def prepare_fold(checkpoint: Checkpoint, settings: FoldSettings, bundle: Path, heads: tuple[Head, ...] | None,
                 code_cache: dict[str, Code], metadata: DeclaredMetadata | None = None,
                 classes: int | None = None) -> Fold:
    """Build the fold's model from its ``settings`` (freezing user code into ``bundle``), load its weights
    strictly, resolve its preprocessing and run it as the runtime will, and check that the model runs and that its
    outputs fit ``heads`` (None: one head, whatever its size). ``code_cache`` shares frozen code between folds;
    ``classes`` is the number of class names given, for a model that cannot be run at pack time."""
    path = checkpoint.fold.path
    built = _build(checkpoint, settings, bundle, code_cache)
    _load_checked(built, path)
    preprocess = _preprocess(settings, built, path, bundle, code_cache)
    takes, call = _metadata_call(built.model, metadata, path)
    spec = replace(built.spec, preprocess=preprocess, takes_metadata=takes)
    width = metadata.metadata.width if metadata and takes else 0
    unchecked = "" if width is not None else (
        "not run on a batch: the metadata encoder's width is known only from a metadata file; pass --train-metadata "
        "or --metadata-width to check it at pack time")
    if width is not None:
        found_heads = _check_forward(built.model, spec, heads, width, path)
    else:
        found_heads = _unrun_heads(heads, spec, classes, path)
    asked, requirements = built.asked, {}
    for code in (c for c in (spec.code, preprocess.function) if c is not None):
        model_spec = spec if code is spec.code else None
        run = preprocess.input_size if width is not None else None
        replay = code_io.replay(bundle, code, model_spec, run, width or 0 if takes else 0)
        asked = replay.asked if model_spec is not None else asked
        requirements.update(replay.distributions)
    return Fold(name=checkpoint.fold.name, checkpoint=path, entry=checkpoint.entry, spec=spec, model=built.model,
                heads=found_heads, sources=built.sources, dropped_keys=built.dropped, recorded=checkpoint.carried,
                why=checkpoint.fold.why, asked=asked, requirements=requirements, call=call, unchecked=unchecked)


def _spec(name: str, **fields: Any) -> ModelSpec:
    values = dict(source="timm", code=None, kwargs={}, output=None, takes_metadata=False, weights=PLACEHOLDER,
                  weight=1.0, preprocess=UNKNOWN_SIZE)
    values.update(fields)
    try:
        return ModelSpec(name=name, **values)
    except BundleError as e:
        raise ConfigError(f"fold {name!r}: {e}") from None


def _construct(spec: ModelSpec, path: Path, arch: Sourced, bundle: Path, asked: list[str]) -> torch.nn.Module:
    try:
        return eager.build(spec, bundle, asked)
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


def _build(checkpoint: Checkpoint, s: FoldSettings, bundle: Path, code_cache: dict[str, Code]) -> _Built:
    """The fold's model (timm's, or the user's factory), its spec, and the checkpoint's weights fitted to it."""
    path, name = checkpoint.fold.path, checkpoint.fold.name
    kwargs = s.model_kwargs.value if s.model_kwargs else {}
    output = s.model_output.value if s.model_output else None
    sources = {k: v for k, v in (("model_kwargs", s.model_kwargs), ("model_output", s.model_output)) if v is not None}
    asked: list[str] = []
    if s.model_code is not None:
        code = _frozen(s.model_code, bundle, code_cache)
        arch = Sourced(code_io.display(s.model_code.value), s.model_code.source)
        sources["model_code"] = arch
        spec = _spec(name, source="code", arch=arch.value, code=code, kwargs=kwargs, output=output)
        model = _construct(spec, path, arch, bundle, asked)
        state, dropped = fit_state_dict(checkpoint.state_dict, set(model.state_dict()))
        return _Built(model, spec, state, dropped, arch, sources, asked)
    arch = s.arch
    if arch is None:
        raise ConfigError(f"{path}: no architecture is recorded for this fold; pass --arch (a timm model name) "
                          "or --model-code (your model's code)")
    sources["arch"] = arch
    probe = _construct(_spec(name, arch=arch.value, kwargs={"num_classes": 1000, **kwargs}), path, arch, bundle, asked)
    state, dropped = fit_state_dict(checkpoint.state_dict, set(probe.state_dict()))
    num = _num_classes(s.num_classes, eager.classifier_rows(probe, state), probe, state, path, arch)
    sources["num_classes"] = num
    spec = _spec(name, arch=arch.value, kwargs={"num_classes": num.value, **kwargs}, output=output)
    return _Built(_construct(spec, path, arch, bundle, asked), spec, state, dropped, arch, sources, asked)


def _frozen(value: Sourced, bundle: Path, code_cache: dict[str, Code]) -> Code:
    if value.value not in code_cache:
        code_cache[value.value] = code_io.freeze(value.value, value.source, bundle)
    return code_cache[value.value]


def _load_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: Sourced) -> None:
    try:
        eager.load_state(model, state)
    except BundleError as e:
        raise CheckpointError(
            f"{path} does not load strictly into {arch.value!r} (from {arch.source}): {e}. "
            "Check --arch/--model-code, --num-classes and --model-kwargs against the training run"
        ) from None


def _load_checked(built: _Built, path: Path) -> None:
    """Strict load, finite weights, eval mode."""
    _load_strictly(built.model, built.state, path, built.arch)
    for key, tensor in built.state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: weight {key!r} has {bad} NaN or infinite value(s); the run diverged")
    built.model.eval()


def _num_classes(num: Sourced | None, head: int | None, probe: torch.nn.Module, state: dict[str, torch.Tensor],
                 path: Path, arch: Sourced) -> Sourced:
    if num is None:
        if head is None:
            _load_strictly(probe, state, path, arch)  # names the keys at fault when the weights do not fit at all
            raise ConfigError(f"{path}: cannot tell the number of classes from the weights; pass --num-classes")
        return Sourced(head, f"{path.name} classifier weight")
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


def _preprocess(s: FoldSettings, built: _Built, path: Path, bundle: Path, code_cache: dict[str, Code]) -> Preprocess:
    """The eval transform: the settings, falling back to timm's defaults for the model (or for the timm backbone
    inside a user's model); with an albumentations transform, its own output size. It is then run, as the runtime
    runs it, on generated images, so that pack never writes a bundle the runtime would refuse."""
    holder = _timm_config_holder(built.model)
    if holder is not None:
        defaults = resolve_data_config({}, model=holder)
        name = holder.pretrained_cfg.get("architecture") or built.arch.value
        default_source = f"timm default for {name}" + ("" if holder is built.model else " (the model's timm backbone)")
        default_size: Sourced | None = Sourced(tuple(defaults["input_size"]), default_source)
    else:
        defaults = resolve_data_config(pretrained_cfg={"input_size": (3, 224, 224)})  # timm's defaults for the rest
        default_source = "timm's default (the model carries no timm pretrained_cfg)"
        default_size = None
    sources = built.sources
    values: dict[str, Any] = {}
    for name in ("crop_pct", "crop_mode", "interpolation", "mean", "std"):
        sources[name] = getattr(s, name) or Sourced(defaults.get(name), default_source)
        values[name] = sources[name].value
    function = _frozen(s.preprocess, bundle, code_cache) if s.preprocess else None
    for name in ("albumentations", "preprocess"):
        if getattr(s, name) is not None:
            sources[name] = getattr(s, name)

    def make(size: tuple[int, int, int]) -> Preprocess:
        try:
            return Preprocess(input_size=size, crop_mode=str(values["crop_mode"] or "center"),
                              crop_pct=float(values["crop_pct"]), interpolation=str(values["interpolation"]),
                              mean=tuple(float(v) for v in values["mean"]), std=tuple(float(v) for v in values["std"]),
                              albumentations=s.albumentations.value if s.albumentations else None, function=function)
        except BundleError as e:
            raise ConfigError(f"{path}: {e}") from None

    size = s.input_size
    if s.albumentations is not None:
        made = _transform_size(make(size.value if size else (3, 1, 1)), path, bundle)
        if size is not None and size.value != made:
            raise ConfigError(f"{path}: the albumentations transform from {s.albumentations.source} makes "
                              f"{made[1]}x{made[2]}, but the input size from {size.source} is {size.value[1]}x"
                              f"{size.value[2]}; drop the input size or fix the transform")
        size = Sourced(made, f"the albumentations transform ({s.albumentations.source}) makes {made[1]}x{made[2]}")
    size = size or default_size
    if size is None:
        raise ConfigError(f"{path}: {built.arch.value} carries no timm pretrained_cfg to take the input size from; pass "
                          "--img-size (and --mean/--std, --crop-pct if they are not timm's defaults)")
    sources["input_size"] = size
    preprocess = make(size.value)
    _run_as_the_runtime(preprocess, path, bundle)
    return preprocess


def _probes() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in PROBE_SHAPES]


def _transform_size(pre: Preprocess, path: Path, bundle: Path) -> tuple[int, int, int]:
    """The input size an albumentations transform makes, the same for images of two sizes."""
    runtime = Preprocessor(pre, path.name, bundle, check_size=False)
    try:
        shapes = {tuple(runtime(image).shape) for image in _probes()}
    except SubmissionError as e:
        raise ConfigError(f"{path}: the preprocessing fails on a generated image: {e}") from None
    if len(shapes) != 1:
        raise ConfigError(f"{path}: the albumentations transform makes images of different sizes "
                          f"({', '.join(str(s) for s in sorted(shapes))}) from images of different sizes; end it with "
                          "a Resize or a crop to one size")
    return shapes.pop()  # type: ignore[return-value]


def _run_as_the_runtime(pre: Preprocess, path: Path, bundle: Path) -> None:
    """The runtime's own transform on generated images: what it refuses is refused here; the user's function must
    give the same output twice (it runs once per image, in any loader worker)."""
    runtime = Preprocessor(pre, path.name, bundle)
    for image in _probes():
        try:
            first = runtime(image)
            if pre.function is not None and not np.array_equal(first, runtime(image)):
                raise ConfigError(f"{path}: the preprocessing function {pre.function.module}.{pre.function.attribute} "
                                  "gives different outputs for the same image; make it deterministic (seed any "
                                  "randomness, or drop it)")
        except SubmissionError as e:
            raise ConfigError(f"{path}: the runtime would refuse this fold's preprocessing: {e}") from None


def _metadata_call(model: torch.nn.Module, metadata: DeclaredMetadata | None, path: Path) -> tuple[bool, str]:
    """Whether the model is called with the image's metadata features, and why."""
    required, accepts, second = eager.forward_inputs(model)
    where = f"{type(model).__name__}.forward"
    if metadata is not None:
        declared = " and ".join(v.source for k, v in metadata.sources.items() if k in ("metadata_columns",
                                                                                     "metadata_encoder"))
        if accepts < 2:  # an image-only model beside metadata models (the ensemble must have one: check_folds)
            return False, f"forward(image): {where} takes the image alone, though metadata is declared ({declared})"
        optional = " (optional in its signature)" if required < 2 else ""
        return True, f"forward(image, {second}): metadata is declared ({declared}) and {where} takes {second}{optional}"
    if required >= 2:
        raise ConfigError(f"{path}: the model's forward takes a second input (metadata), but no metadata is declared; "
                          "pass --metadata-columns or --metadata-encoder")
    extra = f" ({second} is optional, and no metadata is declared)" if accepts >= 2 and second else ""
    return False, f"forward(image){extra}"


def _unrun_heads(heads: tuple[Head, ...] | None, spec: ModelSpec, classes: int | None, path: Path) -> tuple[Head, ...]:
    """The heads of a model that cannot be run at pack time: as declared, or one head of the classes' size."""
    if heads is not None:
        return heads
    size = spec.kwargs.get("num_classes") if spec.source == "timm" else classes
    if not isinstance(size, int):
        raise ConfigError(f"{path}: the model takes metadata of a width known only from a metadata file, so it cannot "
                          "be run at pack time to see its outputs: pass --train-metadata or --metadata-width (or "
                          "--classes, or --heads)")
    return (Head("output", size),)


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
