"""Two small competitions made from scikit-learn's bundled digits for the custom-model example (no download).

    python make_data.py OUT

OUT/masks: 18 classes = mask 3 x gender 2 x age 3 (class = mask * 6 + gender * 3 + age), as in the mask
           competition: the mask is the ink's colour, the gender whether the digit is 5 or more, the age the
           digit modulo 3. Sample submission `ImageID,ans` with class indices.
OUT/meta:  the ten digits under heavy noise, with `train.csv`/`test.csv` beside the images: a `writer` column
           that names the true digit for 70% of the images and a random one otherwise, so the metadata carries
           real information. Sample submission `id,label`.
Each has train/*.png with train_labels.csv, test/*.png with the hidden test_labels.csv, and the sample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "digits"))
from make_competition import digit_images  # noqa: E402

INK = np.array([(255, 80, 80), (80, 255, 80), (80, 120, 255)], dtype=np.float32)  # the three "masks"
TEST_SHARE = 0.2


def split(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    cut = int(n * TEST_SHARE)
    return {"test": np.sort(order[:cut]), "train": np.sort(order[cut:])}


def masks(out: Path, images: np.ndarray, digits: np.ndarray, rng: np.random.Generator) -> None:
    mask = rng.integers(0, 3, len(digits))
    label = mask * 6 + (digits >= 5) * 3 + digits % 3
    for name, rows in split(len(digits), rng).items():
        (out / name).mkdir(parents=True)
        ids = [f"{name}_{i:04d}" for i in rows]
        for image_id, i in zip(ids, rows):
            rgb = images[i][..., None].astype(np.float32) / 255 * INK[mask[i]]
            Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(out / name / f"{image_id}.png")
        pd.DataFrame({"ImageID": ids, "ans": label[rows]}).to_csv(out / f"{name}_labels.csv", index=False)
        if name == "test":
            pd.DataFrame({"ImageID": ids, "ans": 0}).to_csv(out / "sample_submission.csv", index=False)


def meta(out: Path, images: np.ndarray, digits: np.ndarray, rng: np.random.Generator) -> None:
    honest = rng.random(len(digits)) < 0.7
    writer = np.where(honest, digits, rng.integers(0, 10, len(digits)))
    for name, rows in split(len(digits), rng).items():
        (out / name).mkdir(parents=True)
        ids = [f"{name}_{i:04d}" for i in rows]
        for image_id, i in zip(ids, rows):
            noisy = images[i].astype(np.float32) * 0.5 + rng.normal(64, 80, images[i].shape)
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "L").save(out / name / f"{image_id}.png")
        pd.DataFrame({"id": ids, "label": digits[rows]}).to_csv(out / f"{name}_labels.csv", index=False)
        folder = out / name
        pd.DataFrame({"id": ids, "writer": [f"w{w}" for w in writer[rows]]}).to_csv(folder / f"{name}.csv", index=False)
        if name == "test":
            pd.DataFrame({"id": ids, "label": 0}).to_csv(out / "sample_submission.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    images, digits = digit_images()
    masks(args.out / "masks", images, digits, np.random.default_rng(0))
    meta(args.out / "meta", images, digits, np.random.default_rng(1))
    print(f"wrote the masks and meta competitions to {args.out}")


if __name__ == "__main__":
    main()
