"""The prediction loop: decode each image once, run every model and TTA view on the same batch, merge.

Models that share a preprocessing (input size, crop, normalisation) form a group; each image is decoded once
in a loader worker and resized once per group. On the device each group's batch is normalised, expanded to
its TTA views and fed to every model of the group in one forward pass per model (with the images' metadata
features, repeated for every view, where a model takes them). Per batch, each head's logits of all models and
views are merged into probabilities, and the heads combined into classes, so memory does not grow with the test
set beyond the [N, C] result.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from submission import errors
from submission import models as model_io
from submission.ensemble import combine, merge, view_means
from submission.errors import BundleError, DeviceError, SubmissionError
from submission.inputs.images import decode
from submission.inputs.preprocess import Preprocessor, fast_decode_keep, normalize
from submission.manifest import Manifest, weights_root
from submission.tta import stack_views, views_of
from submission.watchdog import Plan, full_plan


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup quota (``docker run --cpus``)."""
    cpus = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):  # cgroup v2
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    with contextlib.suppress(OSError, ValueError):  # cgroup v1
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0:
            cpus = min(cpus, max(1, quota // period))
    return cpus


@dataclass
class Group:
    """Models that take the same input, with the transform that makes it."""

    preprocessor: Preprocessor
    members: list[tuple[int, torch.nn.Module]]  # (position in manifest.models, model)


class DecodedImages(Dataset):
    """Item i: (one tensor per group made from the i-th image, decoded once; "" or why it could not be decoded;
    None or the error that stops the run, as (class name, message); the image libraries' warnings on the file).

    An image that cannot be decoded is replaced by a blank (black) image of each model's input size, so that
    its row is still written, unless ``strict``, where it is an error. Errors travel as data, so that a loader
    worker's error reaches the user as the same one line as in the main process: an undecodable image under
    ``strict``, and any runtime error of the preprocessing (a user's function that fails, a transform of the wrong
    size), named with the file and the image id. With ``decode_mode`` "fast", large JPEGs are decoded at reduced
    scale (see ``decode_rgb``).
    """

    def __init__(self, paths: Sequence[Path], preprocessors: Sequence[Preprocessor], strict: bool = False,
                 decode_mode: str = "exact", ids: Sequence[str] | None = None):
        self.paths = list(paths)
        self.ids = list(ids) if ids is not None else None
        self.preprocessors = list(preprocessors)
        self.strict = strict
        self.keep = fast_decode_keep([p.pre for p in self.preprocessors]) if decode_mode == "fast" else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, ...], str, tuple[str, str] | None, tuple]:
        decoded = decode(self.paths[i], self.keep)
        try:
            if decoded.image is None:
                blanks = tuple(p.blank() for p in self.preprocessors)
                fatal = ("InputError", f"{decoded.error} (--strict: no blank-image fallback)") if self.strict else None
                return blanks, decoded.error, fatal, decoded.warnings
            return tuple(p(decoded.image) for p in self.preprocessors), "", None, decoded.warnings
        except SubmissionError as e:
            message = f"{self.paths[i]} (id {self.ids[i]!r}): {e}" if self.ids else f"{self.paths[i]}: {e}"
            blanks = tuple(torch.zeros(p.pre.input_size, dtype=torch.uint8) for p in self.preprocessors)
            return blanks, "", (type(e).__name__, message), decoded.warnings


@dataclass
class Batch:
    pixels: list[torch.Tensor]  # one [B, C, H, W] tensor per group
    problems: list[str]  # per image: "" or why it was predicted from a blank image
    warnings: list[tuple[tuple[str, str], ...]]  # per image: the image libraries' (library, message) warnings
    refused: list[tuple[str, str]]  # the errors that stop the run: (class name, message)

    def checked(self) -> Batch:
        """The batch, or the first refused image's error, raised where the batch is used (the main process)."""
        if self.refused:
            name, message = self.refused[0]
            raise getattr(errors, name, SubmissionError)(message)
        return self


def collate(items: Sequence[tuple]) -> Batch:
    """A batch of ``DecodedImages`` items (built in the loader worker: nothing here raises)."""
    pixels = [torch.stack([item[0][g] for item in items]) for g in range(len(items[0][0]))]
    return Batch(pixels, [item[1] for item in items], [item[3] for item in items], [i[2] for i in items if i[2]])


def load_groups(manifest: Manifest, bundle: Path, device: torch.device, channels_last: bool = True) -> list[Group]:
    """Build every model of the manifest on ``device``, grouped by identical preprocessing, in manifest order."""
    groups: dict[str, Group] = {}
    for index, spec in enumerate(manifest.models):
        key = json.dumps(asdict(spec.preprocess), sort_keys=True)
        model = model_io.load(spec, bundle, device, channels_last, weights_root(bundle, manifest), torch.get_num_threads())
        if key not in groups:
            groups[key] = Group(Preprocessor(spec.preprocess, spec.name, bundle), [])
        groups[key].members.append((index, model))
    return list(groups.values())


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPUs that support it, fp16 on older ones; plain float32 on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def batch_rows(total: int, batch_size: int) -> list[list[int]]:
    """The image positions of every batch, in order: [0..b-1], [b..2b-1], ..."""
    return [list(range(start, min(start + batch_size, total))) for start in range(0, total, batch_size)]


def loader(
    paths: Sequence[Path], groups: Sequence[Group], *, device: torch.device, batch_size: int, workers: int,
    strict: bool = False, decode_mode: str = "exact", schedule: Sequence[list[int]] | None = None,
    ids: Sequence[str] | None = None,
) -> DataLoader:
    """Batches of (one uint8 tensor per group (float for albumentations), the decoding problem of each image);
    ``schedule`` gives the image positions of each batch (default: every image, in order, ``batch_size`` at a time)."""
    return DataLoader(
        DecodedImages(paths, [g.preprocessor for g in groups], strict, decode_mode, ids),
        batch_sampler=schedule if schedule is not None else batch_rows(len(paths), batch_size),
        collate_fn=collate,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
    )


def _forward(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: torch.device,
             log: Callable[[str], None], name: str = "") -> Any:
    """The model on ``inputs`` (the images, and the metadata features where the model takes them); on CUDA
    out-of-memory the batch is split in halves and retried, and the halves' outputs joined again. Any other failure
    is one error naming the model and what it was given."""
    try:
        with autocast(device):
            return model(*inputs)
    except torch.cuda.OutOfMemoryError:
        return _split_forward(model, inputs, device, log, name)
    except Exception as e:
        given = " and ".join(f"{tuple(t.shape)}" for t in inputs)
        raise BundleError(f"model {name!r} fails on inputs of shape {given}: {type(e).__name__}: {e}") from None


def _split_forward(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: torch.device,
                   log: Callable[[str], None], name: str) -> Any:
    """The forward pass in two halves, after CUDA ran out of memory on the whole batch."""
    rows = len(inputs[0])
    if rows == 1:
        raise DeviceError("CUDA out of memory on a single image: use a GPU with more memory, or --device cpu") from None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    half = rows // 2
    log(f"CUDA out of memory on a forward pass of {rows} images: split into {half} + {rows - half}, retried")
    first = _forward(model, tuple(t[:half] for t in inputs), device, log, name)
    second = _forward(model, tuple(t[half:] for t in inputs), device, log, name)
    return _join(first, second)


def _join(first: Any, second: Any) -> Any:
    """Concatenate two outputs of one model (tensors, or tuples/dicts of them) along the batch."""
    if isinstance(first, torch.Tensor):
        return torch.cat([first, second])
    if isinstance(first, dict):
        return {k: _join(first[k], second[k]) for k in first}
    return type(first)(_join(a, b) for a, b in zip(first, second))


def predict_batch(manifest: Manifest, groups: Sequence[Group], pixels: Sequence[torch.Tensor],
                  meta: np.ndarray | None, *, device: torch.device, channels_last: bool = True,
                  log: Callable[[str], None] = lambda message: None, plan: Plan | None = None) -> np.ndarray:
    """One batch -> [B, C] float64 probabilities, every model and view merged per head and the heads combined;
    with merge "rank", [M, B, C]: each model's probabilities (its views averaged), ranked once all are known.
    ``plan`` (the watchdog's, when a run is late) names the models and views that run; by default all of them."""
    plan = plan or full_plan(manifest, views_of(manifest.tta))
    size, n_views, heads = len(pixels[0]), len(plan.views), manifest.heads
    weights = torch.tensor([manifest.models[i].weight for i in plan.models], dtype=torch.float64)
    features = None if meta is None else torch.from_numpy(meta).to(device).repeat(n_views, 1)
    per_head: list[list[torch.Tensor]] = [[torch.empty(0)] * len(manifest.models) for _ in heads]
    with torch.inference_mode():
        for group, batch in zip(groups, pixels):
            x = batch.to(device, non_blocking=True)
            if group.preprocessor.normalizes_on_device:
                x = normalize(x, group.preprocessor.pre)
            members = [(index, model) for index, model in group.members if index in plan.models]
            if not members:
                continue
            x = stack_views(x, plan.views)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for index, model in members:
                spec = manifest.models[index]
                inputs = (x, features) if spec.takes_metadata else (x,)
                outputs = model_io.split(_forward(model, inputs, device, log, spec.name), spec, heads, n_views * size)
                for h, y in enumerate(outputs):
                    per_head[h][index] = y.view(n_views, size, heads[h].size)
        per_head = [[logits[i] for i in plan.models] for logits in per_head]
        if manifest.merge == "rank":
            return view_means(torch.stack(per_head[0]).cpu().double(), manifest.task).numpy()
        merged = [merge(torch.stack(logits).cpu().double(), weights, manifest.merge, manifest.task) for logits in per_head]
        return combine(merged, manifest.task).numpy()


def empty_values(manifest: Manifest, total: int) -> np.ndarray:
    """Room for ``total`` images' values: [total, C], or [M, total, C] for merge "rank"."""
    shape = (total, len(manifest.classes))
    return np.empty((len(manifest.models), *shape) if manifest.merge == "rank" else shape, dtype=np.float64)


def put(values: np.ndarray, rows: Sequence[int], batch: np.ndarray) -> None:
    """Place a batch's values (from ``predict_batch``) at its image positions."""
    if values.ndim == 3:
        values[:, rows] = batch
    else:
        values[rows] = batch


def predict(
    manifest: Manifest,
    groups: Sequence[Group],
    batches: Iterable[Batch],
    total: int,
    *,
    device: torch.device,
    features: np.ndarray | None = None,
    channels_last: bool = True,
    on_batch: Callable[[int], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[np.ndarray, dict[int, str]]:
    """The values (``empty_values``' shape) of the images of ``batches`` (as ``loader`` yields them, in order), and
    {image position: why it could not be decoded} for those predicted from a blank image. ``features`` holds the
    [total, F] metadata features of the images, for the models that take them."""
    values = empty_values(manifest, total)
    problems: dict[int, str] = {}
    start = 0
    for batch in batches:
        batch = batch.checked()
        rows = list(range(start, start + len(batch.problems)))
        problems.update({r: p for r, p in zip(rows, batch.problems) if p})
        meta = None if features is None else features[start : start + len(rows)]
        put(values, rows, predict_batch(manifest, groups, batch.pixels, meta, device=device,
                                        channels_last=channels_last, log=log))
        start += len(rows)
        if on_batch is not None:
            on_batch(len(rows))
    if start != total:
        raise ValueError(f"{start} images were predicted, {total} expected")
    return values, problems
