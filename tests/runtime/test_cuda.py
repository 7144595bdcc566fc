"""On a GPU (skipped without one; ``benchmarks/gpu_check.sh`` runs them): the runtime on CUDA (autocast,
channels_last) gives the naive CPU loop's probabilities within half precision, and a model on ONNX Runtime takes the
CUDA execution provider and gives them too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from submission.manifest import load_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.pack.test_code import pack
from tests.runs import save_timm, timm_args, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def packed(tmp_path):
    def make(engine: str):
        for i in range(2):
            save_timm(tmp_path / "runs" / f"fold{i}", tiny_model("test_efficientnet", num_classes=4, seed=i),
                      timm_args("test_efficientnet", 4, None))
        return pack(tmp_path / "runs", tmp_path / f"b-{engine}", img_size="64", engine=engine, tta="hflip",
                    format="probs").path

    paths = make_images(tmp_path / "test", n=20)
    return make, paths


def probabilities(bundle, folder, out) -> np.ndarray:
    run(folder, bundle, out, Options(workers=0, quiet=True, ignore_sample=True, devices="cuda", batch_size=8))
    return pd.read_csv(out).iloc[:, 1:].to_numpy()


def test_the_runtime_on_the_gpu_gives_the_naive_loops_probabilities(tmp_path, packed):
    make, paths = packed
    bundle = make("torch")
    got = probabilities(bundle, tmp_path / "test", tmp_path / "s.csv")
    np.testing.assert_allclose(got, naive.probabilities(bundle, paths), atol=5e-3)


def test_onnx_runtime_takes_the_cuda_provider_and_gives_the_same_probabilities(tmp_path, packed):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    from submission.models.engines import open_engine

    make, paths = packed
    bundle = make("onnx")
    spec = load_manifest(bundle).models[0]
    engine = open_engine("onnx", bundle / spec.exported.path, torch.device("cuda", 0), threads=1)
    assert engine.session.get_providers()[0] == "CUDAExecutionProvider"
    got = probabilities(bundle, tmp_path / "test", tmp_path / "s.csv")
    np.testing.assert_allclose(got, naive.probabilities(bundle, paths), atol=1e-4)
