"""Test helpers: tiny timm ensembles written as real bundles, and small test folders of real image files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from submission.manifest import (
    SCHEMA_VERSION,
    Decision,
    FileRef,
    Head,
    Manifest,
    ModelSpec,
    Output,
    Preprocess,
    sha256_file,
    write_manifest,
)

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def preprocess(size: int | tuple[int, int] = 64, **overrides: Any) -> Preprocess:
    h, w = (size, size) if isinstance(size, int) else size
    values = dict(input_size=(3, h, w), crop_mode="center", crop_pct=0.875, interpolation="bicubic", **IMAGENET)
    values.update(overrides)
    return Preprocess(**values)


def classes(n: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(n))


def output(fmt: str, class_names: tuple[str, ...], **overrides: Any) -> Output:
    columns = ("id", "label") if fmt in ("label", "labels") else ("id", *class_names)
    values = dict(format=fmt, id_column="id", columns=columns, label_as="name", decimals=6)
    values.update(overrides)
    return Output(**values)


def decision(thresholds: tuple[float, ...] = (), at_least_one: bool = False, top_k: int = 1, **rest: Any) -> Decision:
    values = dict(positive_class=None, cutoffs=(), new_class=None, new_threshold=None)
    values.update(rest)
    return Decision(tuple(thresholds), at_least_one, top_k, **values)


def manifest(
    models: tuple[ModelSpec, ...],
    task: str = "multiclass",
    fmt: str = "probs",
    tta: str = "none",
    merge: str = "mean",
    sample: FileRef | None = None,
    decode: str = "exact",
    **overrides: Any,
) -> Manifest:
    names = classes(models[0].kwargs["num_classes"])
    thresholds = (0.5,) * len(names) if task == "multilabel" else ()
    values = dict(
        schema_version=SCHEMA_VERSION,
        task=task,
        classes=names,
        models=models,
        tta=tta,
        merge=merge,
        decode=decode,
        heads=(Head("output", len(names)),),
        decision=decision(thresholds),
        output=output(fmt, names),
        sample_submission=sample,
        metadata=None,
        requirements=(),
    )
    values.update(overrides)
    return Manifest(**values)


def save_model(bundle: Path, name: str, arch: str, num_classes: int, pre: Preprocess, seed: int,
               weight: float = 1.0, **kwargs: Any) -> ModelSpec:
    """Create a randomly initialised timm model, save its weights as safetensors, return its manifest entry."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    with torch.no_grad():  # a larger head spreads the logits, so probabilities differ visibly between images
        for p in model.get_classifier().parameters():
            p.mul_(20.0)
    path = Path(bundle) / "weights" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    ref = FileRef(path=f"weights/{name}.safetensors", sha256=sha256_file(path))
    return ModelSpec(name=name, source="timm", arch=arch, code=None, kwargs={"num_classes": num_classes, **kwargs},
                     output=None, takes_metadata=False, weights=ref, weight=weight, preprocess=pre)


def three_fold_models(bundle: Path, num_classes: int = 4) -> tuple[ModelSpec, ...]:
    """Three different tiny architectures with different input sizes and preprocessing."""
    return (
        save_model(bundle, "fold0", "test_resnet", num_classes, preprocess(64), seed=0),
        save_model(bundle, "fold1", "test_efficientnet", num_classes,
                   preprocess(56, crop_mode="squash", crop_pct=1.0, interpolation="bilinear",
                              mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)), seed=1, weight=2.0),
        save_model(bundle, "fold2", "test_vit", num_classes, preprocess(64, crop_pct=0.95), seed=2, img_size=64),
    )


def write_sample(bundle: Path, ids: list[str], m_columns: tuple[str, ...]) -> FileRef:
    path = Path(bundle) / "sample_submission.csv"
    rows = [",".join(m_columns)] + [",".join([i] + ["0"] * (len(m_columns) - 1)) for i in ids]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return FileRef(path="sample_submission.csv", sha256=sha256_file(path))


def write_bundle(bundle: Path, m: Manifest) -> Path:
    Path(bundle).mkdir(parents=True, exist_ok=True)
    write_manifest(bundle, m)
    return Path(bundle)


def with_sample(bundle: Path, m: Manifest, ids: list[str]) -> Manifest:
    return replace(m, sample_submission=write_sample(bundle, ids, m.output.columns))


def make_images(folder: Path, n: int = 9, seed: int = 0) -> list[Path]:
    """Real image files of varied sizes, aspect ratios, formats and modes."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = [("jpg", "RGB"), ("png", "RGB"), ("png", "L"), ("jpeg", "RGB"), ("bmp", "RGB"), ("webp", "RGB"),
             ("png", "RGBA"), ("tif", "RGB"), ("JPG", "RGB")]
    paths = []
    for i in range(n):
        suffix, mode = kinds[i % len(kinds)]
        h, w = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        pixels = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
        pixels[: h // 2, : w // 3] = rng.integers(0, 256, size=channels)  # structure, so flips matter
        image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
        path = folder / f"img{i}.{suffix}"
        image.save(path, **({"quality": 95} if suffix.lower() in ("jpg", "jpeg") else {}))
        paths.append(path)
    return paths
