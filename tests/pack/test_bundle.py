"""``builder pack --bundle-only``: settings and their sources, checks on bad folds, and a bundle the runtime runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from timm.data import resolve_data_config
from typer.testing import CliRunner

from builder.cli import app
from builder.errors import CheckpointError, ConfigError
from builder.pack.bundle import PackRequest, make_bundle
from submission.manifest import load_manifest, verify_files
from submission.runner import Options, run
from tests.bundles import make_images
from tests.runs import mixed_runs, save_bare, save_safetensors, tiny_model


def pack(runs, out, sample=None, config=None, **options):
    return make_bundle(PackRequest(models=runs, options={"sample_submission": sample, **options}, config=config), out)


def write_sample(path, header, ids, fill):
    rows = [",".join(header)] + [",".join([i] + [fill] * (len(header) - 1)) for i in ids]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, mixed_runs(root)


def test_mixed_formats_pack_into_a_bundle_with_sources(runs, tmp_path):
    root, models = runs
    bundle = pack(root, tmp_path / "bundle")
    m = load_manifest(bundle.path)
    verify_files(bundle.path, m)
    assert [s.name for s in m.models] == ["fold0", "fold1", "fold2"]
    assert [f.entry for f in bundle.folds] == ["state_dict_ema", "state_dict", "(bare state_dict)"]
    sources = {f.name: {k: v.source for k, v in f.sources.items()} for f in bundle.folds}
    assert sources["fold0"]["arch"] == "model_best.pth.tar args [model]"
    assert sources["fold1"]["arch"] == "epoch=3-step=120.ckpt hyper_parameters [model_name]"
    assert sources["fold0"]["input_size"] == "model_best.pth.tar args [img_size]"
    assert sources["fold2"]["num_classes"] == "model.pth classifier weight"
    assert sources["fold0"]["crop_pct"] == "timm default for test_resnet"
    assert bundle.folds[1].dropped_keys == ["criterion.pos_weight", "train_acc.correct"]
    # the bundle holds exactly the weights each fold was trained to (EMA for fold0)
    for spec, model in zip(m.models, models):
        from safetensors.torch import load_file

        saved = load_file(str(bundle.path / spec.weights.path))
        assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert m.provenance["folds"]["fold1"]["checkpoint"] == "fold1/checkpoints/epoch=3-step=120.ckpt"


def test_fold2_without_recorded_arch_needs_one(tmp_path):
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model())
    with pytest.raises(ConfigError, match="no architecture is recorded for this fold; pass --arch"):
        pack(tmp_path / "runs", tmp_path / "b")
    assert pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet").folds[0].sources["arch"].source == "--arch"


def test_options_override_config_which_overrides_checkpoints(runs, tmp_path):
    root, _ = runs
    config = tmp_path / "pack.yaml"
    config.write_text("img_size: 40\ncrop_pct: 0.8\ntta: hflip\n")
    bundle = pack(root, tmp_path / "b", config=config, crop_pct=0.9, interpolation="bicubic")
    fold = bundle.folds[0]
    assert fold.preprocess.input_size == (3, 40, 40) and fold.sources["input_size"].source == "pack.yaml [img_size]"
    assert fold.preprocess.crop_pct == 0.9 and fold.sources["crop_pct"].source == "--crop-pct"
    assert fold.preprocess.interpolation == "bicubic"
    assert bundle.settings["tta"].value == "hflip" and bundle.settings["tta"].source == "pack.yaml [tta]"


def test_timm_defaults_fill_what_nothing_records(tmp_path):
    save_safetensors(tmp_path / "runs" / "f0.safetensors", tiny_model("test_efficientnet"))
    fold = pack(tmp_path / "runs", tmp_path / "b", arch="test_efficientnet").folds[0]
    defaults = resolve_data_config({}, model=fold.model)
    assert fold.preprocess.input_size == tuple(defaults["input_size"])
    assert fold.preprocess.mean == tuple(defaults["mean"]) and fold.preprocess.crop_pct == defaults["crop_pct"]


def test_unknown_config_key(runs, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"archh": "x"}))
    with pytest.raises(ConfigError, match=r"c.json: unknown setting\(s\) \['archh'\] \('archh': did you mean 'arch'\?\); known settings: "):
        pack(runs[0], tmp_path / "b", config=config)


def test_folds_that_disagree_on_num_classes(tmp_path):
    save_bare(tmp_path / "runs" / "a.pth", tiny_model(num_classes=3))
    save_bare(tmp_path / "runs" / "b.pth", tiny_model(num_classes=5))
    with pytest.raises(ConfigError, match=r"disagree on the number of classes: .*a.pth has 3, .*b.pth has 5"):
        pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet")


def test_num_classes_option_that_contradicts_the_head(tmp_path):
    save_bare(tmp_path / "runs" / "a.pth", tiny_model(num_classes=3))
    with pytest.raises(CheckpointError, match=r"a.pth: num_classes is 4 \(from --num-classes\), but the classifier weight has 3 rows"):
        pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", num_classes=4)


def test_missing_keys_name_the_file_and_keys(tmp_path):
    state = tiny_model().state_dict()
    del state["fc.bias"]
    torch.save(state, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"a.pth does not load strictly into 'test_resnet' .*Missing key\(s\).*fc.bias"):
        pack(tmp_path / "a.pth", tmp_path / "b", arch="test_resnet")


def test_wrong_arch_for_the_weights(tmp_path):
    save_bare(tmp_path / "a.pth", tiny_model("test_resnet"))
    with pytest.raises(CheckpointError, match="does not load strictly into 'test_efficientnet' \\(from --arch\\)"):
        pack(tmp_path / "a.pth", tmp_path / "b", arch="test_efficientnet")


def test_nan_weights_name_the_key(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.fc.weight[0, 0] = math.nan
    save_bare(tmp_path / "a.pth", model)
    with pytest.raises(CheckpointError, match=r"a.pth: weight 'fc.weight' has 1 NaN or infinite value\(s\)"):
        pack(tmp_path / "a.pth", tmp_path / "b", arch="test_resnet")


def test_unknown_arch_suggests_close_names(tmp_path):
    save_bare(tmp_path / "a.pth", tiny_model())
    with pytest.raises(ConfigError, match="'test_resnett' is not a timm model name .*did you mean test_resnet"):
        pack(tmp_path / "a.pth", tmp_path / "b", arch="test_resnett")


def test_unsafe_pickle_is_refused(tmp_path):
    torch.save(tiny_model(), tmp_path / "whole.pth")
    with pytest.raises(CheckpointError, match="--allow-unsafe-pickle"):
        pack(tmp_path / "whole.pth", tmp_path / "b", arch="test_resnet")
    assert not (tmp_path / "b").exists()


def test_fixed_size_model_at_the_wrong_size_fails_the_forward_check(tmp_path):
    save_bare(tmp_path / "a.pth", tiny_model("test_vit", img_size=64))
    with pytest.raises(CheckpointError, match=r"forward pass on a batch of shape \(2, 3, 70, 70\) fails: .*patch size"):
        pack(tmp_path / "a.pth", tmp_path / "b", arch="test_vit", model_kwargs='{"img_size": 64}', img_size="70")
    fold = pack(tmp_path / "a.pth", tmp_path / "b", arch="test_vit", model_kwargs='{"img_size": 64}', img_size="64").folds[0]
    assert fold.spec.kwargs == {"num_classes": 3, "img_size": 64}


def test_sample_fixes_ids_columns_and_format(runs, tmp_path):
    root, _ = runs
    onehot = write_sample(tmp_path / "onehot.csv", ["index", "c", "a", "b"], ["001", "002"], "0")
    bundle = pack(root, tmp_path / "b1", sample=onehot, task="multilabel", classes="a,b,c")
    m = load_manifest(bundle.path)
    assert (m.output.format, m.output.id_column, m.output.columns) == ("onehot", "index", ("index", "c", "a", "b"))
    assert m.classes == ("a", "b", "c") and m.decision.thresholds == (0.5, 0.5, 0.5)
    assert "class columns holding integers" in bundle.settings["format"].source

    probs = write_sample(tmp_path / "probs.csv", ["id", "x", "y", "z"], ["a"], "0.333")
    m = load_manifest(pack(root, tmp_path / "b2", sample=probs).path)
    assert m.output.format == "probs" and m.classes == ("x", "y", "z")

    label = write_sample(tmp_path / "label.csv", ["ImageID", "ans"], ["a", "b"], "0")
    m = load_manifest(pack(root, tmp_path / "b3", sample=label, classes="cat,dog,fox").path)
    assert (m.output.format, m.output.label_as, m.output.columns) == ("label", "index", ("ImageID", "ans"))


def test_sample_without_an_id_column(runs, tmp_path):
    one_column = tmp_path / "s.csv"
    one_column.write_text("label\ncat\ndog\n")
    with pytest.raises(ConfigError, match=r"has the columns \['label'\]; it needs an id column"):
        pack(runs[0], tmp_path / "b", sample=one_column)
    repeated = tmp_path / "r.csv"
    repeated.write_text("label,score\ncat,1\ncat,2\n")
    with pytest.raises(ConfigError, match="repeats values .* so it is not an id column; name the id column with --id-column"):
        pack(runs[0], tmp_path / "b", sample=repeated)


def test_thresholds_from_json_and_csv(runs, tmp_path):
    root, _ = runs
    (tmp_path / "t.json").write_text(json.dumps({"b": 0.2, "a": 0.7, "c": 0.5}))
    m = load_manifest(pack(root, tmp_path / "b1", task="multilabel", classes="a,b,c", thresholds=str(tmp_path / "t.json")).path)
    assert m.decision.thresholds == (0.7, 0.2, 0.5)
    (tmp_path / "t.csv").write_text("class,threshold\na,0.1\nb,0.2\nc,0.3\n")
    m = load_manifest(pack(root, tmp_path / "b2", task="multilabel", classes="a,b,c", thresholds=str(tmp_path / "t.csv")).path)
    assert m.decision.thresholds == (0.1, 0.2, 0.3)
    (tmp_path / "bad.json").write_text(json.dumps({"a": 0.1, "b": 0.2}))
    with pytest.raises(ConfigError, match=r"must name every class once: unknown \[\], missing \['c'\]"):
        pack(root, tmp_path / "b3", task="multilabel", classes="a,b,c", thresholds=str(tmp_path / "bad.json"))


def test_invalid_setting_values_are_named(runs, tmp_path):
    with pytest.raises(ConfigError, match="tta is 'd8'; expected one of"):
        pack(runs[0], tmp_path / "b", tta="d8")
    with pytest.raises(ConfigError, match="decode is 'quick'; expected one of: exact, fast"):
        pack(runs[0], tmp_path / "b", decode="quick")
    with pytest.raises(ConfigError, match="4 classes from --classes, but the folds have 3 outputs"):
        pack(runs[0], tmp_path / "b", classes="a,b,c,d")


def test_only_weights_manifest_and_sample_enter_the_bundle(runs, tmp_path):
    root, _ = runs
    (root / ".env").write_text("TOKEN=secret")
    (root / "fold0" / "train.csv").write_text("data")
    sample = write_sample(tmp_path / "s.csv", ["id", "label"], ["a"], "0")
    bundle = pack(root, tmp_path / "b", sample=sample)
    files = sorted(str(p.relative_to(bundle.path)) for p in bundle.path.rglob("*") if p.is_file())
    assert files == ["manifest.json", "sample_submission.csv", "weights/fold0.safetensors",
                     "weights/fold1.safetensors", "weights/fold2.safetensors"]


def test_same_inputs_give_identical_bundles(runs, tmp_path):
    a, b = pack(runs[0], tmp_path / "a"), pack(runs[0], tmp_path / "b")
    for path in sorted(p.relative_to(a.path) for p in a.path.rglob("*") if p.is_file()):
        assert (a.path / path).read_bytes() == (b.path / path).read_bytes(), path


def test_packed_bundle_runs_and_matches_the_trained_models(runs, tmp_path):
    """The runtime on the packed bundle gives what the original models give, with plain timm preprocessing."""
    root, models = runs
    bundle = pack(root, tmp_path / "b", format="probs", classes="a,b,c", crop_pct=1.0, crop_mode="squash")
    images = make_images(tmp_path / "test", n=4)
    run(tmp_path / "test", bundle.path, tmp_path / "s.csv", Options(workers=0, quiet=True))
    got = pd.read_csv(tmp_path / "s.csv")[["a", "b", "c"]].to_numpy()
    mean, std = np.array(bundle.folds[0].preprocess.mean), np.array(bundle.folds[0].preprocess.std)
    expected = []
    for path in images:
        rgb = Image.open(path).convert("RGB").resize((48, 48), Image.Resampling.BILINEAR)
        x = torch.from_numpy(((np.asarray(rgb) / 255.0 - mean) / std).transpose(2, 0, 1)).float()[None]
        with torch.no_grad():
            expected.append(np.mean([m(x).softmax(-1)[0].numpy() for m in models], axis=0))
    np.testing.assert_allclose(got, np.array(expected), atol=2e-6)


def test_cli_bundle_only(runs, tmp_path):
    result = CliRunner().invoke(app, ["pack", "--models", str(runs[0]), "--bundle-only", str(tmp_path / "b"), "--tta", "hflip",
                                      "--decode", "fast"])
    assert result.exit_code == 0, result.output
    assert "where each setting came from" in result.output and "model_best.pth.tar args [model]" in result.output
    assert "chose model_best.pth.tar: timm's train.py keeps its best epoch as model_best.pth.tar" in result.output
    assert (load_manifest(tmp_path / "b").tta, load_manifest(tmp_path / "b").decode) == ("hflip", "fast")
    assert load_manifest(pack(runs[0], tmp_path / "exact").path).decode == "exact"
    failed = CliRunner().invoke(app, ["pack", "--models", str(tmp_path / "none"), "--bundle-only", str(tmp_path / "c")])
    assert failed.exit_code == 11 and "does not exist" in failed.output


def test_pack_tunes_thresholds_on_out_of_fold_predictions(runs, tmp_path):
    root, _ = runs
    rng = np.random.default_rng(0)
    truth = rng.random((300, 3)) < 0.4
    probs = np.clip(np.where(truth, rng.uniform(0.15, 1, truth.shape), rng.uniform(0, 0.12, truth.shape)), 0, 1)
    ids = [f"i{k}" for k in range(300)]
    pd.DataFrame(probs, columns=["a", "b", "c"]).assign(id=ids)[["id", "a", "b", "c"]].to_csv(tmp_path / "oof.csv", index=False)
    pd.DataFrame(truth.astype(int), columns=["a", "b", "c"]).assign(id=ids)[["id", "a", "b", "c"]].to_csv(
        tmp_path / "labels.csv", index=False)
    oof = {"oof": tmp_path / "oof.csv", "oof_labels": tmp_path / "labels.csv"}
    request = PackRequest(models=root, options={"task": "multilabel", "classes": "a,b,c", **oof})
    bundle = make_bundle(request, tmp_path / "b")
    thresholds = load_manifest(bundle.path).decision.thresholds
    assert all(0.12 <= t <= 0.15 for t in thresholds), thresholds  # the gap between negatives and positives
    assert bundle.settings["thresholds"].source.startswith("tuned on oof.csv: f1_macro")
    with pytest.raises(ConfigError, match="thresholds apply to multilabel tasks"):
        make_bundle(PackRequest(models=root, options=oof), tmp_path / "c")


def test_cli_errors_keep_their_brackets(runs, tmp_path):
    config = tmp_path / "pack.yaml"
    config.write_text("img_size: big\n")
    result = CliRunner().invoke(app, ["pack", "--models", str(runs[0]), "--config", str(config),
                                      "--bundle-only", str(tmp_path / "b")])
    assert result.exit_code == 12
    assert "img_size from pack.yaml [img_size] must be numbers, got 'big'" in result.output


def test_a_real_lightning_run_with_a_hydra_config_packs_with_the_sample_alone(tmp_path):
    from omegaconf import OmegaConf

    from tests.runs import lightning_run

    cfg = OmegaConf.create({"model": {"name": "test_resnet", "num_classes": 3},
                            "data": {"img_size": 40, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
                            "loss": "cross_entropy", "trainer": {"max_epochs": 1}})
    for fold in range(2):
        lightning_run(tmp_path / "runs" / f"fold{fold}", cfg, seed=fold)
    sample = write_sample(tmp_path / "s.csv", ["id", "label"], ["a", "b"], "0")
    bundle = pack(tmp_path / "runs", tmp_path / "b", sample=sample)
    fold = bundle.folds[0]
    assert fold.checkpoint.name == "epoch=0-step=2.ckpt"
    assert fold.sources["arch"].source == "epoch=0-step=2.ckpt hyper_parameters [model.name]"
    assert fold.preprocess.input_size == (3, 40, 40) and fold.preprocess.std == (0.25, 0.25, 0.25)
    assert fold.sources["mean"].source == "epoch=0-step=2.ckpt hyper_parameters [data.mean]"
    assert bundle.folds[1].checkpoint.parent.parent.name == "fold1" and fold.dropped_keys == []


def test_hugging_face_label_names_become_the_classes(tmp_path):
    from timm.models import save_for_hf

    for fold in range(2):
        save_for_hf(tiny_model(seed=fold), str(tmp_path / "runs" / f"fold{fold}"),
                    model_config={"label_names": ["cat", "dog", "fox"]}, safe_serialization=True)
    sample = write_sample(tmp_path / "s.csv", ["id", "dog", "fox", "cat"], ["a"], "0.333333")
    bundle = pack(tmp_path / "runs", tmp_path / "b", sample=sample)
    m = load_manifest(bundle.path)
    assert m.classes == ("cat", "dog", "fox") and m.output.columns == ("id", "dog", "fox", "cat")
    assert bundle.settings["classes"].source == "fold0/config.json [label_names], and the other folds alike"
