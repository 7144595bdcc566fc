"""Train 2 folds of one of the example's models on the CPU, and save them as a training script would:
DATA/runs/<model>/fold{k}.pth holding {"state_dict", "epoch"}.

    python train.py DATA --model cosine   # CosineNet on DATA/meta's digits, images only
    python train.py DATA --model masks    # MaskNet's three heads on DATA/masks
    python train.py DATA --model meta     # MetaNet on DATA/meta's digits and their writer column
    python train.py DATA --model image    # a plain timm test_resnet on DATA/meta, the image-only baseline

Images go through timm's eval transform at 32 px with mean and std 0.5 (pack.yaml says the same to the builder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from models import CosineNet, MaskNet, MetaNet
from PIL import Image
from sklearn.model_selection import StratifiedKFold
from timm.data import create_transform

TRANSFORM = create_transform(input_size=(3, 32, 32), is_training=False, mean=(0.5,) * 3, std=(0.5,) * 3,
                             interpolation="bilinear", crop_pct=1.0)


def load(folder: Path, id_column: str, label_column: str) -> tuple[list[str], torch.Tensor, np.ndarray]:
    table = pd.read_csv(folder.parent / "train_labels.csv", dtype={id_column: str})
    ids = table[id_column].tolist()
    x = torch.stack([TRANSFORM(Image.open(folder / f"{i}.png").convert("RGB")) for i in ids])
    return ids, x, table[label_column].to_numpy()


def writer_features(folder: Path, ids: list[str]) -> torch.Tensor:
    """The writer column one-hot over its sorted values: the encoding `metadata_columns` declares."""
    writers = pd.read_csv(folder / "train.csv", dtype=str).set_index("id").loc[ids, "writer"]
    names = sorted(writers.unique())
    return torch.tensor(np.array([[w == n for n in names] for w in writers], dtype=np.float32))


def make(kind: str) -> torch.nn.Module:
    if kind == "cosine":
        return CosineNet(pretrained=False)
    if kind == "masks":
        return MaskNet(pretrained=False)
    if kind == "meta":
        return MetaNet(pretrained=False)
    return timm.create_model("test_resnet", pretrained=False, num_classes=10)


def loss_of(kind: str, model: torch.nn.Module, x: torch.Tensor, meta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "masks":
        mask, gender, age = model(x)
        return F.cross_entropy(mask, y // 6) + F.cross_entropy(gender, y // 3 % 2) + F.cross_entropy(age, y % 3)
    logits = model(x, meta) if kind == "meta" else model(x)
    return F.cross_entropy(logits, y, label_smoothing=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", choices=("cosine", "masks", "meta", "image"), required=True)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    competition = args.data / ("masks" if args.model == "masks" else "meta")
    ids, x, y = load(competition / "train", *(("ImageID", "ans") if args.model == "masks" else ("id", "label")))
    meta = writer_features(competition / "train", ids) if args.model == "meta" else torch.zeros(len(ids), 0)
    target = torch.tensor(y)
    for fold, (train, held_out) in enumerate(StratifiedKFold(2, shuffle=True, random_state=0).split(x, y)):
        torch.manual_seed(fold)
        model = make(args.model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
        for _ in range(args.epochs):
            model.train()
            for batch in torch.from_numpy(train)[torch.randperm(len(train))].split(64):
                loss = loss_of(args.model, model, x[batch], meta[batch], target[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            held = torch.from_numpy(held_out)
            loss = loss_of(args.model, model, x[held], meta[held], target[held]).item()
        folder = args.data / "runs" / args.model
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "epoch": args.epochs}, folder / f"fold{fold}.pth")
        print(f"{args.model} fold{fold}: held-out loss {loss:.3f}")


if __name__ == "__main__":
    main()
