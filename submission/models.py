"""Manifest model entries -> timm modules in eval mode with their safetensors weights, loaded strictly."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

from submission.errors import BundleError
from submission.manifest import ModelSpec


def create(spec: ModelSpec) -> torch.nn.Module:
    """The bare architecture, rebuilt from what the manifest says (never downloads weights)."""
    try:
        return timm.create_model(spec.arch, pretrained=False, num_classes=spec.num_classes, **spec.kwargs)
    except Exception as e:  # timm raises RuntimeError for unknown names, TypeError for bad kwargs
        raise BundleError(
            f"model {spec.name!r}: timm {timm.__version__} cannot create {spec.arch!r} with "
            f"num_classes={spec.num_classes}, kwargs={spec.kwargs}: {e}; install the timm version the bundle "
            "was packed with"
        ) from None


def load(spec: ModelSpec, weights_path: Path, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Build the model, load its weights with strict=True, move it to ``device`` and set eval mode.

    channels_last (NHWC) convolutions are faster on GPUs and, through oneDNN, on CPUs too
    (benchmarks/bench_inference.py measures it); the numbers stay float32 on the CPU.
    """
    model = create(spec)
    try:
        state = load_file(str(weights_path))
    except Exception as e:
        raise BundleError(f"model {spec.name!r}: cannot read {spec.weights.path}: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(
            f"model {spec.name!r}: {spec.weights.path} does not fit {spec.arch!r}: {e}"
        ) from None
    model.eval().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
