"""Preprocessing equals timm's own eval transform (the one users validate with), pixel for pixel."""

from __future__ import annotations

import itertools

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from timm.data import create_transform

from submission.errors import BundleError
from submission.inputs.preprocess import Preprocessor, normalize
from tests.bundles import preprocess

RNG = np.random.default_rng(0)
IMAGE_SIZES = [(37, 53), (53, 37), (64, 64), (20, 90), (300, 41), (16, 16)]  # (height, width)
TARGETS = [32, (24, 40), (40, 24)]


def random_image(h: int, w: int) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def ours(image: Image.Image, pre) -> np.ndarray:
    """The runtime's input: normalised on the host (engines) and by torch (eager models), the same float32 numbers."""
    pixels = Preprocessor(pre, "m")(image)[None]
    on_host, by_torch = normalize(pixels, pre)[0], normalize(torch.from_numpy(pixels), pre)[0].numpy()
    np.testing.assert_array_equal(on_host, by_torch)
    return on_host


def timms(image: Image.Image, pre) -> torch.Tensor:
    transform = create_transform(
        input_size=pre.input_size, is_training=False, interpolation=pre.interpolation, mean=pre.mean,
        std=pre.std, crop_pct=pre.crop_pct, crop_mode=pre.crop_mode,
    )
    return transform(image)


@pytest.mark.parametrize(
    "crop_mode, crop_pct, interpolation",
    [("center", 0.875, "bicubic"), ("center", 1.0, "bilinear"), ("center", 0.95, "lanczos"),
     ("squash", 1.0, "bilinear"), ("squash", 0.9, "nearest"), ("border", 1.0, "bicubic"),
     ("border", 0.875, "hamming"), ("center", 0.5, "box")],
)
def test_matches_timm_eval_transform(crop_mode, crop_pct, interpolation):
    for (h, w), size in itertools.product(IMAGE_SIZES, TARGETS):
        pre = preprocess(size, crop_mode=crop_mode, crop_pct=crop_pct, interpolation=interpolation)
        image = random_image(h, w)
        got, expected = ours(image, pre), timms(image, pre)
        assert got.shape == expected.shape == (3, *pre.size), (h, w, size)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0, err_msg=f"image {h}x{w}, target {size}")


def test_pixels_leave_the_worker_as_uint8():
    out = Preprocessor(preprocess(32), "m")(random_image(50, 70))
    assert out.dtype == np.uint8 and out.shape == (3, 32, 32)


def test_serialized_albumentations_is_applied_as_saved():
    transform = A.Compose([A.Resize(24, 40), A.Normalize(mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)), ToTensorV2()])
    pre = preprocess((24, 40), albumentations=A.to_dict(transform))
    image = random_image(50, 70)
    processor = Preprocessor(pre, "fold0")
    assert not processor.normalizes_on_device
    out = processor(image)
    expected = transform(image=np.asarray(image))["image"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected.float().numpy())


def test_albumentations_without_to_tensor_gives_chw():
    transform = A.Compose([A.Resize(24, 24), A.Normalize()])
    pre = preprocess(24, albumentations=A.to_dict(transform))
    image = random_image(30, 30)
    expected = transform(image=np.asarray(image))["image"].transpose(2, 0, 1)
    np.testing.assert_array_equal(Preprocessor(pre, "m")(image), expected)


def test_albumentations_output_of_the_wrong_size_names_the_model():
    pre = preprocess(32, albumentations=A.to_dict(A.Compose([A.Resize(24, 24), ToTensorV2()])))
    with pytest.raises(BundleError, match=r"transform of fold3 gives shape \(3, 24, 24\), but the model takes \(3, 32, 32\)"):
        Preprocessor(pre, "fold3")(random_image(30, 30))


@pytest.mark.filterwarnings("ignore:Transform NoSuchTransform")
def test_broken_albumentations_dict_is_a_bundle_error():
    pre = preprocess(32, albumentations={"transform": {"__class_fullname__": "NoSuchTransform"}})
    with pytest.raises(BundleError, match="cannot rebuild the serialized albumentations transform"):
        Preprocessor(pre, "m")(random_image(30, 30))
