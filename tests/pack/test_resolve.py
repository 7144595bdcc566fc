"""What the user said is resolved once, typed and checked, before any checkpoint is opened: a bad setting fails with
its own error, naming the choices, even where every checkpoint is garbage; per fold, the options and the config file
stand over what the run recorded."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from builder.errors import CheckpointError, ConfigError
from builder.pack import checkpoints
from builder.pack.resolve import ENSEMBLE, FoldSettings, PackRequest, PackSettings, fold_settings, said
from builder.pack.settings import SETTINGS
from submission import formats


@pytest.fixture
def garbage(tmp_path, monkeypatch):
    """Three fold checkpoints of random bytes; reading any of them fails the test."""
    runs = tmp_path / "runs"
    for i in range(3):
        (runs / f"fold{i}").mkdir(parents=True)
        (runs / f"fold{i}" / "best.pth").write_bytes(bytes(range(256)) * 40)

    def never(*args, **kwargs):
        raise AssertionError("a checkpoint was read")

    monkeypatch.setattr(checkpoints, "_load_object", never)
    return runs


@pytest.mark.parametrize("option, value, words", [
    ("tta", "d8", "tta from --tta is 'd8'; expected one of: none, hflip, vflip, flips, d4"),
    ("merge", "avg", "merge from --merge is 'avg'; expected one of: mean, gmean, logits, rank"),
    ("decode", "quick", "decode from --decode is 'quick'; expected one of: exact, fast"),
    ("format", "csvv", "format from --format is 'csvv'; expected one of: " + ", ".join(formats.FORMATS)),
    ("task", "multi", "task from --task is 'multi'; expected one of: multiclass, multilabel, regression"),
    ("fold_weights", "1,x,1", "fold_weights from --fold-weights must be numbers"),
    ("fold_weights", "1,2", r"fold_weights from --fold-weights must have 3 numbers \(one per fold: fold0, fold1, fold2\)"),
    ("fold_weights", "1,-1,1", "fold_weights from --fold-weights must be positive numbers"),
    ("crop_pct", "1.5", r"crop_pct from --crop-pct is 1.5; expected a number in \(0, 1\]"),
    ("interpolation", "cubic", "interpolation from --interpolation is 'cubic'; expected one of: nearest, bilinear"),
    ("mean", "0.5,0.5", "mean from --mean must have 3 numbers, got 2"),
    ("img_size", "big", "img_size from --img-size must be numbers"),
    ("decimals", 40, "decimals from --decimals is 40; expected a whole number from 0 to 12"),
    ("model_kwargs", "{broken", "model_kwargs from --model-kwargs"),
])
def test_a_bad_option_fails_before_a_checkpoint_is_read(garbage, tmp_path, option, value, words):
    with pytest.raises(ConfigError, match=words):
        said(PackRequest(models=garbage, options={option: value}))


def test_a_bad_config_value_names_the_file_and_key(garbage, tmp_path):
    config = tmp_path / "pack.yaml"
    config.write_text(yaml.safe_dump({"tta": "hflip", "folds": {"fold1": {"crop_mode": "sideways"}}}))
    with pytest.raises(ConfigError, match=r"crop_mode from pack.yaml \[folds.fold1.crop_mode\] is 'sideways'; "
                                          "expected one of: center, squash, border"):
        said(PackRequest(models=garbage, config=config))
    config.write_text(yaml.safe_dump({"folds": {"fold9": {"img_size": 64}}}))
    with pytest.raises(ConfigError, match=r"folds names \['fold9'\], which are not among the folds found .*fold0, fold1"):
        said(PackRequest(models=garbage, config=config))


def test_settings_that_contradict_each_other_fail_before_a_checkpoint_is_read(garbage, tmp_path):
    thresholds = tmp_path / "t.json"
    thresholds.write_text("[0.5, 0.5]")
    with pytest.raises(ConfigError, match="thresholds apply to multilabel tasks"):
        said(PackRequest(models=garbage, options={"task": "multiclass", "thresholds": thresholds}))
    with pytest.raises(ConfigError, match="--new-class and --new-threshold go together"):
        said(PackRequest(models=garbage, options={"new_class": "new_whale"}))
    with pytest.raises(ConfigError, match=r"--sample-submission: .*missing.csv does not exist"):
        said(PackRequest(models=garbage, options={"sample_submission": tmp_path / "missing.csv"}))


def test_good_settings_then_reach_the_checkpoints(garbage):
    with pytest.raises(AssertionError, match="a checkpoint was read"):
        from builder.pack.bundle import make_bundle

        make_bundle(PackRequest(models=garbage, options={"tta": "hflip", "arch": "test_resnet"}), garbage.parent / "b")


def test_the_typed_settings_are_the_declared_ones():
    ensemble = {s.name for s in SETTINGS if not s.per_fold and s.cli}
    assert set(ENSEMBLE) == ensemble
    per_fold = {s.name for s in SETTINGS if s.per_fold} - {"img_size"}  # img_size and input_size: one input size
    assert {f.name for f in dataclasses.fields(FoldSettings)} == per_fold
    assert {f.name for f in dataclasses.fields(PackSettings)} >= ensemble


def test_a_fold_takes_options_then_its_config_then_its_model_then_the_config_then_the_run(tmp_path):
    from tests.runs import save_bare, tiny_model

    for model in ("effnet", "resnet"):
        for i in range(2):
            save_bare(tmp_path / "runs" / model / f"weights_fold{i}.pth", tiny_model())
    config = tmp_path / "pack.yaml"
    config.write_text(yaml.safe_dump({"crop_pct": 0.8, "img_size": 40, "models": {"effnet": {"img_size": 48}},
                                      "folds": {"effnet/weights_fold1": {"img_size": 56}}}))
    s = said(PackRequest(models=tmp_path / "runs", options={"interpolation": "bilinear"}, config=config))
    assert [f.name for f in s.fold_files] == ["effnet/weights_fold0", "effnet/weights_fold1", "resnet/weights_fold0",
                                              "resnet/weights_fold1"]
    recorded = {"img_size": (32, "args.yaml [img_size]"), "crop_pct": (0.95, "args.yaml [crop_pct]"),
                "arch": ("test_resnet", "args.yaml [model]")}
    got = [fold_settings(s, f, recorded) for f in s.fold_files]
    assert [g.input_size.value[1] for g in got] == [48, 56, 40, 40]
    assert [g.input_size.source for g in got] == ["pack.yaml [models.effnet.img_size]",
                                                  "pack.yaml [folds.effnet/weights_fold1.img_size]",
                                                  "pack.yaml [img_size]", "pack.yaml [img_size]"]
    assert {g.crop_pct.source for g in got} == {"pack.yaml [crop_pct]"}
    assert {g.interpolation.source for g in got} == {"--interpolation"}
    assert {g.arch.source for g in got} == {"args.yaml [model]"}


def test_a_recorded_value_that_does_not_parse_names_where_it_was_found(tmp_path):
    from tests.runs import save_bare, tiny_model

    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model())
    s = said(PackRequest(models=tmp_path / "runs"))
    with pytest.raises(ConfigError, match=r"crop_pct from fold0/args.yaml \[crop_pct\] must be a number, not 'wide'"):
        fold_settings(s, s.fold_files[0], {"crop_pct": ("wide", "fold0/args.yaml [crop_pct]")})


def test_unreadable_checkpoints_still_fail_as_checkpoints(garbage, monkeypatch):
    monkeypatch.undo()
    from builder.pack.bundle import make_bundle

    with pytest.raises(CheckpointError, match="cannot read"):
        make_bundle(PackRequest(models=garbage, options={"arch": "test_resnet"}), garbage.parent / "b")
