"""Benchmark the runtime against the limit it can approach and against the loop most notebooks use.

For each regime, on one machine in one run:
  naive    for each fold, for each TTA view, a DataLoader over the folder that decodes and resizes every
           image again (timm's eval transform), softmax, average;
  runtime  ``submission.runner.run``: the code path of ``python -m submission``, on a bundle made by
           ``builder pack``'s own bundle writer;
  compute  the runtime's forward passes (same models, views, batch size, dtype) on images decoded and
           resized beforehand, in memory; also without channels_last, to show what it gains;
  fast     the runtime with ``decode: fast`` (large JPEGs decoded at reduced scale): its speed, and how far
           its probabilities are from the exact decode's (argmax agreement, largest difference).
The runtime and compute-only take the best of ``--repeat`` runs; the naive loop runs once.
Regimes: ``compute`` (5 folds of resnet18 at 224, hflip, from 256-pixel JPEGs), ``decode`` (5 folds of a
tiny model at 128 from 1024-pixel JPEGs), ``digits`` (the digits example trained for real, its test images
saved as 256-pixel JPEGs: fast decode against exact, and the accuracy of each), ``memory`` (peak RSS of
``python -m submission`` on 1,000 and 10,000 images), and ``devices`` (``python -m submission`` with one and
two worker processes on the CPU, and with every GPU when there is one: images/s and the peak RSS of each
process), and ``engines`` (eager PyTorch, ONNX Runtime and OpenVINO, each packed with ``--engine`` and gated, in the
compute and decode regimes and on the trained digits example: throughput, runtime/compute-only, accuracy, and the
probabilities' distance from eager's), and ``watchdog`` (its decision after a batch against a batch's time, and the
runtime with a deadline it never needs against the runtime without). Prints images/s, the ratios and peak RSS, and
writes them as JSON. ``--device cuda`` runs the runtime and compute-only on the GPU (autocast, channels_last; ONNX
Runtime's CUDA provider where onnxruntime-gpu is installed); the naive loop stays on the CPU.

    python benchmarks/bench_inference.py                      # every regime
    python benchmarks/bench_inference.py --regime decode --images 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.pack.bundle import PackRequest, make_bundle  # noqa: E402
from submission import predict as engine  # noqa: E402
from submission.inputs.images import list_images  # noqa: E402
from submission.inputs.loader import DecodedImages, collate  # noqa: E402
from submission.manifest import TTA_PRESETS, Manifest, load_manifest  # noqa: E402
from submission.runner import Options, run  # noqa: E402
from submission.tta import view  # noqa: E402
from submission.watchdog import Watchdog  # noqa: E402

REGIMES = {
    "compute": dict(arch="resnet18", img_size=224, source_size=256, images=64, tta="hflip"),
    "decode": dict(arch="test_efficientnet", img_size=128, source_size=1024, images=240, tta="hflip"),
}


def make_folder(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """JPEGs that look like photos to a decoder: smooth colour fields with fine noise, quality 90."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BILINEAR)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def make_bundle_for(root: Path, arch: str, img_size: int, folds: int, tta: str, num_classes: int = 10,
                    decode: str = "exact", engine: str = "torch") -> Path:
    """``folds`` randomly initialised models saved as bare state_dicts, packed by the builder's bundle writer."""
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for k in range(folds):
        if not (runs / f"fold{k}.pth").exists():
            torch.manual_seed(k)
            model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
            torch.save(model.state_dict(), runs / f"fold{k}.pth")
    options = dict(arch=arch, img_size=str(img_size), tta=tta, format="probs", decode=decode, engine=engine)
    suffix = decode if engine == "torch" else f"{decode}-{engine}"
    return make_bundle(PackRequest(models=runs, options=options), root / f"bundle-{suffix}").path


def agreement(fast: np.ndarray, exact: np.ndarray) -> dict:
    """How far the fast decode's probabilities are from the exact decode's."""
    return {"argmax_agreement": float((fast.argmax(1) == exact.argmax(1)).mean()),
            "max_abs_prob_diff": float(np.abs(fast - exact).max()),
            "mean_abs_prob_diff": float(np.abs(fast - exact).mean())}


class FolderImages(Dataset):
    """The notebook dataset: open, convert, transform, every time it is asked."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB"))


def naive(manifest: Manifest, bundle: Path, paths: list[Path], batch_size: int, workers: int) -> tuple[float, np.ndarray]:
    models = []
    for spec in manifest.models:
        model = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
        model.load_state_dict(load_file(str(bundle / spec.weights.path)))
        models.append((spec, model.eval()))
    views = TTA_PRESETS[manifest.tta]
    total = np.zeros((len(paths), len(manifest.classes)))
    start = time.perf_counter()
    with torch.inference_mode():
        for spec, model in models:
            p = spec.preprocess
            transform = create_transform(input_size=p.input_size, is_training=False, interpolation=p.interpolation,
                                         mean=p.mean, std=p.std, crop_pct=p.crop_pct, crop_mode=p.crop_mode)
            for name in views:
                loader = DataLoader(FolderImages(paths, transform), batch_size=batch_size, num_workers=workers)
                row = 0
                for x in loader:
                    probs = model(view(x, name)).softmax(-1).double().numpy()
                    total[row : row + len(x)] += probs / (len(views) * len(models))
                    row += len(x)
    return time.perf_counter() - start, total


def decoded_batches(manifest: Manifest, groups: list, paths: list[Path], batch_size: int):
    """The runtime's batches of ``paths``, decoded in this process (no loader workers) as the manifest says."""
    dataset = DecodedImages(paths, [g.preprocessor for g in groups], decode_mode=manifest.decode)
    for start in range(0, len(paths), batch_size):
        yield collate([dataset[i] for i in range(start, min(start + batch_size, len(paths)))])


def compute_only(manifest: Manifest, bundle: Path, paths: list[Path], batch_size: int, repeat: int,
                 device: torch.device, channels_last: bool = True) -> float:
    """Best time of the runtime's forward passes over images decoded and resized beforehand."""
    groups = engine.load_groups(manifest, bundle, device, channels_last)
    batches = list(decoded_batches(manifest, groups, paths, batch_size))
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        engine.predict(manifest, groups, batches, len(paths), device=device, channels_last=channels_last)
        times.append(time.perf_counter() - start)
    return min(times)


def timed_run(folder: Path, bundle: Path, out: Path, options: Options, repeat: int) -> tuple[float, np.ndarray]:
    """Best prediction time of the runtime over ``repeat`` runs, and the probabilities of its CSV."""
    seconds = min(run(folder, bundle, out, options).seconds for _ in range(repeat))
    return seconds, np.loadtxt(out, delimiter=",", skiprows=1, usecols=range(1, 11), ndmin=2)


def speed_regime(name: str, root: Path, images: int, folds: int, batch_size: int, workers: int, repeat: int,
                 device: str) -> dict:
    cfg = REGIMES[name]
    folder = root / "test"
    make_folder(folder, images, cfg["source_size"])
    bundle = make_bundle_for(root, cfg["arch"], cfg["img_size"], folds, cfg["tta"])
    fast_bundle = make_bundle_for(root, cfg["arch"], cfg["img_size"], folds, cfg["tta"], decode="fast")
    manifest = load_manifest(bundle)
    paths = list_images(folder)

    options = Options(batch_size=batch_size, workers=workers, devices=device, quiet=True)
    runtime_s, runtime_probs = timed_run(folder, bundle, root / "runtime.csv", options, repeat)
    fast_s, fast_probs = timed_run(folder, fast_bundle, root / "fast.csv", options, repeat)
    compute_s = compute_only(manifest, bundle, paths, batch_size, repeat, torch.device(device))
    contiguous_s = compute_only(manifest, bundle, paths, batch_size, repeat, torch.device(device), channels_last=False)
    naive_s, naive_probs = naive(manifest, bundle, paths, batch_size, workers)
    figures = {
        "regime": name, "arch": cfg["arch"], "img_size": cfg["img_size"], "source_size": cfg["source_size"],
        "folds": folds, "tta": cfg["tta"], "images": images, "batch_size": batch_size, "workers": workers,
        "device": device, "threads": torch.get_num_threads(), "repeat": repeat,
        "runtime_images_per_s": images / runtime_s,
        "runtime_fast_decode_images_per_s": images / fast_s,
        "compute_only_images_per_s": images / compute_s,
        "compute_only_contiguous_images_per_s": images / contiguous_s,
        "channels_last_gain": contiguous_s / compute_s,
        "naive_images_per_s": images / naive_s,
        "max_abs_diff_runtime_vs_naive": float(np.abs(runtime_probs - naive_probs).max()),
        "fast_decode": agreement(fast_probs, runtime_probs),
    }
    figures["runtime_over_compute_only"] = figures["runtime_images_per_s"] / figures["compute_only_images_per_s"]
    figures["fast_decode_over_compute_only"] = (figures["runtime_fast_decode_images_per_s"]
                                                / figures["compute_only_images_per_s"])
    figures["fast_decode_speedup"] = runtime_s / fast_s
    figures["runtime_over_naive"] = figures["runtime_images_per_s"] / figures["naive_images_per_s"]
    return figures


def digits_regime(root: Path, batch_size: int, device: str, source_size: int = 256) -> dict:
    """The digits example trained for real (3 folds), its test images saved as ``source_size`` JPEGs: the fast
    decode against the exact one, and the accuracy of each on the hidden labels."""
    example = Path(__file__).resolve().parents[1] / "examples" / "digits"
    comp = root / "digits"
    for script, extra in (("make_competition.py", []), ("train.py", ["--epochs", "5"])):
        subprocess.run([sys.executable, str(example / script), str(comp), "--task", "multiclass", *extra], check=True,
                       stdout=subprocess.DEVNULL)
    folder = root / "test-jpeg"
    folder.mkdir()
    for path in list_images(comp / "test"):
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((source_size, source_size), Image.BICUBIC)
            resized.save(folder / f"{path.stem}.jpg", quality=90)
    paths = list_images(folder)
    truth = pd.read_csv(comp / "test_labels.csv", dtype={"id": str}).set_index("id")["label"]
    labels = truth.loc[[p.stem for p in paths]].to_numpy()
    runs, probs = {}, {}
    for decode in ("exact", "fast"):
        bundle = make_bundle(PackRequest(models=comp / "runs", options={"decode": decode}), root / f"bundle-{decode}").path
        start = time.perf_counter()
        probs[decode] = engine_probabilities(load_manifest(bundle), bundle, paths, batch_size, torch.device(device))
        runs[decode] = {"images_per_s": len(paths) / (time.perf_counter() - start),
                        "accuracy": float((probs[decode].argmax(1) == labels).mean())}
    return {"regime": "digits", "source_size": source_size, "images": len(paths), "device": device, "runs": runs,
            "fast_decode": agreement(probs["fast"], probs["exact"])}


def engine_probabilities(manifest: Manifest, bundle: Path, paths: list[Path], batch_size: int,
                         device: torch.device) -> np.ndarray:
    """The ensemble's [N, C] probabilities, decoded in this process as the manifest's decode mode says."""
    groups = engine.load_groups(manifest, bundle, device)
    values, _ = engine.predict(manifest, groups, decoded_batches(manifest, groups, paths, batch_size), len(paths),
                               device=device)
    return values


ENGINES = ("torch", "onnx", "openvino")


def engines_regime(root: Path, images: int | None, folds: int, batch_size: int, workers: int, repeat: int,
                   device: str) -> dict:
    """Each engine (eager PyTorch, ONNX Runtime, OpenVINO) in the compute-bound and decode-bound regimes and on the
    trained digits example: the runtime's and compute-only throughput, and the probabilities against eager's."""
    figures: dict = {"regime": "engines", "device": device, "folds": folds, "batch_size": batch_size,
                     "workers": workers, "repeat": repeat, "threads": torch.get_num_threads(), "runs": {}}
    options = Options(batch_size=batch_size, workers=workers, devices=device, quiet=True)
    for name in ("compute", "decode"):
        cfg = REGIMES[name]
        part = root / name
        folder = part / "test"
        make_folder(folder, images or cfg["images"], cfg["source_size"])
        paths = list_images(folder)
        runs, probs = {}, {}
        for e in ENGINES:
            bundle = make_bundle_for(part, cfg["arch"], cfg["img_size"], folds, cfg["tta"], engine=e)
            seconds, probs[e] = timed_run(folder, bundle, part / f"{e}.csv", options, repeat)
            compute_s = compute_only(load_manifest(bundle), bundle, paths, batch_size, repeat, torch.device(device))
            runs[e] = {"runtime_images_per_s": len(paths) / seconds, "compute_only_images_per_s": len(paths) / compute_s,
                       "runtime_over_compute_only": compute_s / seconds, **agreement(probs[e], probs["torch"])}
        figures["runs"][name] = {"arch": cfg["arch"], "img_size": cfg["img_size"], "images": len(paths), **runs}
    example = Path(__file__).resolve().parents[1] / "examples" / "digits"
    comp = root / "digits"
    for script, extra in (("make_competition.py", []), ("train.py", ["--epochs", "5"])):
        subprocess.run([sys.executable, str(example / script), str(comp), "--task", "multiclass", *extra], check=True,
                       stdout=subprocess.DEVNULL)
    paths = list_images(comp / "test")
    truth = pd.read_csv(comp / "test_labels.csv", dtype={"id": str}).set_index("id")["label"]
    labels = truth.loc[[p.stem for p in paths]].to_numpy()
    runs, probs = {}, {}
    for e in ENGINES:
        request = PackRequest(models=comp / "runs", options={"engine": e, "format": "probs"})
        bundle = make_bundle(request, comp / f"bundle-{e}").path
        seconds, probs[e] = timed_run(comp / "test", bundle, comp / f"{e}.csv", options, repeat)
        runs[e] = {"runtime_images_per_s": len(paths) / seconds, "accuracy": float((probs[e].argmax(1) == labels).mean()),
                   **agreement(probs[e], probs["torch"])}
    figures["runs"]["digits"] = {"images": len(paths), **runs}
    for runs in figures["runs"].values():
        for e in ENGINES[1:]:
            runs[e]["runtime_over_eager"] = runs[e]["runtime_images_per_s"] / runs["torch"]["runtime_images_per_s"]
    return figures


def watchdog_regime(root: Path, images: int | None, folds: int, batch_size: int, workers: int, repeat: int,
                    device: str) -> dict:
    """The watchdog's cost: its decision after a batch, timed alone, against a batch's time in the decode regime;
    and the runtime with a deadline it never needs against the runtime without one."""
    cfg = REGIMES["decode"]
    folder = root / "test"
    make_folder(folder, images or cfg["images"], cfg["source_size"])
    bundle = make_bundle_for(root, cfg["arch"], cfg["img_size"], folds, cfg["tta"])
    manifest = load_manifest(bundle)
    options = Options(batch_size=batch_size, workers=workers, devices=device, quiet=True)
    runs: dict[str, list[float]] = {"plain": [], "watched": []}
    for _ in range(repeat):  # alternated, so that a change in the machine's load falls on both
        plain_s, plain = timed_run(folder, bundle, root / "plain.csv", options, 1)
        watched_s, watched = timed_run(folder, bundle, root / "watched.csv", replace(options, deadline=3600.0), 1)
        runs["plain"].append(plain_s)
        runs["watched"].append(watched_s)
    plain_s, watched_s = min(runs["plain"]), min(runs["watched"])
    batches = -(-len(list_images(folder)) // batch_size)
    watch = Watchdog(manifest, TTA_PRESETS[manifest.tta], time.time() + 3600.0)
    calls = 10000
    start = time.perf_counter()
    for i in range(calls):
        watch.after_batch(calls - i, batch_size * (calls - i), lambda message: None)
    decision_s = (time.perf_counter() - start) / calls
    batch_s = plain_s / batches
    return {"regime": "watchdog", "arch": cfg["arch"], "folds": folds, "images": len(plain), "batch_size": batch_size,
            "batch_seconds": batch_s, "decision_seconds": decision_s, "decision_over_batch": decision_s / batch_s,
            "runtime_images_per_s": len(plain) / plain_s, "with_deadline_images_per_s": len(plain) / watched_s,
            "with_deadline_over_without": plain_s / watched_s, "same_csv": bool(np.array_equal(plain, watched))}


def tree_rss(pid: int) -> dict[int, int]:
    """Resident bytes of a process and of each of its descendants (device workers, loader workers), by pid."""
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[p] = int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def peak_rss_of(command: list[str]) -> tuple[int, float, dict[int, int], str]:
    """(peak RSS of the whole process tree, seconds, peak RSS of each process by pid, stdout) of ``command``."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, each = 0, {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            now = tree_rss(proc.pid)
            peak = max(peak, sum(now.values()))
            for p, rss in now.items():
                each[p] = max(each.get(p, 0), rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    start = time.perf_counter()
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err}")
    return peak, time.perf_counter() - start, each, out


def memory_regime(root: Path, small: int, large: int, workers: int) -> dict:
    folder_large, folder_small = root / "large", root / "small"
    make_folder(folder_large, large, 64)
    folder_small.mkdir()
    for path in sorted(folder_large.iterdir())[:small]:
        os.link(path, folder_small / path.name)
    bundle = make_bundle_for(root, "test_resnet", 64, folds=2, tta="none")
    peaks = {}
    for label, folder in (("small", folder_small), ("large", folder_large)):
        command = [sys.executable, "-m", "submission", str(folder), "--bundle", str(bundle),
                   "--out", str(root / f"{label}.csv"), "--quiet", "--workers", str(workers)]
        peaks[label] = peak_rss_of(command)[:2]
    return {
        "regime": "memory", "arch": "test_resnet", "img_size": 64, "folds": 2, "workers": workers,
        "images_small": small, "images_large": large,
        "peak_rss_mb_small": peaks["small"][0] / 2**20, "peak_rss_mb_large": peaks["large"][0] / 2**20,
        "large_over_small": peaks["large"][0] / peaks["small"][0],
        "seconds_small": peaks["small"][1], "seconds_large": peaks["large"][1],
    }


def devices_regime(root: Path, images: int, folds: int, batch_size: int, workers: int) -> dict:
    """``python -m submission`` with one and two CPU worker processes (and every GPU, when there is one)."""
    folder = root / "test"
    make_folder(folder, images, 256)
    bundle = make_bundle_for(root, "test_efficientnet", 128, folds, "hflip")
    gpus = ["0", "all"] if torch.cuda.device_count() > 1 else ["0"] if torch.cuda.is_available() else []
    specs = ["cpu", "cpu,cpu"] + gpus
    figures: dict = {"regime": "devices", "arch": "test_efficientnet", "img_size": 128, "folds": folds, "tta": "hflip",
                     "images": images, "batch_size": batch_size, "workers": workers, "runs": {}}
    for spec in specs:
        command = [sys.executable, "-m", "submission", str(folder), "--bundle", str(bundle), "--out",
                   str(root / "devices.csv"), "--quiet", "--workers", str(workers), "--batch-size", str(batch_size),
                   "--devices", spec]
        peak, seconds, each, out = peak_rss_of(command)
        predicted = float(out.split(" in ")[-1].rstrip("s\n"))
        big = sorted(each.values(), reverse=True)[: spec.count(",") + 1 + (spec.count(",") > 0)]
        figures["runs"][spec] = {"images_per_s": images / predicted, "wall_seconds": seconds,
                                 "peak_rss_mb_total": peak / 2**20,
                                 "peak_rss_mb_per_process": [round(b / 2**20) for b in big]}
    one, two = figures["runs"]["cpu"], figures["runs"]["cpu,cpu"]
    figures["two_over_one_cpu_process"] = two["images_per_s"] / one["images_per_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", choices=("compute", "decode", "digits", "memory", "devices", "engines", "watchdog",
                                             "all"),
                        default="all")
    parser.add_argument("--images", type=int, default=None, help="images per speed regime (default: per regime)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the runtime's)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the runtime and compute-only; the best counts")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the runtime and compute-only run")
    parser.add_argument("--out", type=Path, default=Path("benchmark_results.json"))
    args = parser.parse_args()
    workers = engine.available_cpus() if args.workers is None else args.workers
    results = []
    regimes = ["compute", "decode", "digits", "memory", "devices", "engines", "watchdog"] if args.regime == "all" \
        else [args.regime]
    for name in regimes:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            if name == "memory":
                figures = memory_regime(Path(tmp), 1000, 10000, workers)
                print(f"memory: peak RSS {figures['peak_rss_mb_small']:.0f} MB at {figures['images_small']} images, "
                      f"{figures['peak_rss_mb_large']:.0f} MB at {figures['images_large']}: "
                      f"ratio {figures['large_over_small']:.3f}", flush=True)
            elif name == "devices":
                figures = devices_regime(Path(tmp), args.images or 200, min(args.folds, 3), args.batch_size, workers)
                for spec, r in figures["runs"].items():
                    print(f"devices {spec}: {r['images_per_s']:.1f} img/s, peak RSS {r['peak_rss_mb_total']:.0f} MB in "
                          f"all, largest processes {r['peak_rss_mb_per_process']} MB", flush=True)
                print(f"  two CPU processes / one: {figures['two_over_one_cpu_process']:.2f}", flush=True)
            elif name == "engines":
                figures = engines_regime(Path(tmp), args.images, args.folds, args.batch_size, workers, args.repeat,
                                         args.device)
                for part, runs in figures["runs"].items():
                    print(f"engines, {part}:", flush=True)
                    for e in ENGINES:
                        r = runs[e]
                        line = f"  {e:9s} runtime {r['runtime_images_per_s']:8.2f} img/s"
                        if "compute_only_images_per_s" in r:
                            line += (f", compute-only {r['compute_only_images_per_s']:8.2f} img/s, "
                                     f"runtime/compute-only {r['runtime_over_compute_only']:.3f}")
                        if "accuracy" in r:
                            line += f", accuracy {r['accuracy']:.4f}"
                        if e != "torch":
                            speedup = r["runtime_images_per_s"] / runs["torch"]["runtime_images_per_s"]
                            line += (f"; {speedup:.2f}x eager, argmax agreement {r['argmax_agreement']:.4f}, "
                                     f"max |p diff| {r['max_abs_prob_diff']:.2e}")
                        print(line, flush=True)
            elif name == "watchdog":
                figures = watchdog_regime(Path(tmp), args.images, args.folds, args.batch_size, workers, args.repeat,
                                          args.device)
                print(f"watchdog: a decision takes {figures['decision_seconds'] * 1e6:.1f} us, "
                      f"{figures['decision_over_batch']:.2e} of a batch ({figures['batch_seconds']:.3f} s); the runtime "
                      f"with a deadline it never needs runs at {figures['with_deadline_over_without']:.3f} of its speed "
                      f"without one, same CSV: {figures['same_csv']}", flush=True)
            elif name == "digits":
                figures = digits_regime(Path(tmp), args.batch_size, args.device)
                exact, fast, agree = figures["runs"]["exact"], figures["runs"]["fast"], figures["fast_decode"]
                print(f"digits (trained, {figures['images']} test JPEGs of {figures['source_size']} px): accuracy exact "
                      f"{exact['accuracy']:.4f}, fast {fast['accuracy']:.4f}; fast decode vs exact: argmax agreement "
                      f"{agree['argmax_agreement']:.4f}, max |p diff| {agree['max_abs_prob_diff']:.2e}", flush=True)
            else:
                images = args.images or REGIMES[name]["images"]
                figures = speed_regime(name, Path(tmp), images, args.folds, args.batch_size, workers, args.repeat,
                                       args.device)
                agree = figures["fast_decode"]
                print(f"{name}: {figures['folds']} x {figures['arch']} at {figures['img_size']}, TTA {figures['tta']}, "
                      f"{images} JPEGs of {figures['source_size']} px, batch {args.batch_size}, {workers} workers, "
                      f"{figures['threads']} threads\n"
                      f"  naive {figures['naive_images_per_s']:.2f} img/s, "
                      f"runtime {figures['runtime_images_per_s']:.2f} img/s, "
                      f"compute-only {figures['compute_only_images_per_s']:.2f} img/s\n"
                      f"  runtime/compute-only {figures['runtime_over_compute_only']:.3f}, "
                      f"channels_last gain {figures['channels_last_gain']:.2f}, "
                      f"runtime/naive {figures['runtime_over_naive']:.2f}, "
                      f"max |runtime - naive| {figures['max_abs_diff_runtime_vs_naive']:.2e}\n"
                      f"  fast decode {figures['runtime_fast_decode_images_per_s']:.2f} img/s: "
                      f"{figures['fast_decode_speedup']:.2f}x the exact decode, "
                      f"fast/compute-only {figures['fast_decode_over_compute_only']:.3f}; vs exact: argmax agreement "
                      f"{agree['argmax_agreement']:.4f}, max |p diff| {agree['max_abs_prob_diff']:.2e}", flush=True)
            results.append(figures)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
