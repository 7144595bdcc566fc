"""What published winning solutions do, packed as their authors left them: metadata as an optional forward argument,
an encoder with no metadata file at pack time, an albumentations transform of its own size, one folder per model
with its fold files, class names with spaces, a two-class softmax behind an integer placeholder, and a factory whose
path must not leak into the bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from albumentations.pytorch import ToTensorV2

from builder.errors import ConfigError
from submission.errors import BundleError, InputError
from submission.manifest import load_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.naive import FIXTURES
from tests.pack.test_code import models_of, pack, save_folds
from tests.runs import save_bare, save_timm, timm_args, tiny_model

ROOT = Path(__file__).resolve().parents[2]
SEX, SITES = ["male", "female"], ["torso", "head/neck", "lower extremity"]


def isic_metadata(ids: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"image_name": ids, "sex": [SEX[i % 2] for i in range(len(ids))],
                         "age_approx": rng.integers(20, 80, len(ids)).astype(float),
                         "anatom_site_general_challenge": [SITES[i % 3] for i in range(len(ids))]})


META_COLUMNS = [{"name": "sex", "type": "categorical"}, {"name": "age_approx", "type": "numeric", "scale": 90},
                {"name": "anatom_site_general_challenge", "type": "categorical"}]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("test")
    paths = make_images(folder, n=6)
    return folder, paths, [p.stem for p in paths]


def test_metadata_reaches_a_forward_whose_metadata_argument_is_optional(tmp_path, images):
    folder, paths, ids = images
    kwargs = {"enet_type": "test_efficientnet", "out_dim": 2, "n_meta_features": 6}
    runs = save_folds(tmp_path / "runs", models_of("isic_meta.py", "Effnet_Melanoma", n=2, **kwargs))
    isic_metadata([f"t{i}" for i in range(20)], seed=1).to_csv(tmp_path / "train.csv", index=False)
    isic_metadata(ids).to_csv(folder / "test.csv", index=False)
    (tmp_path / "pack.yaml").write_text(yaml.safe_dump({"metadata_columns": META_COLUMNS}))
    bundle = pack(runs, tmp_path / "b", config=tmp_path / "pack.yaml", model_code=f"{FIXTURES}/isic_meta.py:Effnet_Melanoma",
                  model_kwargs=json.dumps(kwargs), train_metadata=tmp_path / "train.csv", metadata_file="test.csv",
                  img_size="64", format="probs")
    m = load_manifest(bundle.path)
    assert all(spec.takes_metadata for spec in m.models)
    assert bundle.folds[0].call.startswith("forward(image, x_meta): metadata is declared (pack.yaml [metadata_columns])")
    assert "optional in its signature" in bundle.folds[0].call
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True))
    got = pd.read_csv(tmp_path / "s.csv").iloc[:, 1:].to_numpy()
    features = _declared_features(isic_metadata(ids), isic_metadata([f"t{i}" for i in range(20)], seed=1))
    module = naive.fixture("isic_meta.py")
    expected = naive.probabilities(bundle.path, paths, lambda spec: module.Effnet_Melanoma(**spec.kwargs), features)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def _declared_features(table: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
    """META_COLUMNS written out: sex one-hot (sorted), age / 90, site one-hot (sorted)."""
    rows = [[float(r["sex"] == s) for s in sorted(set(train["sex"]))] + [r["age_approx"] / 90]
            + [float(r["anatom_site_general_challenge"] == s) for s in sorted(set(train["anatom_site_general_challenge"]))]
            for _, r in table.iterrows()]
    return np.array(rows, dtype=np.float32)


def test_metadata_declared_for_models_that_take_none_is_an_error_naming_both(tmp_path):
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model())
    (tmp_path / "pack.yaml").write_text(yaml.safe_dump({"metadata_columns": [{"name": "sex", "type": "categorical",
                                                                                "categories": SEX}]}))
    with pytest.raises(ConfigError, match=r"metadata is declared \(pack.yaml \[metadata_columns\]\), but no model takes "
                                          r"it: ResNet.forward \(fold0\) take the image alone"):
        pack(tmp_path / "runs", tmp_path / "b", config=tmp_path / "pack.yaml", arch="test_resnet", img_size="32",
             metadata_id_column="image_name")


def test_an_encoder_packs_without_any_metadata_file_and_the_run_asks_for_one(tmp_path, images):
    folder, paths, ids = images
    kwargs = {"enet_type": "test_efficientnet", "out_dim": 3, "n_meta_features": 8}
    runs = save_folds(tmp_path / "runs", models_of("isic_meta.py", "Effnet_Melanoma", n=1, **kwargs))
    common = dict(model_code=f"{FIXTURES}/isic_meta.py:Effnet_Melanoma", model_kwargs=json.dumps(kwargs),
                  metadata_encoder=f"{FIXTURES}/encoder.py:encode", img_size="48", classes="a,b,c",
                  metadata_id_column="image_name")
    bundle = pack(runs, tmp_path / "b", **common)
    m = load_manifest(bundle.path)
    assert m.metadata.file is None and m.metadata.width is None and m.models[0].takes_metadata
    assert "not run on a batch" in bundle.folds[0].unchecked
    proc = subprocess.run([sys.executable, "-m", "submission", str(folder), "--bundle", str(bundle.path), "--out",
                           str(tmp_path / "s.csv"), "--ignore-sample", "--workers", "0"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == InputError.exit_code
    assert proc.stderr.strip() == "error: the models take metadata features: pass the metadata CSV with --metadata PATH"
    table = pd.DataFrame({"image_name": ids, "sex": ["male"] * len(ids), "age_approx": [50.0] * len(ids),
                          "patient_id": [f"p{i // 2}" for i in range(len(ids))],
                          "anatom_site": ["torso", ""] * (len(ids) // 2)})
    table.to_csv(tmp_path / "test.csv", index=False)
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True,
                                                          metadata=tmp_path / "test.csv"))
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(ids)
    checked = pack(runs, tmp_path / "b2", metadata_width="8", **common)
    assert not checked.folds[0].unchecked and load_manifest(checked.path).metadata.width == 8
    five = {**kwargs, "n_meta_features": 5}  # a model trained on other features: only the run can tell
    runs5 = save_folds(tmp_path / "runs5", models_of("isic_meta.py", "Effnet_Melanoma", n=1, **five))
    wrong = pack(runs5, tmp_path / "b3", **{**common, "model_kwargs": json.dumps(five)})
    with pytest.raises(BundleError, match=r"model 'fold0' fails on inputs of shape \(6, 3, 48, 48\) and \(6, 8\): "
                                          r"RuntimeError: mat1 and mat2"):
        run(folder, wrong.path, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True,
                                                            metadata=tmp_path / "test.csv"))


def test_a_metadata_file_beside_the_test_folder_can_be_named(tmp_path):
    data = tmp_path / "data"
    paths = make_images(data / "test", n=4)
    ids = [p.stem for p in paths]
    kwargs = {"enet_type": "test_efficientnet", "out_dim": 2, "n_meta_features": 6}
    runs = save_folds(tmp_path / "runs", models_of("isic_meta.py", "Effnet_Melanoma", n=1, **kwargs))
    isic_metadata(ids).to_csv(data / "test.csv", index=False)
    (tmp_path / "pack.yaml").write_text(yaml.safe_dump({"metadata_columns": [
        {"name": "sex", "type": "categorical", "categories": SEX}, {"name": "age_approx", "type": "numeric", "fill": 50},
        {"name": "anatom_site_general_challenge", "type": "categorical", "categories": SITES}]}))
    bundle = pack(runs, tmp_path / "b", config=tmp_path / "pack.yaml", model_code=f"{FIXTURES}/isic_meta.py:Effnet_Melanoma",
                  model_kwargs=json.dumps(kwargs), metadata_file="../test.csv", img_size="48",
                  metadata_id_column="image_name")
    run(data / "test", bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True))
    assert list(pd.read_csv(tmp_path / "s.csv")["id"]) == ids


def test_an_albumentations_transform_gives_the_fold_its_input_size(tmp_path, images):
    folder, paths, _ = images
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model("test_efficientnet"))
    transform = A.Compose([A.Resize(72, 88), A.Normalize(), ToTensorV2()])
    (tmp_path / "valid_aug.json").write_text(json.dumps(A.to_dict(transform)))
    bundle = pack(tmp_path / "runs", tmp_path / "b", arch="test_efficientnet", albumentations=tmp_path / "valid_aug.json",
                  format="probs")
    assert load_manifest(bundle.path).models[0].preprocess.input_size == (3, 72, 88)  # timm's default is 160
    assert bundle.folds[0].sources["input_size"].source.startswith("the albumentations transform (--albumentations)")
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True))
    np.testing.assert_allclose(pd.read_csv(tmp_path / "s.csv").iloc[:, 1:].to_numpy(),
                               naive.probabilities(bundle.path, paths), atol=2e-6)
    with pytest.raises(ConfigError, match=r"the albumentations transform from --albumentations makes 72x88, but the "
                                          r"input size from --img-size is 224x224"):
        pack(tmp_path / "runs", tmp_path / "b", arch="test_efficientnet", albumentations=tmp_path / "valid_aug.json",
             img_size="224")
    loose = A.Compose([A.Normalize(), ToTensorV2()])  # no resize: its size is the photo's
    (tmp_path / "loose.json").write_text(json.dumps(A.to_dict(loose)))
    with pytest.raises(ConfigError, match="makes images of different sizes .*end it with a Resize"):
        pack(tmp_path / "runs", tmp_path / "b", arch="test_efficientnet", albumentations=tmp_path / "loose.json")


def test_one_folder_per_model_each_with_its_fold_files(tmp_path, images):
    folder, paths, _ = images
    output = tmp_path / "output"
    for model, arch in (("effnet_b4", "test_efficientnet"), ("resnext50", "test_resnet")):
        for i in range(3):
            torch.save(tiny_model(arch, seed=i).state_dict(), (output / model).mkdir(parents=True, exist_ok=True)
                       or output / model / f"weights_fold{i}.pth")
    (output / "effnet_b4" / "log.txt").write_text("fold 0: 0.91\n")
    config = tmp_path / "pack.yaml"
    config.write_text(yaml.safe_dump({
        "models": {"effnet_b4": {"arch": "test_efficientnet", "img_size": 64},
                   "resnext50": {"arch": "test_resnet", "img_size": 48, "crop_pct": 1.0}},
        "fold_weights": {"effnet_b4": 2, "resnext50": 1}}))
    bundle = pack(output, tmp_path / "b", config=config, format="probs")
    m = load_manifest(bundle.path)
    assert [s.name for s in m.models] == [f"effnet_b4/weights_fold{i}" for i in range(3)] + [
        f"resnext50/weights_fold{i}" for i in range(3)]
    assert [s.arch for s in m.models] == ["test_efficientnet"] * 3 + ["test_resnet"] * 3
    assert [s.preprocess.size for s in m.models] == [(64, 64)] * 3 + [(48, 48)] * 3
    assert [s.weight for s in m.models] == [2.0] * 3 + [1.0] * 3
    assert bundle.folds[3].sources["crop_pct"].source == "pack.yaml [models.resnext50.crop_pct]"
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True))
    np.testing.assert_allclose(pd.read_csv(tmp_path / "s.csv").iloc[:, 1:].to_numpy(),
                               naive.probabilities(bundle.path, paths), atol=2e-6)


def test_a_model_folder_of_fold_folders(tmp_path):
    for i in range(2):
        save_timm(tmp_path / "exp" / "exp001" / f"fold{i}", tiny_model(seed=i), timm_args("test_resnet", 3, 32))
    bundle = pack(tmp_path / "exp", tmp_path / "b")
    assert [f.name for f in bundle.folds] == ["exp001/fold0", "exp001/fold1"]
    assert all("model_best.pth.tar" in f.why for f in bundle.folds)


def test_class_names_with_spaces_in_one_label_column(tmp_path, images):
    """Plant Seedlings: `file,species`, a class per cell, names such as 'Common Chickweed'."""
    folder, _, ids = images
    species = ["Black-grass", "Common Chickweed", "Loose Silky-bent", "Small-flowered Cranesbill", "Sugar beet"]
    runs = tmp_path / "runs"
    for i in range(2):
        save_timm(runs / f"fold{i}", tiny_model(num_classes=5, seed=i), timm_args("test_resnet", 5, 32))
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("file,species\n" + "".join(f"{i},Sugar beet\n" for i in ids))
    (tmp_path / "classes.txt").write_text("\n".join(species) + "\n")
    bundle = pack(runs, tmp_path / "b", sample_submission=sample, classes=str(tmp_path / "classes.txt"))
    m = load_manifest(bundle.path)
    assert (m.task, m.output.format, m.output.label_as) == ("multiclass", "label", "name")
    assert bundle.settings["task"].source == "sample_submission.csv: one label per row"
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True))
    written = pd.read_csv(tmp_path / "s.csv")["species"]
    assert set(written) <= set(species) and any(" " in name for name in species)
    from typer.testing import CliRunner

    from builder.cli import app

    (tmp_path / "labels.csv").write_text("file,species\n" + "".join(f"{i},{species[k % 5]}\n" for k, i in enumerate(ids)))
    result = CliRunner().invoke(app, ["validate", "--csv", str(tmp_path / "s.csv"), "--sample-submission", str(sample),
                                      "--classes", str(tmp_path / "classes.txt"), "--labels", str(tmp_path / "labels.csv")])
    assert result.exit_code == 0, result.output
    assert "score: accuracy =" in result.output


def test_a_two_class_softmax_behind_an_integer_placeholder_names_the_choices(tmp_path, images):
    """Histopathologic Cancer Detection: `id,label` with 0, scored by AUC on P(label 1)."""
    _, _, ids = images
    runs = tmp_path / "runs"
    for i in range(2):
        save_timm(runs / f"fold{i}", tiny_model(num_classes=2, seed=i), timm_args("test_resnet", 2, 32))
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,label\n" + "".join(f"{i},0\n" for i in ids))
    with pytest.raises(ConfigError, match=r"can be read in several ways: .*probability.*--positive-class NAME.*class "
                                          r"indices.*--classes.*pass the option of the one you mean, or --format"):
        pack(runs, tmp_path / "b", sample_submission=sample)
    m = load_manifest(pack(runs, tmp_path / "b", sample_submission=sample, positive_class="1").path)
    assert (m.output.format, m.decision.positive_class) == ("binary", "1")
    assert load_manifest(pack(runs, tmp_path / "b", sample_submission=sample, format="label").path).output.format == "label"


def test_the_factory_is_recorded_relative_to_its_frozen_code(tmp_path):
    """Two checkouts in different folders, the code named by absolute paths: byte-identical bundles."""
    bundles = []
    for checkout in ("home/alice/solution", "mnt/work/other-place"):
        root = tmp_path / checkout
        shutil.copytree(FIXTURES / "v1", root / "src")
        runs = save_folds(root / "runs", models_of("v1/model.py", "Net", n=2))
        bundles.append(pack(runs, tmp_path / f"b{len(bundles)}", model_code=f"{root / 'src' / 'model.py'}:Net",
                            img_size="32").path)
    assert load_manifest(bundles[0]).models[0].arch == "model.py:Net"
    files = [sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()) for b in bundles]
    assert files[0] == files[1]
    for name in files[0]:
        assert (bundles[0] / name).read_bytes() == (bundles[1] / name).read_bytes(), name
