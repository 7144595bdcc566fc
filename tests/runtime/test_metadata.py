"""Models that also take metadata: the frozen encoding against one written out by hand, the user's encoder, and a
named error or a reported fallback for every bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from builder.errors import CheckpointError, ConfigError
from submission.errors import InputError
from submission.manifest import load_manifest
from submission.runner import Options, run
from tests import naive
from tests.bundles import make_images
from tests.naive import FIXTURES
from tests.pack.test_code import models_of, pack, save_folds
from tests.runs import save_bare, tiny_model

SITES = ["torso", "head", "leg"]


def metadata_table(ids: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "image": ids,
        "site": [SITES[i % 3] if i % 5 else "" for i in range(len(ids))],  # blanks too
        "age": [float(rng.integers(20, 80)) if i % 4 else np.nan for i in range(len(ids))],
        "patient": [f"p{i // 2}" for i in range(len(ids))],  # two images per patient, one alone at the end
    })


COLUMNS = [{"name": "site", "type": "categorical"}, {"name": "age", "type": "numeric", "scale": 90},
           {"name": "patient", "type": "count", "log1p": True}]


def by_hand(table: pd.DataFrame, age_fill: float) -> np.ndarray:
    """The declared encoding written out: one-hot over the sorted sites, age / 90 with the fill, log1p(count)."""
    rows = []
    for _, r in table.iterrows():
        one_hot = [1.0 if r["site"] == s else 0.0 for s in sorted(SITES)]
        age = (age_fill if pd.isna(r["age"]) else r["age"]) / 90
        count = math.log1p(int((table["patient"] == r["patient"]).sum()))
        rows.append(one_hot + [age, count])
    return np.array(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Two folds of a metadata model, packed with declared columns fitted on training metadata."""
    root = tmp_path_factory.mktemp("meta")
    runs = save_folds(root / "runs", models_of("with_meta.py", "ImageMeta", n=2, meta_features=5))
    train = metadata_table([f"t{i}" for i in range(40)], seed=1)
    train.to_csv(root / "train.csv", index=False)
    (root / "pack.json").write_text(json.dumps({"metadata_columns": COLUMNS}))
    bundle = pack(runs, root / "bundle", config=root / "pack.json", model_code=f"{FIXTURES}/with_meta.py:ImageMeta",
                  model_kwargs='{"meta_features": 5}', train_metadata=root / "train.csv", metadata_file="test.csv",
                  metadata_id_column="image", format="probs", classes="a,b,c", tta="hflip", img_size="32")
    folder = root / "test"
    paths = make_images(folder, n=9)
    ids = [p.stem for p in paths]
    table = metadata_table(ids)
    table.to_csv(folder / "test.csv", index=False)
    return root, bundle, folder, paths, table, float(np.nanmedian(train["age"]))


def test_declared_columns_are_fitted_on_the_training_metadata(packed):
    _, bundle, *_ , age_fill = packed
    meta = load_manifest(bundle.path).metadata
    assert [(c.name, c.kind, c.width) for c in meta.columns] == [("site", "categorical", 3), ("age", "numeric", 1),
                                                                  ("patient", "count", 1)]
    assert meta.columns[0].categories == tuple(sorted(SITES)) and meta.columns[1].fill == age_fill
    assert meta.width == 5 and meta.file == "test.csv" and load_manifest(bundle.path).models[0].takes_metadata


def test_the_runtime_against_the_encoding_written_out_by_hand(packed, tmp_path):
    _, bundle, folder, paths, table, age_fill = packed
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=2, quiet=True, batch_size=4))
    got = pd.read_csv(tmp_path / "s.csv")[["a", "b", "c"]].to_numpy()
    module = naive.fixture("with_meta.py")
    expected = naive.probabilities(bundle.path, paths, build=lambda spec: module.ImageMeta(**spec.kwargs),
                                   features=by_hand(table, age_fill))
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_metadata_model_and_image_only_model_in_one_ensemble(packed, tmp_path):
    root, *_ = packed
    runs = tmp_path / "runs"
    for name in ("fold0", "fold1"):
        (runs / name).mkdir(parents=True)
        (runs / name / "best.pth").write_bytes((root / "runs" / "fold0" / "best.pth").read_bytes())
    save_bare(runs / "fold1" / "best.pth", tiny_model("test_resnet", 3))
    config = tmp_path / "pack.json"
    config.write_text(json.dumps({"metadata_columns": COLUMNS, "folds": {
        "fold0": {"model_code": f"{FIXTURES}/with_meta.py:ImageMeta", "model_kwargs": {"meta_features": 5}},
        "fold1": {"arch": "test_resnet"}}}))
    bundle = pack(runs, tmp_path / "b", config=config, train_metadata=root / "train.csv", metadata_file="test.csv",
                  metadata_id_column="image", img_size="32")
    assert [m.takes_metadata for m in load_manifest(bundle.path).models] == [True, False]
    _, _, folder, *_ = packed
    assert run(folder, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True)).rows == 9


def edited(packed, tmp_path, change):
    """The test folder with its metadata changed by ``change``."""
    _, _, folder, _, table, _ = packed
    test = tmp_path / "test"
    test.mkdir()
    for p in folder.iterdir():
        if p.name != "test.csv":
            (test / p.name).write_bytes(p.read_bytes())
    change(table.copy()).to_csv(test / "test.csv", index=False)
    return test


def test_an_image_without_a_row_is_an_error_or_filled_on_request(packed, tmp_path):
    _, bundle, *_ = packed
    test = edited(packed, tmp_path, lambda t: t[~t["image"].isin(["img3", "img7"])])
    with pytest.raises(InputError, match=r"2 image\(s\) have no row in the metadata file .*test.csv: 'img3', 'img7'; "
                                         r"pass --metadata-missing fill"):
        run(test, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True))
    run(test, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True, metadata_missing="fill"))
    report = json.loads((tmp_path / "s.problems.json").read_text())
    assert report["metadata"]["filled_ids"] == ["img3", "img7"]


def test_an_unknown_category_is_all_zero_and_counted(packed, tmp_path):
    _, bundle, *_ = packed
    test = edited(packed, tmp_path, lambda t: t.assign(site=["arm"] * 3 + list(t["site"][3:])))
    run(test, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True))
    assert json.loads((tmp_path / "s.problems.json").read_text())["metadata"]["unknown_categories"] == {"site": {"arm": 3}}


@pytest.mark.parametrize("change, words", [
    (lambda t: t.assign(age=["forty"] + list(t["age"][1:])), r"test.csv line 2 column 'age': 'forty' is not a number"),
    (lambda t: t.drop(columns=["patient"]), r"lacks the column\(s\) \['patient'\] the models were packed with"),
    (lambda t: t.rename(columns={"image": "name"}), r"has no id column 'image'"),
    (lambda t: pd.concat([t, t.head(1)]), r"repeats ids in column 'image': 'img0'"),
])
def test_bad_metadata_is_named(packed, tmp_path, change, words):
    _, bundle, *_ = packed
    with pytest.raises(InputError, match=words):
        run(edited(packed, tmp_path, change), bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True))
    assert not (tmp_path / "s.csv").exists()


def test_the_metadata_file_can_be_named_at_run_time(packed, tmp_path):
    _, bundle, folder, _, table, _ = packed
    test = edited(packed, tmp_path, lambda t: t.head(0))
    table.to_csv(tmp_path / "elsewhere.csv", index=False)
    run(test, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True, metadata=tmp_path / "elsewhere.csv"))
    assert (tmp_path / "s.csv").is_file()


def encoder_table(ids: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"image_name": ids, "patient_id": [f"p{i % 3}" for i in range(len(ids))],
                         "sex": rng.choice(["male", "female", None], len(ids)),
                         "age_approx": rng.choice([30.0, 45.0, np.nan], len(ids)),
                         "anatom_site": rng.choice(["torso", "head/neck", None], len(ids))})


@pytest.fixture(scope="module")
def with_encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoder")
    runs = save_folds(root / "runs", models_of("with_meta.py", "ImageMeta", n=1, meta_features=8))
    train = encoder_table([f"t{i}" for i in range(20)], seed=3)
    train.to_csv(root / "train.csv", index=False)
    bundle = pack(runs, root / "bundle", model_code=f"{FIXTURES}/with_meta.py:ImageMeta", img_size="32",
                  model_kwargs='{"meta_features": 8}', metadata_encoder=f"{FIXTURES}/encoder.py:encode",
                  train_metadata=root / "train.csv", metadata_file="meta.csv", format="probs", classes="a,b,c")
    folder = root / "test"
    paths = make_images(folder, n=7)
    table = encoder_table([p.stem for p in paths])
    table.to_csv(folder / "meta.csv", index=False)
    return bundle, folder, paths, table


def test_the_users_encoder_is_frozen_and_called_once_on_every_row(with_encoder, tmp_path):
    bundle, folder, paths, table = with_encoder
    meta = load_manifest(bundle.path).metadata
    assert meta.width == 8 and meta.encoder.attribute == "encode" and meta.id_column == "image_name"
    run(folder, bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True))
    got = pd.read_csv(tmp_path / "s.csv")[["a", "b", "c"]].to_numpy()
    module = naive.fixture("encoder.py")
    features = module.encode(table.assign(path=[str(p) for p in paths])).astype(np.float32)
    model = naive.fixture("with_meta.py")
    expected = naive.probabilities(bundle.path, paths, build=lambda spec: model.ImageMeta(**spec.kwargs),
                                   features=features)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_an_encoder_with_a_per_group_count_gives_the_same_csv_at_once_and_in_two_shards(with_encoder, tmp_path):
    """The encoder sees every row of the file in each shard, so the images-per-patient counts do not change."""
    from submission.runner import merge

    bundle, folder, *_ = with_encoder
    run(folder, bundle.path, tmp_path / "whole.csv", Options(workers=0, quiet=True, batch_size=2))
    for i in range(2):
        run(folder, bundle.path, tmp_path / "x.csv", Options(workers=0, quiet=True, batch_size=2, shard=f"{i}/2",
                                                             out_probs=tmp_path / "p"))
    merge(tmp_path / "p", bundle.path, tmp_path / "merged.csv")
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


@pytest.mark.parametrize("body, words", [
    ("return np.zeros((len(df) - 1, 8))", r"returns an array of shape \(6, 8\) for the 7 rows of .*meta.csv; the models take \(7, 8\)"),
    ("out = np.zeros((len(df), 8)); out[2, 5] = np.nan; return out", r"NaN or infinite features for ids 'img2' \(feature columns \[5\]\)"),
    ("return np.zeros((len(df), 6))", r"returns an array of shape \(7, 6\) .* the models take \(7, 8\)"),
])
def test_an_encoder_that_misbehaves_at_run_time_is_named(with_encoder, tmp_path, body, words):
    """The bundle's frozen encoder replaced by a misbehaving one (and its sha256 updated, as if packed so)."""
    import shutil

    from submission.manifest import FileRef, sha256_file, write_manifest

    bundle, folder, *_ = with_encoder
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.path, copy)
    m = load_manifest(copy)
    path = copy / m.metadata.encoder.files[0].path
    path.write_text(f"import numpy as np\n\n\ndef encode(df):\n    {body}\n")
    from dataclasses import replace

    encoder = replace(m.metadata.encoder, files=(FileRef(m.metadata.encoder.files[0].path, sha256_file(path)),))
    write_manifest(copy, replace(m, metadata=replace(m.metadata, encoder=encoder)))
    with pytest.raises(InputError, match=words):
        run(folder, copy, tmp_path / "s.csv", Options(workers=0, quiet=True))


def test_pack_refuses_a_metadata_model_without_metadata_and_a_bad_declaration(tmp_path):
    runs = save_folds(tmp_path / "runs", models_of("with_meta.py", "ImageMeta", n=1, meta_features=4))
    with pytest.raises(ConfigError, match="the model's forward takes a second input \\(metadata\\), but no metadata"):
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/with_meta.py:ImageMeta", img_size="32")
    (tmp_path / "cols.yaml").write_text("- {name: site, type: categorical}\n")
    with pytest.raises(ConfigError, match="list its categories, or pass --train-metadata"):
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/with_meta.py:ImageMeta", img_size="32",
             metadata_columns=tmp_path / "cols.yaml", metadata_file="test.csv", metadata_id_column="id")
    (tmp_path / "cols.yaml").write_text("- {name: site, type: categorical, categories: [a, b]}\n")
    with pytest.raises(CheckpointError, match="forward pass on a batch of shape .* fails"):  # 2 features, model takes 4
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/with_meta.py:ImageMeta", img_size="32",
             metadata_columns=tmp_path / "cols.yaml", metadata_file="test.csv", metadata_id_column="id")
