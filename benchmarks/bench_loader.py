"""The runtime's loader (``submission.inputs.loader.Loader``: forked processes, numpy batches, no torch) against
torch's ``DataLoader`` over the same decoded images, in one run.

Both decode and resize the same JPEGs through the runtime's ``DecodedImages`` and its ``collate``, with the same
workers, batches and prefetch; what differs is how the batches come back to the main process (a pipe of pickled
numpy arrays, against torch's worker loop). Prints the images per second of each, best of ``--repeat`` runs taken
in turns, and the ratio, and checks that both gave the same batches.

    python benchmarks/bench_loader.py --images 240 --size 1024 --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_inference import make_folder  # noqa: E402
from submission.inputs.images import list_images  # noqa: E402
from submission.inputs.loader import DecodedImages, Loader, batch_rows, collate  # noqa: E402
from submission.inputs.preprocess import Preprocessor  # noqa: E402
from submission.manifest import Preprocess  # noqa: E402


def torch_loader(images: DecodedImages, schedule: list[list[int]], workers: int):
    from torch.utils.data import DataLoader

    return DataLoader(images, batch_sampler=schedule, collate_fn=collate, num_workers=workers,
                      prefetch_factor=4 if workers else None)


def timed(make) -> tuple[float, list]:
    start = time.perf_counter()
    batches = list(make())
    return time.perf_counter() - start, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--size", type=int, default=1024, help="side of the JPEGs")
    parser.add_argument("--img-size", type=int, default=128, help="the model input they are resized to")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("loader.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        folder = Path(tmp) / "test"
        make_folder(folder, args.images, args.size)
        pre = Preprocess((3, args.img_size, args.img_size), "center", 0.875, "bicubic", (0.485, 0.456, 0.406),
                         (0.229, 0.224, 0.225))
        images = DecodedImages(list_images(folder), [Preprocessor(pre, "bench")])
        schedule = batch_rows(len(images), args.batch_size)
        ours_s = torch_s = float("inf")
        for _ in range(args.repeat):  # in turns, so that what else the machine does falls on both alike
            seconds, ours = timed(lambda: Loader(images, schedule, args.workers))
            ours_s = min(ours_s, seconds)
            seconds, theirs = timed(lambda: torch_loader(images, schedule, args.workers))
            torch_s = min(torch_s, seconds)
    same = all(np.array_equal(a.pixels[0], b.pixels[0]) for a, b in zip(ours, theirs)) and len(ours) == len(theirs)
    figures = {"images": args.images, "size": args.size, "img_size": args.img_size, "batch_size": args.batch_size,
               "workers": args.workers, "loader_images_per_second": args.images / ours_s,
               "dataloader_images_per_second": args.images / torch_s, "loader_over_dataloader": torch_s / ours_s,
               "same_batches": same}
    print(f"{args.images} JPEGs of {args.size} px to {args.img_size} px, {args.workers} workers, batch "
          f"{args.batch_size}: the runtime's loader {figures['loader_images_per_second']:.1f} img/s, torch's "
          f"DataLoader {figures['dataloader_images_per_second']:.1f} img/s, ratio "
          f"{figures['loader_over_dataloader']:.3f}; same batches: {same}")
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
