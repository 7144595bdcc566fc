"""Test helpers: fold checkpoints saved the way training scripts save them (timm, Lightning, bare, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from safetensors.torch import save_file
from timm.utils import CheckpointSaver


def tiny_model(arch: str = "test_resnet", num_classes: int = 3, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    with torch.no_grad():
        for p in model.get_classifier().parameters():
            p.mul_(20.0)
    return model.eval()


def timm_args(arch: str, num_classes: int, img_size: int | None = None, **extra: Any) -> argparse.Namespace:
    """The args timm's train.py records (None and "" mean: the model's default)."""
    values = dict(model=arch, num_classes=num_classes, img_size=img_size, input_size=None, crop_pct=None,
                  mean=None, std=None, interpolation="", model_kwargs={}, bce_loss=False, smoothing=0.1, lr=0.01,
                  epochs=3)
    values.update(extra)
    return argparse.Namespace(**values)


def save_timm(folder: Path, model: torch.nn.Module, args: argparse.Namespace, ema: torch.nn.Module | None = None,
              write_args_yaml: bool = True) -> Path:
    """A fold as timm's train.py leaves it: CheckpointSaver's model_best.pth.tar and last.pth.tar, args.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=str(folder),
                            recovery_dir=str(folder), max_history=1)
    saver.save_checkpoint(epoch=0, metric=0.5)
    if write_args_yaml:
        (folder / "args.yaml").write_text(yaml.safe_dump(vars(args)))
    return folder / "model_best.pth.tar"


def save_lightning(path: Path, model: torch.nn.Module, hparams: dict[str, Any] | None = None,
                   attribute: str = "model") -> Path:
    """A PyTorch Lightning checkpoint: the module's attributes prefix the keys; metrics and loss buffers ride along."""
    state = {f"{attribute}.{k}": v for k, v in model.state_dict().items()}
    state["train_acc.correct"] = torch.tensor(7)
    state["criterion.pos_weight"] = torch.ones(3)
    checkpoint = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0", "state_dict": state,
        "optimizer_states": [], "lr_schedulers": [], "callbacks": {}, "hyper_parameters": hparams or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def save_bare(path: Path, model: torch.nn.Module, prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    return path


def save_safetensors(path: Path, model: torch.nn.Module) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def mixed_runs(root: Path, arch: str = "test_resnet", num_classes: int = 3, img_size: int = 48) -> list[torch.nn.Module]:
    """Three folds in three formats: timm CheckpointSaver (with EMA), Lightning, and a bare state_dict with
    ``module.`` whose own script wrote an args.yaml without the number of classes."""
    models = [tiny_model(arch, num_classes, seed=i) for i in range(4)]
    save_timm(root / "fold0", models[3], timm_args(arch, num_classes, img_size), ema=models[0])
    save_lightning(root / "fold1" / "checkpoints" / "epoch=3-step=120.ckpt", models[1],
                   {"model_name": arch, "num_classes": num_classes, "img_size": img_size})
    save_bare(root / "fold2" / "model.pth", models[2], prefix="module.")
    (root / "fold2" / "args.yaml").write_text(yaml.safe_dump({"model": arch, "img_size": img_size}))
    return models[:3]


def lightning_run(root: Path, cfg: Any, seed: int = 0) -> Path:
    """A real one-epoch Lightning fit on the CPU of a tiny timm model that saves a Hydra-style config with
    ``save_hyperparameters``; returns the .ckpt that Lightning's ModelCheckpoint wrote."""
    import lightning as L

    class Classifier(L.LightningModule):
        def __init__(self, cfg: Any):
            super().__init__()
            self.save_hyperparameters(cfg)
            self.model = timm.create_model(cfg.model.name, pretrained=False, num_classes=cfg.model.num_classes)
            self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            x, y = batch
            return self.criterion(self.model(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    torch.manual_seed(seed)
    size = cfg.data.img_size
    data = torch.utils.data.TensorDataset(torch.randn(16, 3, size, size), torch.randint(0, cfg.model.num_classes, (16,)))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(root))
    trainer.fit(Classifier(cfg), torch.utils.data.DataLoader(data, batch_size=8))
    (ckpt,) = (root / "checkpoints").glob("*.ckpt")
    return ckpt
