"""Make a tiny competition to pack: synthetic images of three colours, three folds trained for a few steps.

Writes, under OUT:
  runs/fold{0,1,2}/   what timm's train.py leaves: model_best.pth.tar (CheckpointSaver, with args) + args.yaml
  pack.yaml           the settings the checkpoints do not record (class names, TTA)
  test/*.png          the test images; test_labels.csv, their hidden labels
  sample_submission.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import yaml
from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.utils import CheckpointSaver

CLASSES = ["blue", "green", "red"]
ARCH, IMG_SIZE = "test_resnet", 32


def draw(rng: np.random.Generator, label: int) -> Image.Image:
    """Noise with one colour channel raised: the class is the dominant colour (channel order red, green, blue)."""
    h, w = rng.integers(36, 60, size=2)
    pixels = rng.integers(0, 140, size=(h, w, 3))
    pixels[..., 2 - label] += 110
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def train_fold(out: Path, fold: int, rng: np.random.Generator) -> None:
    torch.manual_seed(fold)
    model = timm.create_model(ARCH, pretrained=False, num_classes=len(CLASSES))
    transform = create_transform(**resolve_data_config({"img_size": IMG_SIZE}, model=model))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        labels = rng.integers(0, len(CLASSES), size=16)
        batch = torch.stack([transform(draw(rng, int(y))) for y in labels])
        loss = torch.nn.functional.cross_entropy(model(batch), torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    args = argparse.Namespace(model=ARCH, num_classes=len(CLASSES), img_size=IMG_SIZE, input_size=None,
                              crop_pct=None, mean=None, std=None, interpolation="", fold=fold)
    folder = out / "runs" / f"fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    CheckpointSaver(model, optimizer, args=args, checkpoint_dir=str(folder), recovery_dir=str(folder),
                    max_history=1).save_checkpoint(epoch=0, metric=float(loss))
    (folder / "args.yaml").write_text(yaml.safe_dump(vars(args)))
    print(f"fold{fold}: last batch loss {float(loss):.3f}")


def main(out: Path) -> None:
    rng = np.random.default_rng(0)
    (out / "test").mkdir(parents=True, exist_ok=True)
    ids, labels = [f"{i:03d}" for i in range(30)], rng.integers(0, len(CLASSES), size=30)
    for image_id, label in zip(ids, labels):
        draw(rng, int(label)).save(out / "test" / f"{image_id}.png")
    pd.DataFrame({"id": ids, "label": [CLASSES[y] for y in labels]}).to_csv(out / "test_labels.csv", index=False)
    pd.DataFrame({"id": ids, "label": CLASSES[0]}).to_csv(out / "sample_submission.csv", index=False)
    (out / "pack.yaml").write_text(yaml.safe_dump({"classes": CLASSES, "tta": "hflip"}))
    for fold in range(3):
        train_fold(out, fold, rng)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-competition"))
