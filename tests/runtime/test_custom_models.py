"""The runtime on models of the user's code against the naive loop that calls the user's module directly: a single
output, a dict of heads, a product of heads; the composite decision is the per-head decisions combined."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from submission.manifest import load_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.naive import FIXTURES
from tests.pack.test_code import models_of, pack, save_folds


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("test")
    return folder, make_images(folder, n=9)


def run_probs(bundle, folder, tmp_path, columns):
    run(folder, bundle, tmp_path / "s.csv", Options(workers=0, quiet=True, batch_size=4))
    return pd.read_csv(tmp_path / "s.csv", dtype={"id": str})[list(columns)].to_numpy()


@pytest.mark.parametrize("tta, merge", [("none", "mean"), ("hflip", "gmean"), ("flips", "logits")])
def test_a_single_output_model(images, tmp_path, tta, merge):
    folder, paths = images
    runs = save_folds(tmp_path / "runs", models_of("cosine_head.py", "build", n=2, num_classes=4, scale=5.0))
    bundle = pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/cosine_head.py:build", format="probs",
                  model_kwargs='{"num_classes": 4, "scale": 5.0}', classes="a,b,c,d", tta=tta, merge=merge,
                  img_size="48", fold_weights="1,3")
    module = naive.fixture("cosine_head.py")
    with naive.without_downloads():
        expected = naive.probabilities(bundle.path, paths, build=lambda spec: module.build(**spec.kwargs))
    np.testing.assert_allclose(run_probs(bundle.path, folder, tmp_path, "abcd"), expected, atol=2e-6)


def test_a_dict_of_heads_from_a_package(images, tmp_path):
    folder, paths = images
    with naive.importable(FIXTURES):
        import maskpkg

        runs = save_folds(tmp_path / "runs", [maskpkg.build() for _ in range(2)])
    bundle = pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/maskpkg:build", heads="mask=3,gender=2,age=3",
                  format="probs", img_size="40", tta="hflip")
    m = load_manifest(bundle.path)
    with naive.importable(FIXTURES):
        import maskpkg

        expected = naive.probabilities(bundle.path, paths, build=lambda spec: maskpkg.build())
    np.testing.assert_allclose(run_probs(bundle.path, folder, tmp_path, m.classes), expected, atol=2e-6)


def test_three_heads_in_a_tuple_combine_into_18_classes(images, tmp_path):
    """Each head's softmax averaged over folds and views; class = mask*6 + gender*3 + age of the per-head argmax."""
    folder, paths = images
    runs = save_folds(tmp_path / "runs", models_of("mask_heads.py", "MaskModel", n=2))
    bundle = pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/mask_heads.py:MaskModel", heads="mask=3,gender=2,age=3",
                  img_size="36", tta="hflip", format="label", id_column="ImageID")
    m = load_manifest(bundle.path)
    assert len(m.classes) == 18
    module = naive.fixture("mask_heads.py")
    expected = naive.probabilities(bundle.path, paths, build=lambda spec: module.MaskModel(**spec.kwargs))
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=2, quiet=True, batch_size=3))
    answers = pd.read_csv(tmp_path / "s.csv")["label"].astype(int).to_numpy()
    assert list(answers) == list(expected.argmax(1))
    # the naive composite is the product of per-head averages: its argmax is the per-head argmaxes combined
    per_head = [expected.reshape(-1, 3, 2, 3).sum(axis=axes) for axes in ((2, 3), (1, 3), (1, 2))]
    combined = [mask * 6 + gender * 3 + age for mask, gender, age in zip(*(h.argmax(1) for h in per_head))]
    assert list(answers) == combined
    assert set(itertools.chain(answers)) <= set(range(18))
