"""The one model factory: a manifest model entry -> an ``nn.Module`` with its weights, loaded strictly.

``builder pack`` checks every fold through these functions and the runtime loads every model through them,
so a model that packs is a model that runs. A model is ``timm.create_model(arch, pretrained=False, **kwargs)``
or the user's factory from code frozen in the bundle (``submission.code``), called while downloads are stood in
for (``models.offline``); either way the weights then come from the bundle, loaded with ``strict=True``. A model
packed for an engine is its exported graph instead, run by ONNX Runtime or OpenVINO (``models.engines``); its
output is already the heads side by side.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

from submission import code as user_code
from submission.errors import BundleError
from submission.manifest import Head, ModelSpec, resolve_file, resolve_path
from submission.models import heads
from submission.models.engines import Engine, open_engine
from submission.models.offline import no_downloads

__all__ = ["Engine", "build", "classifier_rows", "forward_inputs", "load", "load_state", "split"]


def split(output: object, spec: ModelSpec, head_list: Sequence[Head], rows: int) -> list[torch.Tensor]:
    """Each head's logits from a model's output (``heads.split``); an engine's output is the heads side by side."""
    return heads.split(output, replace(spec, output=None) if spec.engine != "torch" else spec, head_list, rows)


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


def load(spec: ModelSpec, bundle: Path, device: torch.device, channels_last: bool = True,
         weights: Path | None = None, threads: int = 1) -> torch.nn.Module | Engine:
    """Build the model, load its weights strictly (from ``weights``, where the bundle's ``weights/`` lies when the
    image holds none), move it to ``device`` and set eval mode; or open its exported graph on its engine, with
    ``threads`` for its pool.

    channels_last (NHWC) convolutions are faster on GPUs and, through oneDNN, on CPUs too
    (benchmarks/bench_inference.py measures it); the numbers stay float32 on the CPU.
    """
    if spec.engine != "torch":
        try:
            return open_engine(spec.engine, resolve_file(bundle, spec.exported), device, threads)
        except BundleError as e:
            raise BundleError(f"model {spec.name!r}: {e}") from None
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
    model.eval().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
