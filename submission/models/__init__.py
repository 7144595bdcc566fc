"""The one model factory: a manifest model entry -> an ``nn.Module`` with its weights, loaded strictly.

``builder pack`` checks every fold through these functions and the runtime loads every model through them,
so a model that packs is a model that runs. Building never downloads weights (``pretrained=False``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

from submission.errors import BundleError
from submission.manifest import ModelSpec


def build(spec: ModelSpec) -> torch.nn.Module:
    """The bare architecture, rebuilt from what the manifest says; its weights are still random."""
    if not timm.is_model(spec.arch):
        close = difflib.get_close_matches(spec.arch, timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise BundleError(f"{spec.arch!r} is not a timm model name in timm {timm.__version__}{hint}")
    try:
        return timm.create_model(spec.arch, pretrained=False, num_classes=spec.num_classes, **spec.kwargs)
    except Exception as e:  # timm raises RuntimeError for unknown names, TypeError for bad kwargs
        raise BundleError(
            f"timm {timm.__version__} cannot create {spec.arch!r} with num_classes={spec.num_classes}, "
            f"kwargs={spec.kwargs}: {e}"
        ) from None


def classifier_rows(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """Rows of the classifier weight in ``state`` (the number of classes the weights were trained for), found
    through timm's ``pretrained_cfg['classifier']``; None when the model does not name its classifier."""
    heads = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict(strict=True)``; a mismatch names the missing and unexpected keys on one line."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = str(e).replace("\n\t", " ").replace("\n", " ")
        raise BundleError(detail[:1500]) from None


def load(spec: ModelSpec, weights_path: Path, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Build the model, load its weights strictly, move it to ``device`` and set eval mode.

    channels_last (NHWC) convolutions are faster on GPUs and, through oneDNN, on CPUs too
    (benchmarks/bench_inference.py measures it); the numbers stay float32 on the CPU.
    """
    try:
        model = build(spec)
        try:
            state = load_file(str(weights_path))
        except Exception as e:
            raise BundleError(f"cannot read {spec.weights.path}: {e}") from None
        try:
            load_state(model, state)
        except BundleError as e:
            raise BundleError(f"{spec.weights.path} does not fit {spec.arch!r}: {e}") from None
    except BundleError as e:
        raise BundleError(f"model {spec.name!r}: {e}") from None
    model.eval().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def logits(output: object, spec: ModelSpec, rows: int, n_classes: int) -> torch.Tensor:
    """The model's output as [rows, n_classes] float logits, or a BundleError naming what it returned."""
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (rows, n_classes):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise BundleError(f"model {spec.name!r} returned {shape} for {rows} images, expected ({rows}, {n_classes})")
    return output.float()
