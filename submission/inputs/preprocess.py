"""Decoded RGB image -> model input: timm's eval resize/crop on the CPU, normalisation on the device.

The resize and crop reproduce ``timm.data.create_transform(..., is_training=False)`` exactly (same PIL calls,
same rounding), so predictions match what the user saw when validating with timm. Pixels travel to the
device as uint8 (a quarter of the bytes of float32) and are normalised there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from submission.errors import BundleError
from submission.manifest import Preprocess

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def _scaled_size(image_hw: tuple[int, int], target_hw: tuple[int, int], longest: float) -> tuple[int, int]:
    """timm's ResizeKeepRatio: one scale for both sides, fitting the shorter (0) or longer (1) side."""
    ratio_h, ratio_w = image_hw[0] / target_hw[0], image_hw[1] / target_hw[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(image_hw[0] / ratio), round(image_hw[1] / ratio)


def _resize_target(pre: Preprocess) -> tuple[int, int]:
    """The (height, width) box the resize fits the image to, before the crop."""
    return math.floor(pre.size[0] / pre.crop_pct), math.floor(pre.size[1] / pre.crop_pct)


def fast_decode_keep(pres: Sequence[Preprocess]) -> int:
    """The side a reduced-scale JPEG decode must keep so that every model's resize still shrinks or keeps it."""
    return max(max(_resize_target(p)) for p in pres)


def _resize(image: Image.Image, pre: Preprocess) -> Image.Image:
    scale = _resize_target(pre)
    if pre.crop_mode == "squash":
        new_hw = scale
    elif pre.crop_mode == "border":
        new_hw = _scaled_size((image.height, image.width), scale, longest=1.0)
    elif scale[0] == scale[1]:  # "center", square: torchvision's shorter-edge Resize(int)
        short, long = sorted((image.height, image.width))
        new_short, new_long = scale[0], int(scale[0] * long / short)
        new_hw = (new_short, new_long) if image.height <= image.width else (new_long, new_short)
    else:  # "center", not square
        new_hw = _scaled_size((image.height, image.width), scale, longest=0.0)
    return image.resize((new_hw[1], new_hw[0]), _RESAMPLE[pre.interpolation])


def _center_crop_or_pad(image: Image.Image, height: int, width: int, fill: tuple[int, int, int]) -> Image.Image:
    """torchvision's CenterCrop (timm's CenterCropOrPad for "border"): pad evenly when smaller, then crop."""
    if image.width >= width and image.height >= height:
        left, top = int(round((image.width - width) / 2.0)), int(round((image.height - height) / 2.0))
        return image.crop((left, top, left + width, top + height))
    left = int(round((image.width - width) / 2.0)) if image.width >= width else -((width - image.width) // 2)
    top = int(round((image.height - height) / 2.0)) if image.height >= height else -((height - image.height) // 2)
    canvas = Image.new("RGB", (width, height), fill)
    canvas.paste(image, (-left, -top))
    return canvas


def resize_crop(image: Image.Image, pre: Preprocess) -> Image.Image:
    """The geometric part of timm's eval transform: an RGB image of exactly ``pre.size``."""
    height, width = pre.size
    fill = tuple(round(255 * m) for m in pre.mean) if pre.crop_mode == "border" else (0, 0, 0)
    return _center_crop_or_pad(_resize(image, pre), height, width, fill)


def to_chw_uint8(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


class Preprocessor:
    """One model group's transform, run in the loader workers on the decoded image.

    Returns a uint8 CHW tensor (normalised later on the device), or, with a serialized albumentations
    transform, that transform's float output as saved.
    """

    def __init__(self, pre: Preprocess, name: str):
        self.pre = pre
        self.name = name  # the models that use it, for error messages
        self._albumentations: Any = None

    @property
    def normalizes_on_device(self) -> bool:
        return self.pre.albumentations is None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.pre.albumentations is None:
            return to_chw_uint8(resize_crop(image, self.pre))
        return self._apply_albumentations(np.asarray(image, dtype=np.uint8))

    def _apply_albumentations(self, pixels: np.ndarray) -> torch.Tensor:
        if self._albumentations is None:  # built lazily, once per worker process
            self._albumentations = load_albumentations(self.pre.albumentations)
        out = self._albumentations(image=pixels)["image"]
        tensor = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(out).transpose(2, 0, 1))
        if tuple(tensor.shape) != tuple(self.pre.input_size):
            raise BundleError(
                f"the albumentations transform of {self.name} gives shape {tuple(tensor.shape)}, "
                f"but the model takes {tuple(self.pre.input_size)}; fix the transform or input_size and pack again"
            )
        return tensor.float()


def load_albumentations(serialized: dict[str, Any]) -> Any:
    try:
        import albumentations as A
    except ImportError:
        raise BundleError(
            "the bundle uses a serialized albumentations transform, but albumentations is not installed; "
            "install it (pip install albumentations) or pack with the albumentations extra"
        ) from None
    try:
        return A.from_dict(serialized)
    except Exception as e:
        raise BundleError(f"cannot rebuild the serialized albumentations transform: {e}") from None


def normalize(batch: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """uint8 NCHW in [0, 255] -> float32 NCHW, (x / 255 - mean) / std, as timm's ToTensor + Normalize."""
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std
