"""Make a small image-classification competition from scikit-learn's bundled handwritten digits (no download).

    python make_competition.py OUT --task multiclass    # one digit per 32x32 image
    python make_competition.py OUT --task multilabel    # 2 to 4 digits per 64x64 image (Dacon style)

Writes under OUT: train/*.png with train_labels.csv, test/*.png with the hidden test_labels.csv, and the
sample submissions a platform would publish:
  multiclass  sample_submission.csv        id,label        (digit indices 0-9)
              sample_submission_names.csv  ImageID,digit   (class names: zero, one, ...)
  multilabel  sample_submission.csv        index,0,1,...,9 (one 0/1 column per digit)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEST_SHARE = 0.2
CELL = 32  # pixels per digit


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as 32x32 uint8 greyscale images (white ink on black), and their labels."""
    digits = load_digits()
    images = [np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((CELL, CELL), Image.BILINEAR))
              for d in digits.images]
    return np.stack(images), digits.target


def write_split(folder: Path, images: list[np.ndarray], ids: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for image_id, pixels in zip(ids, images):
        Image.fromarray(pixels, "L").save(folder / f"{image_id}.png")


def multiclass(out: Path, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    order = rng.permutation(len(images))
    n_test = int(len(images) * TEST_SHARE)
    for split, index in (("test", order[:n_test]), ("train", order[n_test:])):
        ids = [f"{split}_{i:04d}" for i in range(len(index))]
        write_split(out / split, [images[i] for i in index], ids)
        pd.DataFrame({"id": ids, "label": labels[index]}).to_csv(out / f"{split}_labels.csv", index=False)
        if split == "test":
            pd.DataFrame({"id": ids, "label": 0}).to_csv(out / "sample_submission.csv", index=False)
            pd.DataFrame({"ImageID": ids, "digit": NAMES[0]}).to_csv(out / "sample_submission_names.csv", index=False)
            pd.DataFrame({"ImageID": ids, "digit": [NAMES[y] for y in labels[index]]}).to_csv(
                out / "test_labels_names.csv", index=False)


def compose(images: np.ndarray, labels: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator):
    """n images of 2x2 cells, 2 to 4 of them holding a digit drawn from ``pool``; labels: the digits present."""
    canvases, targets = [], []
    for _ in range(n):
        canvas, present = np.zeros((2 * CELL, 2 * CELL), dtype=np.uint8), np.zeros(10, dtype=int)
        for cell in rng.choice(4, size=rng.integers(2, 5), replace=False):
            j = rng.choice(pool)
            row, col = divmod(int(cell), 2)
            canvas[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = images[j]
            present[labels[j]] = 1
        canvases.append(canvas)
        targets.append(present)
    return canvases, np.stack(targets)


def multilabel(out: Path, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    order = rng.permutation(len(images))
    n_test = int(len(images) * TEST_SHARE)
    for split, pool, n in (("test", order[:n_test], 500), ("train", order[n_test:], 3000)):
        canvases, targets = compose(images, labels, pool, n, rng)
        ids = [f"{i:05d}" for i in range(n)] if split == "test" else [f"train_{i:05d}" for i in range(n)]
        write_split(out / split, canvases, ids)
        table = pd.DataFrame(targets, columns=[str(d) for d in range(10)])
        table.insert(0, "index", ids)
        table.to_csv(out / f"{split}_labels.csv", index=False)
        if split == "test":
            table.assign(**{str(d): 0 for d in range(10)}).to_csv(out / "sample_submission.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", choices=("multiclass", "multilabel"), required=True)
    args = parser.parse_args()
    images, labels = digit_images()
    rng = np.random.default_rng(0)
    (multiclass if args.task == "multiclass" else multilabel)(args.out, images, labels, rng)
    print(f"wrote the {args.task} competition to {args.out}")


if __name__ == "__main__":
    main()
