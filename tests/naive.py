"""The obviously-correct computation the runtime is compared to: each fold, each TTA view, one image at a time,
with timm's own eval transform, the model called directly, merged per head in plain numpy, heads combined by an
explicit loop over the composite classes. Defined here independently of the runtime's code."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from unittest import mock

import albumentations as A
import numpy as np
import timm
import torch
import torchvision
from PIL import Image, ImageOps
from safetensors.torch import load_file
from timm.data import create_transform

from submission.manifest import Manifest, ModelSpec, load_manifest

FIXTURES = Path(__file__).parent / "fixtures" / "models"

# The TTA presets as sets of numpy operations on an (H, W, C) array.
NUMPY_TTA = {
    "none": [lambda a: a],
    "hflip": [lambda a: a, lambda a: a[:, ::-1]],
    "vflip": [lambda a: a, lambda a: a[::-1]],
    "flips": [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1]],
    "d4": [lambda a, k=k, f=f: np.rot90(a[:, ::-1] if f else a, k) for f in (0, 1) for k in range(4)],
}


def fixture(relative: str) -> ModuleType:
    """A fixture model file imported under a name of its own (as the tests would import the user's file)."""
    path = FIXTURES / relative
    spec = importlib.util.spec_from_file_location(f"fixture_{path.stem}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def importable(folder: Path) -> Iterator[None]:
    """``folder`` on sys.path for a while; the modules imported from it are forgotten afterwards."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
                del sys.modules[name]


@contextlib.contextmanager
def without_downloads() -> Iterator[None]:
    """timm and torchvision build their models with no pretrained weights (mocks, not the runtime's way)."""
    with mock.patch("timm.models._builder.load_pretrained"), \
            mock.patch.object(torchvision.models._api.WeightsEnum, "verify", classmethod(lambda cls, obj: None)):
        yield


def timm_model(spec: ModelSpec) -> torch.nn.Module:
    return timm.create_model(spec.arch, pretrained=False, **spec.kwargs)


def _transform(spec: ModelSpec) -> Callable[[Image.Image], torch.Tensor]:
    pre = spec.preprocess
    if pre.albumentations is None:
        return create_transform(input_size=pre.input_size, is_training=False, interpolation=pre.interpolation,
                                mean=pre.mean, std=pre.std, crop_pct=pre.crop_pct, crop_mode=pre.crop_mode)
    album = A.from_dict(pre.albumentations)
    return lambda image: album(image=np.asarray(image))["image"]


def _heads(output: object, m: Manifest, spec: ModelSpec) -> list[np.ndarray]:
    if spec.output is not None:
        output = output[spec.output]
    if isinstance(output, dict):
        output = [output[h.name] for h in m.heads]
    if isinstance(output, torch.Tensor):
        output = list(output.split([h.size for h in m.heads], dim=-1)) if output.ndim == 2 else [output[:, None]]
    return [o[0].double().numpy() for o in output]


def _act(z: np.ndarray, task: str) -> np.ndarray:
    if task == "multiclass":
        e = np.exp(z - z.max())
        return e / e.sum()
    return 1 / (1 + np.exp(-z)) if task == "multilabel" else z


def probabilities(bundle: Path, paths: list[Path], build: Callable[[ModelSpec], torch.nn.Module] = timm_model,
                  features: np.ndarray | None = None,
                  prepare: Callable[[Image.Image], Image.Image] | None = None) -> np.ndarray:
    """[N, C] class probabilities of the bundle's ensemble on ``paths``; ``build`` makes each fold's module (its
    weights are then loaded from the bundle); ``features`` are the images' metadata rows; ``prepare`` is applied to
    each decoded image before the transform (the user's own preprocessing, called directly)."""
    m = load_manifest(bundle)
    per_model = []  # [M][N][V][H] logit vectors
    for spec in m.models:
        model = build(spec).eval()
        model.load_state_dict(load_file(str(bundle / spec.weights.path)))
        transform = _transform(spec)
        outputs = []
        for i, path in enumerate(paths):
            with Image.open(path) as image:
                rgb = ImageOps.exif_transpose(image).convert("RGB")
            if prepare is not None:
                rgb = prepare(rgb)
            hwc = transform(rgb).permute(1, 2, 0).numpy()
            views = []
            for tta in NUMPY_TTA[m.tta]:
                x = torch.from_numpy(np.ascontiguousarray(tta(hwc))).permute(2, 0, 1)[None].float()
                inputs = (x, torch.from_numpy(features[i : i + 1]).float()) if spec.takes_metadata else (x,)
                with torch.no_grad():
                    views.append(_heads(model(*inputs), m, spec))
            outputs.append(views)
        per_model.append(outputs)

    weights = [spec.weight for spec in m.models]
    result = []
    for i in range(len(paths)):
        heads = []
        for h in range(len(m.heads)):
            total = 0.0
            for w, outputs in zip(weights, per_model):
                views = [v[h] for v in outputs[i]]
                if m.merge == "mean":
                    total = total + w * np.mean([_act(z, m.task) for z in views], axis=0)
                elif m.merge == "gmean":
                    total = total + w * np.mean([np.log(_act(z, m.task)) for z in views], axis=0)
                else:
                    total = total + w * np.mean(views, axis=0)
            total = total / sum(weights)
            if m.merge == "gmean":
                total = np.exp(total)
                total = total / total.sum() if m.task == "multiclass" else total
            elif m.merge == "logits":
                total = _act(total, m.task)
            heads.append(total)
        if len(heads) == 1:
            result.append(heads[0])
        elif m.task == "multiclass":  # class index = h0 * K1 * K2 + h1 * K2 + h2, probability = the product
            result.append(np.array([np.prod([heads[h][j] for h, j in enumerate(combo)])
                                    for combo in itertools.product(*[range(head.size) for head in m.heads])]))
        else:
            result.append(np.concatenate(heads))
    return np.array(result)
