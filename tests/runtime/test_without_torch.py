"""A bundle whose models all run on an engine runs where torch, timm and safetensors cannot be imported: the same CSV
byte for byte as the runtime writes with torch there, the probabilities of a naive loop over the eager models; and
its environment leaves torch out unless something of the bundle needs it, saying what."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
from albumentations.pytorch import ToTensorV2
from PIL import Image

from builder.environment import EAGER_PACKAGES, bundle_packages, torch_reasons
from builder.pipeline import engine_lines
from submission.manifest import load_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.naive import FIXTURES
from tests.pack.test_code import pack
from tests.runs import save_timm, timm_args, tiny_model

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "timm", "safetensors", "torchvision")
# the runtime's command line, in an interpreter where importing any of BLOCKED fails as it does where none is installed
WITHOUT_TORCH = f"""
import runpy, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None
sys.argv = ["submission", *sys.argv[1:]]
runpy.run_module("submission", run_name="__main__", alter_sys=True)
"""


def without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("without-torch")
    for i in range(2):
        save_timm(root / "runs" / f"fold{i}", tiny_model("test_efficientnet", num_classes=5, seed=i),
                  timm_args("test_efficientnet", 5, 48))
    return root / "runs"


def fundus_like(folder: Path, n: int = 7) -> list[Path]:
    """Bright discs on black, of several sizes, some JPEG: what a crop to the retina has something to find in."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        h, w = 90 + 13 * i, 120 + 7 * i
        yy, xx = np.mgrid[:h, :w]
        disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 2.3) ** 2
        pixels = (disc[..., None] * rng.integers(60, 255, (h, w, 3))).astype(np.uint8)
        path = folder / f"eye_{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_an_engine_bundle_runs_without_torch_as_it_runs_with_it(runs, tmp_path, engine):
    paths = make_images(tmp_path / "test", n=11)
    bundle = pack(runs, tmp_path / "b", engine=engine, tta="flips", format="probs").path
    m = load_manifest(bundle)
    assert torch_reasons(m, bundle) == []
    assert not set(EAGER_PACKAGES) & set(bundle_packages(m, bundle))
    proc = without_torch(str(tmp_path / "test"), "--bundle", str(bundle), "--out", str(tmp_path / "free.csv"),
                         "--ignore-sample", "--workers", "2", "--batch-size", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    run(tmp_path / "test", bundle, tmp_path / "with.csv", Options(workers=0, quiet=True, ignore_sample=True,
                                                                   batch_size=4))
    assert (tmp_path / "free.csv").read_bytes() == (tmp_path / "with.csv").read_bytes()
    got = pd.read_csv(tmp_path / "free.csv").iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(got, naive.probabilities(bundle, paths), atol=1e-5)


def test_a_preprocessing_function_of_numpy_and_opencv_needs_no_torch(runs, tmp_path):
    photos = fundus_like(tmp_path / "test")
    bundle = pack(runs, tmp_path / "b", engine="onnx", preprocess=f"{FIXTURES}/aptos_preprocess.py:circle_crop",
                  format="probs").path
    m = load_manifest(bundle)
    assert torch_reasons(m, bundle) == []
    packages = bundle_packages(m, bundle)
    assert "torch" not in packages and any(p.startswith("opencv") for p in packages)
    proc = without_torch(str(tmp_path / "test"), "--bundle", str(bundle), "--out", str(tmp_path / "free.csv"),
                         "--ignore-sample")
    assert proc.returncode == 0, proc.stderr
    assert "running on the CPU: the image has no torch, as every model runs on an engine" in proc.stderr
    crop = naive.fixture("aptos_preprocess.py").circle_crop
    expected = naive.probabilities(bundle, photos, prepare=lambda image: Image.fromarray(crop(np.asarray(image))))
    np.testing.assert_allclose(pd.read_csv(tmp_path / "free.csv").iloc[:, 1:].to_numpy(), expected, atol=1e-5)


def test_what_needs_torch_keeps_it_and_is_named(runs, tmp_path):
    # a competitor's preprocessing module that imports a helper, which imports torch where training needed it
    code = tmp_path / "src"
    code.mkdir()
    (code / "prep.py").write_text("import numpy as np\nfrom helpers import scale\n\n\ndef prepare(image):\n"
                                  "    return scale(np.asarray(image))\n")
    (code / "helpers.py").write_text("import numpy as np\nimport torch  # used by the training loop\n\n\n"
                                     "def scale(pixels):\n    return pixels\n")
    (code / "unrelated.py").write_text("import timm\n")
    bundle = pack(runs, tmp_path / "b", engine="onnx", preprocess=f"{code}:prep.prepare").path
    reasons = torch_reasons(load_manifest(bundle), bundle)
    assert len(reasons) == 2 and all("preprocessing function" in r and r.endswith("helpers.py)") for r in reasons)
    assert "torch" in bundle_packages(load_manifest(bundle), bundle)

    transform = A.Compose([A.Resize(48, 48), A.Normalize(), ToTensorV2()])
    (tmp_path / "aug.json").write_text(json.dumps(A.to_dict(transform)))
    bundle = pack(runs, tmp_path / "b2", engine="onnx", albumentations=tmp_path / "aug.json").path
    assert all("ToTensorV2" in r for r in torch_reasons(load_manifest(bundle), bundle))

    eager = pack(runs, tmp_path / "b3").path
    assert torch_reasons(load_manifest(eager), eager) == ["model 'fold0' runs on torch", "model 'fold1' runs on torch"]


def test_pack_says_when_engines_leave_a_platforms_gpu_unused(runs, tmp_path):
    def said(out: str, **options: str) -> list[str]:
        bundle = pack(runs, tmp_path / out, engine="onnx", **options).path
        return engine_lines(load_manifest(bundle), bundle)

    generic = said("generic")
    assert generic == ["every model runs on an engine: the environment leaves torch, timm and safetensors out"]
    evalai = said("evalai", platform="evalai")
    assert evalai[0] == generic[0]
    assert evalai[1].startswith("warning: the evalai platform gives a GPU (T4), but onnx runs on its CPU")
    assert "--engine torch" in evalai[1] and "--devices cpu" in evalai[1]
    assert said("evalai-cpu", platform="evalai", devices="cpu") == generic
    eager = pack(runs, tmp_path / "eager", platform="evalai").path
    assert engine_lines(load_manifest(eager), eager) == []


def test_the_run_says_when_an_engine_leaves_a_visible_gpu_unused(runs, tmp_path, monkeypatch, capsys):
    """On a GPU, ONNX Runtime without its CUDA provider (the CPU build) runs on the CPU: the run says so, and writes
    what it writes on the CPU."""
    import onnxruntime

    import submission.runner
    from submission.devices import Device

    make_images(tmp_path / "test", n=5)
    bundle = pack(runs, tmp_path / "b", engine="onnx", format="probs").path
    options = Options(workers=0, ignore_sample=True)
    run(tmp_path / "test", bundle, tmp_path / "cpu.csv", options)
    assert "run on the CPU, not on the GPU" not in capsys.readouterr().err
    monkeypatch.setattr(submission.runner, "device_list", lambda spec, log: [Device("cuda", 0)])
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    run(tmp_path / "test", bundle, tmp_path / "gpu.csv", options)
    assert ("warning: the models on onnx run on the CPU, not on the GPU: the engine's installed build has no GPU "
            "support") in capsys.readouterr().err
    assert (tmp_path / "gpu.csv").read_bytes() == (tmp_path / "cpu.csv").read_bytes()
