"""The whole runtime against an independent naive loop, and ``python -m submission`` as users call it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image

from submission.__main__ import main
from submission.errors import BundleError, DeviceError, InputError, OutputError
from submission.manifest import TTA_PRESETS, load_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import (
    make_images,
    manifest,
    preprocess,
    save_model,
    three_fold_models,
    with_sample,
    write_bundle,
)


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("test")
    make_images(folder, n=11)
    return folder


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    return root, three_fold_models(root)


def bundle_with(tmp_path: Path, folds, **kwargs) -> Path:
    """A bundle with the module's three folds (weights copied) and the given manifest settings."""
    root, models = folds
    (tmp_path / "bundle" / "weights").mkdir(parents=True)
    for spec in models:
        shutil.copyfile(root / spec.weights.path, tmp_path / "bundle" / spec.weights.path)
    return write_bundle(tmp_path / "bundle", manifest(models, **kwargs))


def read_probs(path: Path) -> tuple[list[str], np.ndarray]:
    table = pd.read_csv(path, dtype={"id": str})
    return table["id"].tolist(), table.drop(columns="id").to_numpy()


@pytest.mark.parametrize(
    "task, tta, merge",
    [("multiclass", "d4", "gmean"), ("multiclass", "hflip", "mean"), ("multiclass", "none", "logits"),
     ("multilabel", "flips", "logits"), ("multilabel", "vflip", "mean"), ("multilabel", "d4", "gmean")],
)
def test_runtime_matches_naive_loop(tmp_path, folds, test_dir, task, tta, merge):
    bundle = bundle_with(tmp_path, folds, task=task, tta=tta, merge=merge)
    m = load_manifest(bundle)
    out = tmp_path / "out" / "submission.csv"
    result = run(test_dir, bundle, out, Options(batch_size=4, workers=0, quiet=True))
    ids, got = read_probs(out)
    paths = sorted(test_dir.iterdir(), key=lambda p: int(p.stem[3:]))
    assert ids == [p.stem for p in paths]
    assert (result.rows, result.columns) == (11, 5)
    expected = naive.probabilities(bundle, paths)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)  # 6 decimals in the CSV
    assert len(TTA_PRESETS[m.tta]) == len(naive.NUMPY_TTA[m.tta])
    assert np.ptp(expected, axis=0).max() > 0.05  # the images get visibly different predictions


def test_albumentations_model_matches_naive_loop(tmp_path, test_dir):
    transform = A.Compose([A.Resize(48, 48), A.Normalize(), ToTensorV2()])
    pre = preprocess(48, albumentations=A.to_dict(transform))
    bundle = tmp_path / "bundle"
    models = (save_model(bundle, "fold0", "test_resnet", 3, pre, seed=5),
              save_model(bundle, "fold1", "test_resnet", 3, preprocess(48), seed=6))
    write_bundle(bundle, manifest(models, tta="hflip"))
    run(test_dir, bundle, tmp_path / "s.csv", Options(workers=0, quiet=True))
    paths = sorted(test_dir.iterdir(), key=lambda p: int(p.stem[3:]))
    np.testing.assert_allclose(read_probs(tmp_path / "s.csv")[1], naive.probabilities(bundle, paths), atol=2e-6)


def test_fast_decode_is_the_naive_loop_on_jpegs_shrunk_by_libjpeg(tmp_path):
    """decode 'fast': each large JPEG is decoded at reduced scale, keeping the largest resize target (80 here: 64
    at crop_pct 0.8), and then goes through the same transform; other files are decoded as they are."""
    rng = np.random.default_rng(3)
    folder, shrunk = tmp_path / "test", tmp_path / "shrunk"
    folder.mkdir(), shrunk.mkdir()
    for i, (h, w) in enumerate([(500, 700), (700, 500), (170, 400), (90, 120)]):
        coarse = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
        pixels = (np.asarray(coarse, dtype=np.int16) + rng.integers(-10, 11, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
        with Image.open(folder / f"img{i}.jpg") as image:
            image.draft("RGB", (80, 80))  # libjpeg picks 1/2, 1/4 or 1/8 with both sides >= 80
            image.convert("RGB").save(shrunk / f"img{i}.png")
    Image.fromarray(pixels).save(folder / "img4.png")
    Image.fromarray(pixels).save(shrunk / "img4.png")
    bundle = tmp_path / "bundle"
    models = (save_model(bundle, "fold0", "test_resnet", 3, preprocess(64, crop_pct=0.8), seed=1),
              save_model(bundle, "fold1", "test_resnet", 3, preprocess(48, crop_mode="squash", crop_pct=1.0), seed=2))
    write_bundle(bundle, manifest(models, decode="fast"))
    run(folder, bundle, tmp_path / "fast.csv", Options(workers=0, quiet=True))
    _, fast = read_probs(tmp_path / "fast.csv")
    paths = sorted(shrunk.iterdir())
    assert [Image.open(p).size for p in paths] == [(175, 125), (125, 175), (200, 85), (120, 90), (120, 90)]
    np.testing.assert_allclose(fast, naive.probabilities(bundle, paths), atol=2e-6)
    exact = naive.probabilities(bundle, sorted(folder.iterdir()))
    assert np.abs(fast - exact)[:2].max() > 1e-4 and np.abs(fast - exact)[3:].max() < 2e-6


def test_same_inputs_give_a_byte_identical_csv(tmp_path, folds, test_dir):
    bundle = bundle_with(tmp_path, folds, tta="hflip")
    outputs = []
    for i, (batch, workers) in enumerate([(4, 0), (4, 0), (4, 2)]):
        out = tmp_path / f"s{i}.csv"
        run(test_dir, bundle, out, Options(batch_size=batch, workers=workers, quiet=True))
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_rows_follow_the_bundled_sample(tmp_path, folds, test_dir):
    bundle = bundle_with(tmp_path, folds, fmt="label")
    ids = ["img10", "img3", "img0", "img7"]
    m = with_sample(bundle, load_manifest(bundle), ids)
    write_bundle(bundle, m)
    assert main([str(test_dir), "--bundle", str(bundle), "--out", str(tmp_path / "s.csv"), "--workers", "0"]) == 0
    table = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert table["id"].tolist() == ids and list(table.columns) == ["id", "label"]
    assert set(table["label"]) <= set(m.classes)


def test_ids_with_suffix(tmp_path, folds, test_dir):
    bundle = bundle_with(tmp_path, folds, fmt="label")
    names = ["img1.png", "img0.jpg"]
    write_bundle(bundle, with_sample(bundle, load_manifest(bundle), names))
    run(test_dir, bundle, tmp_path / "s.csv", Options(workers=0, quiet=True))
    assert pd.read_csv(tmp_path / "s.csv", dtype=str)["id"].tolist() == names


def test_cli_reports_where_it_wrote(tmp_path, folds, test_dir, capsys):
    bundle = bundle_with(tmp_path, folds)
    out = tmp_path / "out.csv"
    assert main([str(test_dir), "--bundle", str(bundle), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"wrote {out} (11 rows, 5 columns)")
    assert captured.err == ""
    assert main([str(test_dir), "--bundle", str(bundle), "--out", str(out), "--workers", "0"]) == 0
    assert "11/11 images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "breakage, code, message",
    [
        ("sha", BundleError.exit_code, "weights/fold1.safetensors has sha256"),
        ("missing_ids", InputError.exit_code, "1 of 12 ids of the sample submission have no image"),
        ("no_bundle", BundleError.exit_code, "manifest.json not found; pass --bundle"),
        ("out_is_dir", OutputError.exit_code, "is a folder"),
        ("empty_test", InputError.exit_code, "no images found"),
    ],
)
def test_cli_errors_name_the_problem(tmp_path, folds, test_dir, capsys, breakage, code, message):
    bundle = bundle_with(tmp_path, folds)
    data, out = test_dir, tmp_path / "s.csv"
    if breakage == "sha":
        target = bundle / "weights" / "fold1.safetensors"
        content = target.read_bytes()
        target.unlink()
        target.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    elif breakage == "missing_ids":
        write_bundle(bundle, with_sample(bundle, load_manifest(bundle), [f"img{i}" for i in range(12)]))
    elif breakage == "no_bundle":
        bundle = tmp_path / "nothing"
    elif breakage == "out_is_dir":
        out = tmp_path
    elif breakage == "empty_test":
        data = tmp_path / "empty"
        data.mkdir()
    assert main([str(data), "--bundle", str(bundle), "--out", str(out), "--workers", "0"]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "s.csv").exists()


def test_device_cuda_without_gpu_is_a_clear_error(tmp_path, folds, test_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    bundle = bundle_with(tmp_path, folds)
    assert main([str(test_dir), "--bundle", str(bundle), "--out", str(tmp_path / "s.csv"), "--device", "cuda"]) == DeviceError.exit_code
    assert "no GPU is visible" in capsys.readouterr().err


def test_weights_of_the_wrong_architecture_name_the_file(tmp_path, test_dir, capsys):
    bundle = tmp_path / "bundle"
    spec = save_model(bundle, "fold0", "test_resnet", 3, preprocess(32), seed=0)
    write_bundle(bundle, manifest((replace(spec, arch="test_efficientnet"),)))
    assert main([str(test_dir), "--bundle", str(bundle), "--out", str(tmp_path / "s.csv")]) == BundleError.exit_code
    err = capsys.readouterr().err
    assert "model 'fold0': weights/fold0.safetensors does not fit 'test_efficientnet'" in err


def test_module_entry_point_runs(tmp_path, folds, test_dir):
    bundle = bundle_with(tmp_path, folds)
    out = tmp_path / "s.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "submission", str(test_dir), "--bundle", str(bundle), "--out", str(out)],
        capture_output=True, text=True, cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out} (11 rows" in proc.stdout
    assert len(pd.read_csv(out)) == 11
