"""Checkpoint metadata of any class is read as inert data; a pickle that would call code is refused before it runs."""

from __future__ import annotations

import argparse
import enum
import os
import pathlib
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from builder.errors import CheckpointError
from builder.pack import safe_pickle
from builder.pack.checkpoints import find_folds, read_checkpoint
from tests.runs import tiny_model

ROOT = Path(__file__).resolve().parents[2]


class Stage(enum.Enum):
    TRAIN = "train"
    TEST = "test"


def metadata() -> dict:
    cfg = OmegaConf.create({"model": {"name": "test_resnet", "img_size": 40},
                            "data": {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]}, "loss": "BCEWithLogitsLoss"})
    return {
        "hyper_parameters": cfg,
        "folds": OmegaConf.create([0, 1, 2]),
        "args": types.SimpleNamespace(model="test_resnet", num_classes=3, lr=np.float32(0.01)),
        "best_metric": np.float64(0.875),
        "epoch": np.int64(7),
        "dtype": np.dtype("float16"),
        "output_dir": pathlib.Path("/runs/fold0"),
        "stage": Stage.TEST,
    }


def save_in_fresh_process(path: Path, code: str) -> None:
    """Write a checkpoint from another interpreter, so its classes are not imported in this one."""
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT)


def test_metadata_of_unknown_classes_is_read_as_plain_data(tmp_path):
    path = tmp_path / "fold0.pth"
    torch.save({"state_dict": tiny_model().state_dict(), **metadata()}, path)
    data = safe_pickle.plain(safe_pickle.load(path))
    assert data["hyper_parameters"] == {"model": {"name": "test_resnet", "img_size": 40},
                                        "data": {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]},
                                        "loss": "BCEWithLogitsLoss"}
    assert data["folds"] == [0, 1, 2]
    assert data["args"] == {"model": "test_resnet", "num_classes": 3, "lr": pytest.approx(0.01)}
    assert data["best_metric"] == 0.875 and data["epoch"] == 7
    assert data["output_dir"] == "/runs/fold0" and data["stage"] == "test"
    assert np.dtype(data["dtype"]) == np.float16


def test_the_settings_inside_are_found_with_their_source(tmp_path):
    path = tmp_path / "fold0.pth"
    torch.save({"state_dict": tiny_model().state_dict(), **metadata()}, path)
    carried = read_checkpoint(find_folds(path)[0]).carried
    assert carried["arch"] == ("test_resnet", "fold0.pth args [model]")
    assert carried["img_size"] == (40, "fold0.pth hyper_parameters [model.img_size]")
    assert carried["mean"] == ([0.1, 0.2, 0.3], "fold0.pth hyper_parameters [data.mean]")
    assert carried["task"] == ("multilabel", "fold0.pth hyper_parameters [loss] is 'BCEWithLogitsLoss'")


def test_classes_of_a_training_script_that_is_not_here_stay_inert(tmp_path):
    """A dataclass of the training script's __main__, and an Enum of a project module this machine lacks."""
    path = tmp_path / "f.pth"
    save_in_fresh_process(path, (
        "import dataclasses, enum, sys, types, torch\n"
        "mod = types.ModuleType('myproject.config'); sys.modules['myproject'] = types.ModuleType('myproject')\n"
        "sys.modules['myproject.config'] = mod\n"
        "class Mode(enum.Enum):\n    FAST = 'fast'\n"
        "Mode.__module__ = 'myproject.config'; mod.Mode = Mode\n"
        "@dataclasses.dataclass\nclass Config:\n    model: str = 'test_resnet'\n    img_size: int = 48\n"
        "torch.save({'state_dict': {'w': torch.ones(2)}, 'config': Config(), 'mode': Mode.FAST}, sys.argv[1])\n"
    ))
    data = safe_pickle.plain(safe_pickle.load(path))
    assert data["config"] == {"model": "test_resnet", "img_size": 48} and data["mode"] == "fast"
    assert "myproject" not in sys.modules


def test_a_pickle_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    save_in_fresh_process(path, (
        "import os, sys, torch\n"
        "class Evil:\n"
        f"    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
        "torch.save({'state_dict': {'w': torch.ones(2)}, 'extra': Evil()}, sys.argv[1])\n"
    ))
    with pytest.raises(CheckpointError, match=r"evil.pth refused: reading it would call posix.system.*nothing of it was run"):
        read_checkpoint(find_folds(path)[0])
    assert not marker.exists()


@pytest.mark.parametrize("call", ["builtins.eval", "subprocess.Popen", "builtins.getattr"])
def test_calls_that_are_not_plain_data_constructors_are_refused(tmp_path, call):
    module, name = call.rsplit(".", 1)
    path = tmp_path / "f.pth"
    save_in_fresh_process(path, (
        f"import {module}, sys, torch\n"
        "class Call:\n"
        f"    def __reduce__(self):\n        return ({call}, ('x',))\n"
        "torch.save({'state_dict': {'w': torch.ones(2)}, 'x': Call()}, sys.argv[1])\n"
    ))
    with pytest.raises(safe_pickle.Refused, match=call):
        safe_pickle.load(path)


def test_argparse_and_lightning_attribute_dicts(tmp_path):
    hparams = {"model_name": "test_resnet", "num_classes": 3}
    path = tmp_path / "x.pth"
    torch.save({"state_dict": tiny_model().state_dict(), "args": argparse.Namespace(model="test_resnet"),
                "hyper_parameters": hparams}, path)
    ckpt = read_checkpoint(find_folds(path)[0])
    assert ckpt.carried["arch"] == ("test_resnet", "x.pth args [model]")
    assert ckpt.carried["num_classes"] == (3, "x.pth hyper_parameters [num_classes]")


def test_a_whole_pickled_model_needs_the_flag_and_is_converted(tmp_path):
    path = tmp_path / "whole.pth"
    model = tiny_model()
    torch.save(model, path)
    with pytest.raises(CheckpointError, match=r"whole pickled model \(timm.models.resnet.ResNet\).*--allow-unsafe-pickle"):
        read_checkpoint(find_folds(path)[0])
    ckpt = read_checkpoint(find_folds(path)[0], allow_unsafe=True)
    assert ckpt.entry == "(pickled module)"
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in model.state_dict().items())


def test_a_model_pickled_from_a_script_needs_the_flag_too(tmp_path):
    path = tmp_path / "whole.pth"
    save_in_fresh_process(path, (
        "import sys, torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.fc = torch.nn.Linear(2, 3)\n"
        "torch.save({'model': Net(), 'epoch': 1}, sys.argv[1])\n"
    ))
    with pytest.raises(CheckpointError, match=r"whole pickled model \(__main__.Net\)"):
        read_checkpoint(find_folds(path)[0])
    assert "os" in sys.modules and os.path.exists(path)  # nothing else to say: no code of Net ran here
