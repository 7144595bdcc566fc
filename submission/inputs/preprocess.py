"""Decoded RGB image -> model input: the user's own function (a crop to the retina, a border trim), then timm's
eval resize/crop on the CPU, normalisation on the device; or a serialized albumentations transform.

The resize and crop reproduce ``timm.data.create_transform(..., is_training=False)`` exactly (same PIL calls,
same rounding), so predictions match what the user saw when validating with timm. Pixels travel to the
device as uint8 (a quarter of the bytes of float32) and are normalised there: by torch for eager models, by
numpy on the host for an engine's, with the same float32 operations in the same order. The user's function is imported
from the bundle once per process and called once per decoded image: an (H, W, 3) uint8 RGB array in, an array out
(or, when its first parameter is annotated as a PIL image, an image in and out).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from submission import code as user_code
from submission.errors import BundleError, InputError
from submission.manifest import Code, Preprocess

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


def to_chw_uint8(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def _takes_pil(function: Callable[..., Any]) -> bool:
    """Whether the function's first parameter is annotated as a PIL image (else it takes an array)."""
    try:
        first = next(iter(inspect.signature(function).parameters.values()))
    except (StopIteration, TypeError, ValueError):
        return False
    annotation = first.annotation
    if isinstance(annotation, str):
        return annotation.split(".")[-1] == "Image"
    return isinstance(annotation, type) and issubclass(annotation, Image.Image)


class UserFunction:
    """The user's preprocessing function, imported from the bundle once per process, its output checked."""

    def __init__(self, code: Code, bundle: Path):
        self.code, self.bundle = code, bundle
        self._function: Callable[..., Any] | None = None
        self._stack = contextlib.ExitStack()  # the frozen code's imports stay resolvable while the process runs

    @property
    def label(self) -> str:
        return f"the preprocessing function {self.code.module}.{self.code.attribute}"

    def __call__(self, image: Image.Image) -> Image.Image | np.ndarray:
        if self._function is None:
            module = self._stack.enter_context(user_code.imported(self.code, self.bundle))
            self._function = user_code.attribute(module, self.code)
        pil = _takes_pil(self._function)
        try:
            out = self._function(image.copy() if pil else np.array(image, dtype=np.uint8))
        except Exception as e:
            raise InputError(f"{self.label} fails: {type(e).__name__}: {e}") from None
        if isinstance(out, Image.Image):
            out = np.asarray(out.convert("RGB") if out.mode != "RGB" else out)
        if not isinstance(out, np.ndarray) or out.ndim != 3 or out.shape[2] != 3 or min(out.shape[:2]) < 1:
            shape = getattr(out, "shape", None)
            raise InputError(f"{self.label} returns {type(out).__name__}{f' of shape {shape}' if shape else ''}; "
                             "it must return an (H, W, 3) RGB image array (uint8) or a PIL image")
        if out.dtype != np.uint8:
            if not np.issubdtype(out.dtype, np.number) or out.min() < 0 or out.max() > 255:
                raise InputError(f"{self.label} returns {out.dtype} values outside 0..255; return uint8 RGB pixels")
            out = np.rint(out).astype(np.uint8)
        return np.ascontiguousarray(out)

    def __getstate__(self) -> dict[str, Any]:  # a loader worker imports the function itself
        return {"code": self.code, "bundle": self.bundle}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["code"], state["bundle"])


class Preprocessor:
    """One model group's transform, run in the loader workers on the decoded image.

    Returns a uint8 CHW array (normalised later, where the model runs), or, with a serialized albumentations
    transform, that transform's float output as saved (its shape checked against the model input unless
    ``check_size`` is False, as when pack measures the size a transform makes).
    """

    def __init__(self, pre: Preprocess, name: str, bundle: Path | None = None, check_size: bool = True):
        self.pre = pre
        self.name = name  # the models that use it, for error messages
        self.check_size = check_size
        self._albumentations: Any = None
        self.function = UserFunction(pre.function, Path(bundle)) if pre.function is not None and bundle else None
        if pre.function is not None and bundle is None:
            raise ValueError("a preprocessing function is imported from a bundle")

    @property
    def normalizes_on_device(self) -> bool:
        return self.pre.albumentations is None

    def blank(self) -> np.ndarray:
        """The input made from a black image of the model's size (for a file that cannot be decoded): the resize or
        the albumentations transform, not the user's function, which may expect a photograph."""
        image = Image.new("RGB", (self.pre.size[1], self.pre.size[0]))
        if self.pre.albumentations is None:
            return to_chw_uint8(resize_crop(image, self.pre))
        return self._apply_albumentations(np.asarray(image, dtype=np.uint8))

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self.function is not None:
            pixels = self.function(image)
            if self.pre.albumentations is not None:
                return self._apply_albumentations(pixels)
            image = Image.fromarray(pixels)
        if self.pre.albumentations is None:
            return to_chw_uint8(resize_crop(image, self.pre))
        return self._apply_albumentations(np.asarray(image, dtype=np.uint8))

    def _apply_albumentations(self, pixels: np.ndarray) -> np.ndarray:
        if self._albumentations is None:  # built lazily, once per worker process
            self._albumentations = load_albumentations(self.pre.albumentations)
        out = self._albumentations(image=pixels)["image"]
        # ToTensorV2 ends in a CHW torch tensor; a transform without it, in an HWC array
        chw = out.numpy() if hasattr(out, "numpy") else np.asarray(out).transpose(2, 0, 1)
        if self.check_size and tuple(chw.shape) != tuple(self.pre.input_size):
            raise BundleError(
                f"the albumentations transform of {self.name} gives shape {tuple(chw.shape)}, "
                f"but the model takes {tuple(self.pre.input_size)}; fix the transform or input_size and pack again"
            )
        return np.ascontiguousarray(chw, dtype=np.float32)


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


def normalize(batch: Any, pre: Preprocess) -> Any:
    """uint8 NCHW in [0, 255] -> float32 NCHW, (x / 255 - mean) / std, as timm's ToTensor + Normalize: a numpy
    array on the host, or a torch tensor on its device."""
    if isinstance(batch, np.ndarray):
        mean = np.asarray(pre.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(pre.std, dtype=np.float32).reshape(1, 3, 1, 1)
        return (batch.astype(np.float32) / np.float32(255.0) - mean) / std
    x = batch.float() / 255.0
    return (x - x.new_tensor(pre.mean).view(1, 3, 1, 1)) / x.new_tensor(pre.std).view(1, 3, 1, 1)
