"""``--preprocess FILE.py:FUNCTION``: the user's own function, frozen in the bundle, called once per decoded image in
the loader workers before the resize (or albumentations), checked against a naive loop that calls the function
itself; and every error a loader worker meets reaches the user as one line naming the file and the image id."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
from albumentations.pytorch import ToTensorV2
from PIL import Image

from builder.errors import ConfigError
from submission.errors import InputError
from submission.manifest import load_manifest, write_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.naive import FIXTURES
from tests.pack.test_code import pack
from tests.runs import save_timm, timm_args, tiny_model

ROOT = Path(__file__).resolve().parents[2]


def fundus_photos(folder: Path, n: int = 6, seed: int = 0) -> list[Path]:
    """Retina-like photos: a bright textured disc off-centre on black, of varied sizes, as JPEG and PNG."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(120, 200)), int(rng.integers(140, 240))
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = h / 2 + rng.integers(-10, 10), w / 2 + rng.integers(-20, 20), min(h, w) * 0.4
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[disc] = rng.integers(60, 230, (int(disc.sum()), 3))
        path = folder / (f"eye_{i}.png" if i % 2 else f"eye_{i}.jpg")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("aptos")
    for i in range(2):
        save_timm(root / "runs" / f"fold{i}", tiny_model("test_efficientnet", num_classes=5, seed=i),
                  timm_args("test_efficientnet", 5, 64))
    return root / "runs"


def as_array_function(function):
    return lambda image: Image.fromarray(function(np.asarray(image)))


def test_ben_grahams_crop_runs_once_per_image_as_the_naive_loop_calls_it(runs, tmp_path):
    photos = fundus_photos(tmp_path / "test")
    bundle = pack(runs, tmp_path / "b", preprocess=f"{FIXTURES}/aptos_preprocess.py:circle_crop", tta="hflip",
                  format="probs")
    m = load_manifest(bundle.path)
    assert all(spec.preprocess.function.attribute == "circle_crop" for spec in m.models)
    assert m.requirements and any(r.startswith("opencv") for r in m.requirements)  # cv2, found and pinned
    run(tmp_path / "test", bundle.path, tmp_path / "s.csv", Options(workers=2, quiet=True, ignore_sample=True))
    got = pd.read_csv(tmp_path / "s.csv").iloc[:, 1:].to_numpy()
    crop = naive.fixture("aptos_preprocess.py").circle_crop
    expected = naive.probabilities(bundle.path, photos, prepare=as_array_function(crop))
    np.testing.assert_allclose(got, expected, atol=2e-6)
    plain = naive.probabilities(bundle.path, photos)
    assert np.abs(plain - expected).max() > 1e-3  # the function mattered


def test_a_pil_function_and_an_albumentations_transform_after_it(runs, tmp_path):
    photos = fundus_photos(tmp_path / "test", n=4, seed=1)
    transform = A.Compose([A.Resize(64, 64), A.Normalize(), ToTensorV2()])
    (tmp_path / "aug.json").write_text(json.dumps(A.to_dict(transform)))
    bundle = pack(runs, tmp_path / "b", preprocess=f"{FIXTURES}/border_trim.py:trim", albumentations=tmp_path / "aug.json",
                  format="probs")
    run(tmp_path / "test", bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True))
    trim = naive.fixture("border_trim.py").trim
    expected = naive.probabilities(bundle.path, photos, prepare=trim)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "s.csv").iloc[:, 1:].to_numpy(), expected, atol=2e-6)


@pytest.mark.parametrize("function, words", [
    ("flat", r"returns ndarray of shape \(\d+, \d+\); it must return an \(H, W, 3\) RGB image array"),
    ("noisy", "gives different outputs for the same image; make it deterministic"),
])
def test_a_function_that_cannot_serve_is_refused_at_pack_time(runs, tmp_path, function, words):
    with pytest.raises(ConfigError, match=words):
        pack(runs, tmp_path / "b", preprocess=f"{FIXTURES}/aptos_preprocess.py:{function}")


def test_fast_decode_is_refused_beside_the_users_function(runs, tmp_path):
    with pytest.raises(ConfigError, match="decode 'fast' shrinks JPEGs before the resize, but fold0 has its own preprocessing function"):
        pack(runs, tmp_path / "b", preprocess=f"{FIXTURES}/aptos_preprocess.py:circle_crop", decode="fast")


def one_line_error(bundle: Path, test: Path, out: Path, workers: int) -> str:
    proc = subprocess.run([sys.executable, "-m", "submission", str(test), "--bundle", str(bundle), "--out", str(out),
                           "--ignore-sample", "--workers", str(workers), "--quiet"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == InputError.exit_code or proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not out.exists()
    return lines[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_function_that_fails_on_one_image_is_one_line_naming_the_file_and_id(runs, tmp_path, workers):
    photos = fundus_photos(tmp_path / "test", n=4)
    Image.new("RGB", (40, 30), (90, 90, 90)).save(tmp_path / "test" / "eye_small.png")
    bundle = pack(runs, tmp_path / "b", preprocess=f"{FIXTURES}/aptos_preprocess.py:crop_or_fail")
    line = one_line_error(bundle.path, tmp_path / "test", tmp_path / "s.csv", workers)
    assert f"{tmp_path / 'test' / 'eye_small.png'} (id 'eye_small')" in line
    assert "the preprocessing function aptos_preprocess.crop_or_fail fails: ValueError: too small" in line
    assert len(photos) == 4


@pytest.mark.parametrize("workers", [0, 2])
def test_a_transform_of_the_wrong_size_is_one_line_from_a_worker_too(tmp_path, workers):
    """A bundle whose albumentations transform makes 128 x 128 for a model of 224 (written by an old packer)."""
    save_timm(tmp_path / "runs" / "fold0", tiny_model(), timm_args("test_resnet", 3, 128))
    transform = A.Compose([A.Resize(128, 128), A.Normalize(), ToTensorV2()])
    (tmp_path / "aug.json").write_text(json.dumps(A.to_dict(transform)))
    bundle = pack(tmp_path / "runs", tmp_path / "b", albumentations=tmp_path / "aug.json").path
    m = load_manifest(bundle)
    spec = replace(m.models[0], preprocess=replace(m.models[0].preprocess, input_size=(3, 224, 224)))
    write_manifest(bundle, replace(m, models=(spec,)))
    make_images(tmp_path / "test", n=3)
    line = one_line_error(bundle, tmp_path / "test", tmp_path / "s.csv", workers)
    assert "(id 'img0')" in line and "gives shape (3, 128, 128), but the model takes (3, 224, 224)" in line
