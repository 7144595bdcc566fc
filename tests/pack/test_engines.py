"""``--engine onnx|openvino|auto``: every kind of model the product packs exported and run by the engine, equal to a
naive loop that calls the eager model; the equivalence gate at pack time refuses a graph that the exporter broke,
with the numbers; auto keeps torch where no engine passes; the same inputs give the same CSV byte for byte."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from builder.errors import ConfigError
from builder.pack import engines
from submission.errors import BundleError
from submission.manifest import load_manifest, verify_files
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.naive import FIXTURES
from tests.pack.test_code import models_of, pack, save_folds
from tests.runs import save_bare, save_timm, timm_args, tiny_model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine-test")
    paths = make_images(folder, n=9)
    return folder, paths


def run_csv(bundle, folder, out, **options):
    run(folder, bundle, out, Options(workers=0, quiet=True, ignore_sample=True, **options))
    return pd.read_csv(out)


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
@pytest.mark.parametrize("arch, size", [("test_resnet", "48"), ("test_efficientnet", "40,56"), ("test_vit", "64")])
def test_timm_models_on_an_engine_equal_the_eager_model(tmp_path, images, engine, arch, size):
    folder, paths = images
    kwargs = {"img_size": 64} if arch == "test_vit" else {}
    for i in range(2):
        save_timm(tmp_path / "runs" / f"fold{i}", tiny_model(arch, num_classes=4, seed=i, **kwargs),
                  timm_args(arch, 4, None, model_kwargs=kwargs))
    bundle = pack(tmp_path / "runs", tmp_path / "b", img_size=size, engine=engine, tta="hflip", format="probs")
    m = load_manifest(bundle.path)
    assert {s.engine for s in m.models} == {engine} and all(s.gate["max_difference"] < 1e-4 for s in m.models)
    got = run_csv(bundle.path, folder, tmp_path / "s.csv", batch_size=4).iloc[:, 1:].to_numpy()  # 9 images: 4, 4, 1
    np.testing.assert_allclose(got, naive.probabilities(bundle.path, paths), atol=1e-5)
    run_csv(bundle.path, folder, tmp_path / "again.csv", batch_size=4)
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()


def test_user_code_several_heads_and_metadata_on_an_engine(tmp_path, images):
    folder, paths = images
    runs = save_folds(tmp_path / "heads", models_of("mask_heads.py", "MaskModel", n=2))
    bundle = pack(runs, tmp_path / "b1", model_code=f"{FIXTURES}/mask_heads.py:MaskModel", heads="mask=3,gender=2,age=3",
                  img_size="32", engine="onnx", format="probs")
    module = naive.fixture("mask_heads.py")
    got = run_csv(bundle.path, folder, tmp_path / "h.csv").iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(got, naive.probabilities(bundle.path, paths, lambda s: module.MaskModel()), atol=1e-5)

    runs = save_folds(tmp_path / "meta", models_of("with_meta.py", "ImageMeta", n=1, meta_features=3))
    table = pd.DataFrame({"id": [p.stem for p in paths], "age": np.arange(len(paths)) * 7.0, "sex": ["m", "f", "m"] * 3})
    table.to_csv(folder.parent / "meta.csv", index=False)
    (tmp_path / "cols.json").write_text(json.dumps([{"name": "age", "type": "numeric", "fill": 40, "scale": 90},
                                                    {"name": "sex", "type": "categorical", "categories": ["f", "m"]}]))
    bundle = pack(runs, tmp_path / "b2", model_code=f"{FIXTURES}/with_meta.py:ImageMeta", model_kwargs='{"meta_features": 3}',
                  metadata_columns=tmp_path / "cols.json", metadata_id_column="id", img_size="32", engine="openvino",
                  format="probs")
    got = run_csv(bundle.path, folder, tmp_path / "m.csv", metadata=folder.parent / "meta.csv").iloc[:, 1:].to_numpy()
    features = np.array([[r.age / 90, float(r.sex == "f"), float(r.sex == "m")] for r in table.itertuples()], np.float32)
    module = naive.fixture("with_meta.py")
    expected = naive.probabilities(bundle.path, paths, lambda s: module.ImageMeta(**s.kwargs), features)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_regression_on_an_engine(tmp_path, images):
    folder, paths = images
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model(num_classes=1))
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="40", task="regression", engine="onnx")
    got = run_csv(bundle.path, folder, tmp_path / "s.csv").iloc[:, 1].to_numpy()
    np.testing.assert_allclose(got, naive.probabilities(bundle.path, paths)[:, 0], atol=1e-5)


def test_the_gate_refuses_a_graph_the_exporter_broke(tmp_path):
    """A value read into Python in forward: the traced graph keeps the example's value for every batch."""
    runs = save_folds(tmp_path / "runs", models_of("branchy.py", "Branchy", n=1))
    common = dict(model_code=f"{FIXTURES}/branchy.py:Branchy", img_size="48")
    with pytest.raises(ConfigError, match=r"the onnx engine fails the equivalence gate against eager PyTorch on 24 "
                                          r"images: largest probability difference .* over the tolerance 0.0001"):
        pack(runs, tmp_path / "b", engine="onnx", **common)
    bundle = pack(runs, tmp_path / "b", engine="auto", **common)
    spec = load_manifest(bundle.path).models[0]
    assert spec.engine == "torch" and spec.exported is None
    table = {m.engine: m for m in bundle.folds[0].engines}
    assert not table["onnx"].passed and not table["openvino"].passed and table["torch"].passed
    assert not list((bundle.path / "engines").glob("*")) if (bundle.path / "engines").exists() else True


def test_auto_keeps_the_fastest_engine_that_passes(tmp_path, monkeypatch):
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model("test_efficientnet"))
    speeds = iter([10.0, 30.0, 20.0])  # torch, onnx, openvino
    monkeypatch.setattr(engines, "_timed", lambda run: next(speeds))
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_efficientnet", img_size="32", engine="auto")
    spec = load_manifest(bundle.path).models[0]
    assert spec.engine == "onnx" and [m["engine"] for m in spec.gate["table"]] == ["torch", "onnx", "openvino"]


def test_an_engine_needs_the_metadata_width_at_pack_time(tmp_path):
    runs = save_folds(tmp_path / "runs", models_of("with_meta.py", "ImageMeta", n=1, meta_features=4))
    with pytest.raises(ConfigError, match="an engine needs the metadata width at pack time"):
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/with_meta.py:ImageMeta", img_size="32", engine="onnx",
             metadata_encoder=f"{FIXTURES}/encoder.py:encode", metadata_id_column="id", classes="a,b,c")


def test_the_exported_graph_is_checked_like_every_bundle_file(tmp_path, images):
    folder, _ = images
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model())
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="32", engine="onnx")
    m = load_manifest(bundle.path)
    verify_files(bundle.path, m)
    path = bundle.path / m.models[0].exported.path
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(BundleError, match=r"engines/fold0.onnx has sha256 .* the file changed after packing"):
        run_csv(bundle.path, folder, tmp_path / "s.csv")


def test_engine_threads_follow_the_cpu_quota(tmp_path, images, monkeypatch):
    """A container under --cpus 1 on a many-core host: the engine's pool gets one thread, as torch's does, and its
    threads do not spin while they wait (the loader processes share the cores)."""
    import submission.devices
    import submission.models

    folder, _ = images
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model())
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="32", engine="onnx")
    opened = []
    real = submission.models.open_engine

    def spy(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(submission.models, "open_engine", spy)
    monkeypatch.setattr(submission.devices, "available_cpus", lambda: 1)
    threads = torch.get_num_threads()
    try:
        run_csv(bundle.path, folder, tmp_path / "s.csv")
    finally:
        torch.set_num_threads(threads)
    options = [e.session.get_session_options() for e in opened]
    assert [o.intra_op_num_threads for o in options] == [1]
    assert [o.get_session_config_entry("session.intra_op.allow_spinning") for o in options] == ["0"]

