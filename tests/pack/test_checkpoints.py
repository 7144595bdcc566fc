"""Finding fold checkpoints and reading every common format safely, with the settings they carry."""

from __future__ import annotations

import argparse

import pytest
import torch

from builder.errors import CheckpointError
from builder.pack.checkpoints import find_folds, fit_state_dict, read_checkpoint
from tests.runs import (
    save_bare,
    save_lightning,
    save_safetensors,
    save_timm,
    timm_args,
    tiny_model,
)


def names(folds):
    return [(f.name, f.path.name) for f in folds]


def test_files_directly_in_the_folder_are_folds_in_natural_order(tmp_path):
    model = tiny_model()
    for name in ("fold10.pth", "fold2.pt", "fold_1.safetensors", "model.bin", "notes.txt", ".hidden.pth"):
        (save_safetensors if name.endswith("safetensors") else save_bare)(tmp_path / name, model) if not name.endswith("txt") else (tmp_path / name).write_text("x")
    (tmp_path / ".env").write_text("SECRET=1")
    assert names(find_folds(tmp_path)) == [
        ("fold2", "fold2.pt"), ("fold10", "fold10.pth"), ("fold_1", "fold_1.safetensors"), ("model", "model.bin")
    ]


def test_timm_train_layout_prefers_model_best_and_finds_args_yaml(tmp_path):
    for i in range(2):
        save_timm(tmp_path / f"fold{i}", tiny_model(seed=i), timm_args("test_resnet", 3, 48))
    (tmp_path / "wandb" / "run").mkdir(parents=True)
    save_bare(tmp_path / "wandb" / "run" / "x.pth", tiny_model())
    folds = find_folds(tmp_path)
    assert names(folds) == [("fold0", "model_best.pth.tar"), ("fold1", "model_best.pth.tar")]
    assert folds[0].args_file == tmp_path / "fold0" / "args.yaml"
    assert {p.name for p in (tmp_path / "fold0").iterdir()} >= {"last.pth.tar", "model_best.pth.tar"}


def test_lightning_layout_is_found_in_nested_checkpoints_folder(tmp_path):
    save_lightning(tmp_path / "fold0" / "checkpoints" / "epoch=3.ckpt", tiny_model())
    assert names(find_folds(tmp_path)) == [("fold0", "epoch=3.ckpt")]


def test_several_checkpoints_in_a_fold_need_pick(tmp_path):
    save_lightning(tmp_path / "fold0" / "checkpoints" / "epoch=3.ckpt", tiny_model())
    save_lightning(tmp_path / "fold0" / "checkpoints" / "last.ckpt", tiny_model())
    with pytest.raises(CheckpointError, match=r"holds several checkpoints \(checkpoints/epoch=3.ckpt, checkpoints/last.ckpt\) and none is the obvious one; choose with --pick"):
        find_folds(tmp_path)
    assert names(find_folds(tmp_path, pick="last.ckpt")) == [("fold0", "last.ckpt")]
    with pytest.raises(CheckpointError, match="--pick 'nothing\\*' must match exactly one checkpoint"):
        find_folds(tmp_path, pick="nothing*")


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match="no checkpoints found in .* directly inside it, and then one per sub-folder"):
        find_folds(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        find_folds(tmp_path / "nope")


def test_single_file(tmp_path):
    path = save_bare(tmp_path / "best.pth", tiny_model())
    assert names(find_folds(path)) == [("best", "best.pth")]


def test_timm_checkpoint_prefers_ema_and_carries_args(tmp_path):
    ema, main = tiny_model(seed=1), tiny_model(seed=2)
    save_timm(tmp_path / "f", main, timm_args("test_resnet", 3, 48, crop_pct=0.9, mean=[0.1, 0.2, 0.3]), ema=ema,
              write_args_yaml=False)
    (fold,) = find_folds(tmp_path)
    ckpt = read_checkpoint(fold)
    assert ckpt.entry == "state_dict_ema"
    assert torch.equal(ckpt.state_dict["fc.weight"], ema.state_dict()["fc.weight"])
    assert ckpt.carried["arch"] == ("test_resnet", "model_best.pth.tar args [model]")
    assert ckpt.carried["img_size"][0] == 48
    assert ckpt.carried["crop_pct"][0] == 0.9 and ckpt.carried["mean"][0] == [0.1, 0.2, 0.3]
    assert "interpolation" not in ckpt.carried  # "" means the model's default
    no_ema = read_checkpoint(fold, use_ema=False)
    assert no_ema.entry == "state_dict"
    assert torch.equal(no_ema.state_dict["fc.weight"], main.state_dict()["fc.weight"])


def test_args_yaml_is_read_when_the_checkpoint_has_no_args(tmp_path):
    path = save_bare(tmp_path / "fold0" / "model_best.pth.tar", tiny_model())
    (tmp_path / "fold0" / "args.yaml").write_text("model: test_resnet\nnum_classes: 3\nimg_size: 40\n")
    ckpt = read_checkpoint(find_folds(tmp_path)[0])
    assert ckpt.fold.path == path
    assert ckpt.carried["arch"] == ("test_resnet", f"{tmp_path / 'fold0' / 'args.yaml'} [model]")
    assert ckpt.carried["img_size"][0] == 40


def test_lightning_checkpoint_keeps_model_keys_and_drops_metrics(tmp_path):
    model = tiny_model()
    path = save_lightning(tmp_path / "x.ckpt", model, {"model_name": "test_resnet", "num_classes": 3})
    ckpt = read_checkpoint(find_folds(path)[0])
    assert ckpt.carried["arch"] == ("test_resnet", "x.ckpt hyper_parameters [model_name]")
    fitted, dropped = fit_state_dict(ckpt.state_dict, set(model.state_dict()))
    assert dropped == ["criterion.pos_weight", "train_acc.correct"]
    assert fitted.keys() == model.state_dict().keys()


def test_lightning_attribute_dict_hparams_load_without_lightning(tmp_path):
    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = "lightning.fabric.utilities.data"
    AttributeDict.__qualname__ = "AttributeDict"
    import sys
    import types

    module = types.ModuleType("lightning.fabric.utilities.data")
    module.AttributeDict = AttributeDict
    for name in ("lightning", "lightning.fabric", "lightning.fabric.utilities"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["lightning.fabric.utilities.data"] = module
    try:
        path = save_lightning(tmp_path / "x.ckpt", tiny_model(), AttributeDict(model_name="test_resnet"))
    finally:
        del sys.modules["lightning.fabric.utilities.data"]
    ckpt = read_checkpoint(find_folds(path)[0])
    assert ckpt.carried["arch"][0] == "test_resnet"


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path, prefix):
    model = tiny_model()
    ckpt = read_checkpoint(find_folds(save_bare(tmp_path / "f.pth", model, prefix=prefix))[0])
    assert ckpt.entry == "(bare state_dict)"
    fitted, dropped = fit_state_dict(ckpt.state_dict, set(model.state_dict()))
    assert fitted.keys() == model.state_dict().keys() and dropped == []


def test_safetensors_and_model_state_dict_key(tmp_path):
    model = tiny_model()
    assert read_checkpoint(find_folds(save_safetensors(tmp_path / "a.safetensors", model))[0]).entry == "(bare state_dict)"
    torch.save({"model_state_dict": model.state_dict(), "epoch": 3}, tmp_path / "b.pt")
    assert read_checkpoint(find_folds(tmp_path / "b.pt")[0]).entry == "model_state_dict"


class Custom:  # an arbitrary class of the training code: read as inert data, nothing of it called
    def __init__(self):
        self.x = 1


def test_objects_of_arbitrary_classes_are_read_as_data(tmp_path):
    model = tiny_model()
    path = tmp_path / "f.pth"
    torch.save({"state_dict": model.state_dict(), "extra": Custom(), "args": {"model": "test_resnet"}}, path)
    ckpt = read_checkpoint(find_folds(path)[0])
    assert ckpt.entry == "state_dict" and ckpt.carried["arch"] == ("test_resnet", "f.pth args [model]")


def test_pickled_whole_module_needs_the_flag(tmp_path):
    model = tiny_model()
    torch.save(model, tmp_path / "whole.pth")
    with pytest.raises(CheckpointError, match="unsafe unpickling"):
        read_checkpoint(find_folds(tmp_path / "whole.pth")[0])
    assert read_checkpoint(find_folds(tmp_path / "whole.pth")[0], allow_unsafe=True).entry == "(pickled module)"


def test_argparse_namespace_is_allowed(tmp_path):
    torch.save({"state_dict": tiny_model().state_dict(), "args": argparse.Namespace(model="test_resnet")}, tmp_path / "a.pth")
    assert read_checkpoint(find_folds(tmp_path / "a.pth")[0]).carried["arch"][0] == "test_resnet"


def test_file_without_weights_and_corrupt_files(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"has no state_dict: its top-level keys are \['epoch', 'lr'\]"):
        read_checkpoint(find_folds(tmp_path / "a.pth")[0])
    (tmp_path / "b.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="b.pth"):
        read_checkpoint(find_folds(tmp_path / "b.pth")[0])
    (tmp_path / "c.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read .*c.safetensors as safetensors"):
        read_checkpoint(find_folds(tmp_path / "c.safetensors")[0])


def test_timm_train_folder_chooses_model_best_and_says_why(tmp_path):
    folder = tmp_path / "fold0"
    save_timm(folder, tiny_model(), timm_args("test_resnet", 3, 48))
    for extra in ("checkpoint-0.pth.tar", "checkpoint-1.pth.tar"):
        (folder / extra).write_bytes((folder / "last.pth.tar").read_bytes())
    (folder / "summary.csv").write_text("epoch,train_loss,eval_top1\n0,1.0,0.5\n1,0.8,0.6\n")
    (fold,) = find_folds(tmp_path)
    assert fold.path.name == "model_best.pth.tar" and fold.args_file == folder / "args.yaml"
    assert fold.why == ("timm's train.py keeps its best epoch as model_best.pth.tar (also there: checkpoint-0.pth.tar, "
                        "checkpoint-1.pth.tar, last.pth.tar)")
    assert find_folds(folder)[0].path == fold.path  # the run's folder given as --models


def test_a_scripts_own_best_and_last_need_pick(tmp_path):
    """best.pth, best_acc.pth, last.pth with model_state_dict (a common training loop), with and without module."""
    for fold in range(2):
        model = tiny_model(seed=fold)
        for name in ("best.pth", "best_acc.pth", "last.pth"):
            state = {("module." if fold else "") + k: v for k, v in model.state_dict().items()}
            save = {"epoch": 4, "model_state_dict": state, "optimizer_adam_state_dict": {}, "scheduler_cos_state_dict": {}}
            (tmp_path / f"fold{fold}").mkdir(exist_ok=True)
            torch.save(save, tmp_path / f"fold{fold}" / name)
    with pytest.raises(CheckpointError, match=r"fold0 holds several checkpoints \(best.pth, best_acc.pth, last.pth\)"):
        find_folds(tmp_path)
    folds = find_folds(tmp_path, pick="best.pth")
    assert names(folds) == [("fold0", "best.pth"), ("fold1", "best.pth")]
    assert folds[0].why == "--pick 'best.pth' (also there: best_acc.pth, last.pth)"
    ckpt = read_checkpoint(folds[1])
    assert ckpt.entry == "model_state_dict"
    fitted, _ = fit_state_dict(ckpt.state_dict, set(tiny_model().state_dict()))
    assert torch.equal(fitted["fc.weight"], tiny_model(seed=1).state_dict()["fc.weight"])
    with pytest.raises(CheckpointError, match="holds several checkpoints"):
        find_folds(tmp_path / "fold0")  # one run's folder as --models: its files are candidates, not folds


def test_timm_hugging_face_layout(tmp_path):
    from timm.models import save_for_hf

    model = tiny_model("test_efficientnet", num_classes=3)
    for i, safe in enumerate((True, "both")):
        save_for_hf(model, str(tmp_path / f"fold{i}"), model_config={"label_names": ["cat", "dog", "fox"]},
                    safe_serialization=safe)
    folds = find_folds(tmp_path)
    assert names(folds) == [("fold0", "model.safetensors"), ("fold1", "model.safetensors")]
    assert folds[1].why == "timm's Hugging Face layout (config.json); model.safetensors preferred to pytorch_model.bin"
    carried = read_checkpoint(folds[0]).carried
    assert carried["arch"] == ("test_efficientnet", "fold0/config.json [architecture]")
    assert carried["num_classes"] == (3, "fold0/config.json [num_classes]")
    assert carried["classes"] == (["cat", "dog", "fox"], "fold0/config.json [label_names]")
    cfg = model.pretrained_cfg
    for key in ("input_size", "crop_pct", "interpolation", "mean", "std"):
        assert tuple(carried[key][0]) if isinstance(carried[key][0], list) else carried[key][0] == cfg[key], key
    assert names(find_folds(tmp_path / "fold0")) == [("fold0", "model.safetensors")]  # one fold folder as --models
