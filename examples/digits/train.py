"""Train k folds of a small timm model on a competition made by make_competition.py, on the CPU.

Saves what timm's train.py would: runs/fold{k}/model_best.pth.tar (timm's CheckpointSaver, with the run's
args) and args.yaml beside it, plus oof.csv, the out-of-fold probabilities of every training image.

    python train.py OUT --task multiclass [--folds 3] [--epochs 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import yaml
from PIL import Image
from sklearn.model_selection import KFold, StratifiedKFold
from timm.data import create_transform
from timm.utils import CheckpointSaver

ARCH = "test_resnet"
DATA = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear", crop_pct=1.0)


def load(out: Path, task: str) -> tuple[list[str], torch.Tensor, np.ndarray, int]:
    """Training images through timm's eval transform (the same preprocessing the image will use)."""
    table = pd.read_csv(out / "train_labels.csv", dtype={"id": str, "index": str})
    ids = table.iloc[:, 0].tolist()
    size = Image.open(out / "train" / f"{ids[0]}.png").size[0]
    transform = create_transform(input_size=(3, size, size), is_training=False, **DATA)
    x = torch.stack([transform(Image.open(out / "train" / f"{i}.png").convert("RGB")) for i in ids])
    y = table["label"].to_numpy() if task == "multiclass" else table.iloc[:, 1:].to_numpy(dtype=np.float32)
    return ids, x, y, size


def train_fold(x: torch.Tensor, y: np.ndarray, task: str, epochs: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(ARCH, pretrained=False, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    target = torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            logits = model(x[batch])
            if task == "multiclass":
                loss = torch.nn.functional.cross_entropy(logits, target[batch], label_smoothing=0.1)
            else:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", choices=("multiclass", "multilabel"), required=True)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    ids, x, y, size = load(args.out, args.task)
    splitter = StratifiedKFold if args.task == "multiclass" else KFold
    oof = np.zeros((len(ids), 10))
    split = splitter(args.folds, shuffle=True, random_state=0).split(x, y if args.task == "multiclass" else None)
    for fold, (train, held_out) in enumerate(split):
        model = train_fold(x[train], y[train], args.task, args.epochs, seed=fold)
        with torch.no_grad():
            logits = model(x[held_out])
        oof[held_out] = (logits.softmax(-1) if args.task == "multiclass" else logits.sigmoid()).numpy()
        run_args = argparse.Namespace(model=ARCH, num_classes=10, img_size=size, input_size=None, fold=fold,
                                      epochs=args.epochs, smoothing=0.1 if args.task == "multiclass" else 0.0,
                                      **{k: list(v) if isinstance(v, tuple) else v for k, v in DATA.items()})
        folder = args.out / "runs" / f"fold{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        optimizer = torch.optim.AdamW(model.parameters())
        CheckpointSaver(model, optimizer, args=run_args, checkpoint_dir=str(folder), recovery_dir=str(folder),
                        max_history=1).save_checkpoint(epoch=args.epochs - 1, metric=0.0)
        (folder / "args.yaml").write_text(yaml.safe_dump(vars(run_args)))
        if args.task == "multiclass":
            score = f"accuracy {np.mean(oof[held_out].argmax(1) == y[held_out]):.3f}"
        else:
            score = f"exact match at 0.5 {np.mean(((oof[held_out] >= 0.5) == (y[held_out] > 0.5)).all(1)):.3f}"
        print(f"fold{fold}: {len(train)} train, {len(held_out)} held out, {score}", flush=True)
    columns = [str(d) for d in range(10)]
    pd.DataFrame(oof, columns=columns).assign(id=ids)[["id", *columns]].to_csv(args.out / "oof.csv", index=False)


if __name__ == "__main__":
    main()
