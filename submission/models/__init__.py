"""The one model factory: a manifest model entry -> what runs its forward pass.

A model packed for torch is an ``nn.Module`` built and loaded strictly by ``models.eager`` (imported only then, so
that an image whose models all run on an engine needs no torch); a model packed for an engine is its exported
graph, run by ONNX Runtime or OpenVINO (``models.engines``), whose output is already the heads side by side.
``builder pack`` checks every fold through these functions and the runtime loads every model through them, so a
model that packs is a model that runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from submission.errors import BundleError
from submission.manifest import Head, ModelSpec, resolve_file
from submission.models import heads
from submission.models.engines import Engine, open_engine

__all__ = ["Engine", "load", "split"]


def split(output: object, spec: ModelSpec, head_list: Sequence[Head], rows: int) -> list[Any]:
    """Each head's logits from a model's output (``heads.split``); an engine's output is the heads side by side."""
    return heads.split(output, replace(spec, output=None) if spec.engine != "torch" else spec, head_list, rows)


def load(spec: ModelSpec, bundle: Path, device: Any, channels_last: bool = True, weights: Path | None = None,
         threads: int = 1) -> Any:
    """The eager model on ``device`` with its weights (from ``weights``, where the bundle's ``weights/`` lies when
    the image holds none), in eval mode; or its exported graph on its engine, with ``threads`` for its pool."""
    if spec.engine == "torch":
        from submission.models import eager

        return eager.load(spec, bundle, device, channels_last, weights)
    try:
        return open_engine(spec.engine, resolve_file(bundle, spec.exported), device, threads)
    except BundleError as e:
        raise BundleError(f"model {spec.name!r}: {e}") from None
