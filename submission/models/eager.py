"""Eager PyTorch models: a manifest model entry -> an ``nn.Module`` with its weights, loaded strictly, and its
forward pass on a batch.

``builder pack`` checks every fold through these functions and the runtime loads every eager model through them,
so a model that packs is a model that runs. A model is ``timm.create_model(arch, pretrained=False, **kwargs)``
or the user's factory from code frozen in the bundle (``submission.code``), called while downloads are stood in
for (``models.offline``); either way the weights then come from the bundle, loaded with ``strict=True``.

The forward pass takes the group's batch as the loader made it (uint8 pixels, or an albumentations transform's
floats) to the model's device, normalises it there and stacks its TTA views, under bf16/fp16 autocast on a GPU;
CUDA running out of memory splits the batch in halves.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from safetensors.torch import load_file

from submission import code as user_code
from submission.errors import BundleError, DeviceError
from submission.inputs.preprocess import normalize
from submission.manifest import ModelSpec, Preprocess, resolve_file, resolve_path
from submission.models.offline import no_downloads
from submission.tta import stack_views


def _build_timm(spec: ModelSpec) -> torch.nn.Module:
    if not timm.is_model(spec.arch):
        close = difflib.get_close_matches(spec.arch, timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise BundleError(f"{spec.arch!r} is not a timm model name in timm {timm.__version__}{hint}")
    try:
        return timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
    except Exception as e:  # timm raises RuntimeError for unknown names, TypeError for bad kwargs
        raise BundleError(f"timm {timm.__version__} cannot create {spec.arch!r} with {spec.kwargs}: {e}") from None


def _build_code(spec: ModelSpec, bundle: Path, asked: list[str]) -> torch.nn.Module:
    code = spec.code
    if code is None:
        raise BundleError(f"model {spec.name!r} has source 'code' but no code")
    root = resolve_path(bundle, code.root)
    with user_code.imported(code, bundle) as module, no_downloads() as requests:
        factory = user_code.attribute(module, code)
        try:
            model = factory(**spec.kwargs)
        except BundleError:
            raise
        except Exception as e:
            where = user_code.where_in(e, root)
            raise BundleError(f"{spec.arch}({', '.join(f'{k}={v!r}' for k, v in spec.kwargs.items())}) fails"
                              f"{f' at {where}' if where else ''}: {type(e).__name__}: {e}") from None
    asked.extend(requests)
    if not isinstance(model, torch.nn.Module):
        raise BundleError(f"{spec.arch} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def build(spec: ModelSpec, bundle: Path | None = None, asked: list[str] | None = None) -> torch.nn.Module:
    """The bare architecture, rebuilt from what the manifest says; its weights are not the checkpoint's yet.
    Pretrained weights a user's constructor asks for are not fetched; they are added to ``asked``."""
    if spec.source == "timm":
        return _build_timm(spec)
    if bundle is None:
        raise ValueError("a model of the user's code is built from a bundle")
    return _build_code(spec, bundle, asked if asked is not None else [])


def classifier_rows(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """Rows of the classifier weight in ``state`` (the number of classes the weights were trained for), found
    through timm's ``pretrained_cfg['classifier']``; None when the model does not name its classifier."""
    heads = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def forward_inputs(model: torch.nn.Module) -> tuple[int, int, str | None]:
    """(inputs ``forward`` requires, inputs it accepts, the name of its second parameter): ``forward(self, x,
    x_meta=None)`` requires 1 and accepts 2, ``forward(self, x, meta)`` requires 2; ``*args`` accepts any."""
    parameters = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    required = len([p for p in parameters if p.kind != p.VAR_POSITIONAL and p.default is p.empty])
    accepts = 1_000 if any(p.kind == p.VAR_POSITIONAL for p in parameters) else len(parameters)
    second = parameters[1].name if len(parameters) > 1 else None
    return required, accepts, second


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict(strict=True)``; a mismatch names the missing and unexpected keys on one line."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = str(e).replace("\n\t", " ").replace("\n", " ")
        raise BundleError(detail[:1500]) from None


def load(spec: ModelSpec, bundle: Path, device: Any, channels_last: bool = True,
         weights: Path | None = None) -> torch.nn.Module:
    """Build the model, load its weights strictly (from ``weights``, where the bundle's ``weights/`` lies when the
    image holds none), move it to ``device`` and set eval mode.

    channels_last (NHWC) convolutions are faster on GPUs and, through oneDNN, on CPUs too
    (benchmarks/bench_inference.py measures it); the numbers stay float32 on the CPU.
    """
    try:
        model = build(spec, bundle)
        try:
            state = load_file(str(resolve_file(weights or bundle, spec.weights)))
        except BundleError:
            raise
        except Exception as e:
            raise BundleError(f"cannot read {spec.weights.path}: {e}") from None
        try:
            load_state(model, state)
        except BundleError as e:
            raise BundleError(f"{spec.weights.path} does not fit {spec.arch!r}: {e}") from None
    except BundleError as e:
        raise BundleError(f"model {spec.name!r}: {e}") from None
    model.eval().to(str(device))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def set_threads(threads: int) -> None:
    """torch's CPU pool: ``threads`` (it would take every core of the host, not the container's quota)."""
    torch.set_num_threads(threads)


def inputs(pixels: Any, pre: Preprocess, normalizes: bool, views: Sequence[str], device: Any,
           channels_last: bool = True) -> torch.Tensor:
    """A group's loader batch (numpy, [B, C, H, W]) -> the eager models' input on ``device``: normalised there
    (unless the transform already was), every view stacked, channels_last."""
    x = torch.as_tensor(pixels).to(str(device), non_blocking=True)
    if normalizes:
        x = normalize(x, pre)
    x = stack_views(x, views)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def autocast(device: Any) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPUs that support it, fp16 on older ones; plain float32 on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def forward(model: torch.nn.Module, inputs: tuple[Any, ...], device: Any, log: Callable[[str], None],
            name: str = "") -> Any:
    """The model on ``inputs`` (the images, and the metadata features where the model takes them: numpy features
    go to the device); on CUDA out-of-memory the batch is split in halves and retried, and the halves' outputs
    joined again. Any other failure is the model's own (``predict.forward`` names the model with it)."""
    inputs = tuple(torch.as_tensor(t).to(str(device)) if isinstance(t, np.ndarray) else t for t in inputs)
    try:
        with torch.inference_mode(), autocast(device):
            return model(*inputs)
    except torch.cuda.OutOfMemoryError:
        return _split_forward(model, inputs, device, log, name)


def _split_forward(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: Any,
                   log: Callable[[str], None], name: str) -> Any:
    """The forward pass in two halves, after CUDA ran out of memory on the whole batch."""
    rows = len(inputs[0])
    if rows == 1:
        raise DeviceError("CUDA out of memory on a single image: use a GPU with more memory, or --device cpu") from None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    half = rows // 2
    log(f"CUDA out of memory on a forward pass of {rows} images: split into {half} + {rows - half}, retried")
    first = forward(model, tuple(t[:half] for t in inputs), device, log, name)
    second = forward(model, tuple(t[half:] for t in inputs), device, log, name)
    return _join(first, second)


def _join(first: Any, second: Any) -> Any:
    """Concatenate two outputs of one model (tensors, or tuples/dicts of them) along the batch."""
    if isinstance(first, torch.Tensor):
        return torch.cat([first, second])
    if isinstance(first, dict):
        return {k: _join(first[k], second[k]) for k in first}
    return type(first)(_join(a, b) for a, b in zip(first, second))
