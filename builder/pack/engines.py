"""A checked fold -> its forward pass exported to ONNX and run by ONNX Runtime or OpenVINO, kept only where it
passes the equivalence gate against eager PyTorch on this machine.

The exported graph takes what the eager model takes (the normalised batch, and the metadata features where the
model takes them) and returns every head's logits side by side, with a dynamic batch. The gate runs both on the
same inputs (images of ``--gate-images``, through the runtime's own preprocessing, or generated ones) and compares
each head's probabilities: the largest difference must stay under the tolerance (1e-4 by default), and the
argmax must agree on every image whose two most probable classes are further apart than that (closer ones are
within the tolerance either way). ``auto`` times every engine on a batch of 32 and keeps the fastest that passes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from builder.errors import ConfigError
from builder.pack.folds import Fold
from submission.devices import CPU
from submission.ensemble import activate
from submission.inputs.images import decode, list_images
from submission.inputs.preprocess import Preprocessor, normalize
from submission.manifest import FileRef, Head, sha256_file
from submission.models import heads as head_split
from submission.models.engines import INPUTS, OUTPUT, open_engine
from submission.predict import available_cpus

GATE_IMAGES = 24  # images the gate compares on
TIMED_BATCH = 32  # images per batch when engines are timed
TIMED_RUNS = 3
ENGINE_MODULES = {"onnx": ("onnxruntime",), "openvino": ("openvino",), "auto": ("onnxruntime", "openvino")}


class Flat(torch.nn.Module):
    """The model with its heads side by side as one [batch, outputs] tensor: what an exported graph returns."""

    def __init__(self, fold: Fold):
        super().__init__()
        self.model, self.spec, self.heads = fold.model, fold.spec, fold.heads

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        out = self.model(x, meta) if meta is not None else self.model(x)
        return torch.cat(head_split.split(out, self.spec, self.heads, x.shape[0]), dim=1)


@dataclass
class Measured:
    engine: str
    images_per_second: float | None  # under auto; None when not timed
    max_difference: float | None  # the gate's largest probability difference (engines only)
    disagreements: int  # images whose argmax differs, beyond the tolerance
    passed: bool
    why: str = ""


@dataclass
class Chosen:
    fold: Fold  # its spec with the engine, the exported graph and the gate's figures
    table: list[Measured] = field(default_factory=list)  # every engine measured, for the report


def _gate_batch(fold: Fold, bundle: Path, images: Path | None, meta_width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The inputs the gate compares on: real images through the runtime's preprocessing, or generated ones."""
    pre = Preprocessor(fold.spec.preprocess, fold.name, bundle)
    if images is not None:
        decoded = [decode(p).image for p in list_images(images, recursive=True)[:GATE_IMAGES]]
        pictures = [d for d in decoded if d is not None]
        if not pictures:
            raise ConfigError(f"--gate-images {images} holds no image the runtime can decode")
    else:
        rng = np.random.default_rng(0)
        h, w = fold.spec.preprocess.size
        pictures = []
        for i in range(GATE_IMAGES):  # smooth shapes over noise, so that the models' answers vary
            base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            big = np.asarray(Image.fromarray(base).resize((w + 8 * i, h + 4 * i), Image.Resampling.BICUBIC))
            noise = rng.integers(-20, 21, big.shape)
            pictures.append(Image.fromarray(np.clip(big.astype(int) + noise, 0, 255).astype(np.uint8)))
    batch = torch.from_numpy(np.stack([pre(p) for p in pictures]))
    x = normalize(batch, fold.spec.preprocess) if pre.normalizes_on_device else batch.float()
    meta = torch.from_numpy(np.random.default_rng(1).normal(size=(len(x), meta_width)).astype(np.float32)) \
        if fold.spec.takes_metadata else None
    return x, meta


def export(fold: Fold, path: Path, meta_width: int) -> None:
    """The fold's forward pass as an ONNX graph with a dynamic batch."""
    flat = Flat(fold).eval()
    x = torch.rand(2, *fold.spec.preprocess.input_size)
    args = (x, torch.zeros(2, meta_width)) if fold.spec.takes_metadata else (x,)
    names = list(INPUTS[: len(args)])
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(flat, args, str(path), input_names=names, output_names=[OUTPUT], opset_version=17,
                              dynamic_axes={**{n: {0: "batch"} for n in names}, OUTPUT: {0: "batch"}}, dynamo=False)
        except Exception as e:  # noqa: BLE001 (the exporter raises many types)
            raise ConfigError(f"{fold.checkpoint}: the model cannot be exported to ONNX: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300]}; pack it with --engine torch") from None


def probabilities(logits: np.ndarray, heads: tuple[Head, ...], task: str) -> np.ndarray:
    """Each head's probabilities side by side (softmax per head, a sigmoid per output, or the raw value)."""
    parts = np.split(np.asarray(logits, dtype=np.float64), np.cumsum([h.size for h in heads])[:-1], axis=1)
    return np.concatenate([activate(p, task) for p in parts], axis=1)


def compare(reference: np.ndarray, got: np.ndarray, heads: tuple[Head, ...], tolerance: float) -> tuple[float, int]:
    """(the largest probability difference, the images whose argmax of a head differs beyond the tolerance)."""
    difference = float(np.abs(reference - got).max())
    bad = np.zeros(len(reference), dtype=bool)
    start = 0
    for h in heads:
        if h.size > 1:
            ref, out = reference[:, start:start + h.size], got[:, start:start + h.size]
            top = np.sort(ref, axis=1)
            clear = top[:, -1] - top[:, -2] > tolerance
            bad |= clear & (ref.argmax(1) != out.argmax(1))
        start += h.size
    return difference, int(bad.sum())


def _timed(run: Callable[[], object]) -> float:
    run()  # warm-up: allocations, kernel choice
    start = time.perf_counter()
    for _ in range(TIMED_RUNS):
        run()
    return TIMED_RUNS * TIMED_BATCH / (time.perf_counter() - start)


def choose(fold: Fold, setting: str, bundle: Path, file_name: str, *, task: str, tolerance: float,
           images: Path | None, meta_width: int) -> Chosen:
    """The fold on the engine ``setting`` names (exported and gated), or under ``auto`` on the fastest that passes."""
    if setting == "torch":
        return Chosen(fold)
    if fold.spec.takes_metadata and not meta_width:
        raise ConfigError(f"{fold.checkpoint}: an engine needs the metadata width at pack time; pass --metadata-width or "
                          "--train-metadata, or --engine torch")
    missing = [m for m in ("onnx", *ENGINE_MODULES[setting]) if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"--engine {setting} exports and gates the models here, but {', '.join(missing)} "
                          "is not installed on this machine: pip install 'submission-builder[engines]'")
    path = bundle / "engines" / file_name
    path.parent.mkdir(exist_ok=True)
    export(fold, path, meta_width)
    ref_model = Flat(fold).eval()
    x, meta = _gate_batch(fold, bundle, images, meta_width)
    with torch.inference_mode():
        reference = probabilities(ref_model(x, meta).numpy(), fold.heads, task)
    threads = available_cpus()
    candidates = ("onnx", "openvino") if setting == "auto" else (setting,)
    table: list[Measured] = []
    if setting == "auto":
        big = x.repeat((TIMED_BATCH + len(x) - 1) // len(x), 1, 1, 1)[:TIMED_BATCH].contiguous(
            memory_format=torch.channels_last)
        big_meta = None if meta is None else meta.repeat((TIMED_BATCH + len(meta) - 1) // len(meta), 1)[:TIMED_BATCH]
        eager = fold.model.to(memory_format=torch.channels_last)

        def run_eager() -> object:
            with torch.inference_mode():
                return eager(big, big_meta) if big_meta is not None else eager(big)

        table.append(Measured("torch", _timed(run_eager), None, 0, True))
    for name in candidates:
        engine = open_engine(name, path, CPU, threads)
        try:
            got = engine(x.numpy(), None if meta is None else meta.numpy())
        except Exception as e:  # noqa: BLE001 (each engine raises its own types)
            raise ConfigError(f"{fold.checkpoint}: the exported graph fails on the {name} engine with a batch of "
                              f"{len(x)}: {type(e).__name__}: {str(e).splitlines()[0][:300]}; pack it with --engine torch"
                              ) from None
        difference, disagree = compare(reference, probabilities(got, fold.heads, task), fold.heads, tolerance)
        passed = difference <= tolerance and not disagree
        why = "" if passed else (f"largest probability difference {difference:.2e} over the tolerance {tolerance:g}"
                                 if difference > tolerance else f"the argmax differs on {disagree} image(s)")
        speed = _timed(lambda e=engine: e(big.numpy(), None if big_meta is None else big_meta.numpy())) \
            if setting == "auto" else None
        table.append(Measured(name, speed, difference, disagree, passed, why))
    passing = [m for m in table if m.passed]
    best = max(passing, key=lambda m: m.images_per_second or 0.0) if setting == "auto" else (passing or [None])[0]
    if best is None:
        failed = table[0]
        raise ConfigError(f"{fold.checkpoint}: the {failed.engine} engine fails the equivalence gate against eager "
                          f"PyTorch on {len(x)} images: {failed.why}; pack it with --engine torch, or raise "
                          "--engine-tolerance knowingly")
    if best.engine == "torch":
        path.unlink()
        return Chosen(fold, table)
    gate = {"images": len(x), "source": str(images.name) if images else "generated", "tolerance": tolerance,
            "max_difference": best.max_difference, "argmax_disagreements": best.disagreements,
            "table": [m.__dict__ for m in table]}
    ref = FileRef(f"engines/{file_name}", sha256_file(path))
    return Chosen(replace(fold, spec=replace(fold.spec, engine=best.engine, exported=ref, gate=gate)), table)
