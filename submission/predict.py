"""The prediction loop: decode each image once, run every model and TTA view on the same batch, merge.

Models that share a preprocessing (input size, crop, normalisation) form a group; each image is decoded once
in a loader worker (``inputs.loader``) and resized once per group. Each group's batch is normalised, expanded to
its TTA views and fed to every model of the group in one forward pass per model (with the images' metadata
features, repeated for every view, where a model takes them): on the model's device for an eager model
(``models.eager``), on the host in numpy for an engine, so that a bundle whose models all run on an engine never
imports torch. Per batch, each head's logits of all models and views are merged into probabilities (numpy,
float64), and the heads combined into classes, so memory does not grow with the test set beyond the [N, C] result.
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

from submission import models as model_io
from submission.ensemble import combine, merge, view_means
from submission.errors import BundleError, SubmissionError
from submission.inputs.loader import Batch, DecodedImages, Loader, batch_rows
from submission.inputs.preprocess import Preprocessor, normalize
from submission.manifest import Manifest, weights_root
from submission.models import Engine
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
    members: list[tuple[int, Any]]  # (position in manifest.models, an eager nn.Module or an Engine)


def cpu_threads(manifest: Manifest, threads: int) -> None:
    """torch's CPU pool sized to ``threads`` where a model runs eagerly (torch's default is every core of the
    host, not the container's quota); engines size their own pools when they open."""
    if any(m.engine == "torch" for m in manifest.models):
        from submission.models import eager

        eager.set_threads(threads)


def load_groups(manifest: Manifest, bundle: Path, device: Any, channels_last: bool = True,
                threads: int | None = None) -> list[Group]:
    """Build every model of the manifest on ``device``, grouped by identical preprocessing, in manifest order;
    ``threads`` (default: the CPUs available) for the engines' pools."""
    groups: dict[str, Group] = {}
    threads = threads or available_cpus()
    for index, spec in enumerate(manifest.models):
        key = json.dumps(asdict(spec.preprocess), sort_keys=True)
        model = model_io.load(spec, bundle, device, channels_last, weights_root(bundle, manifest), threads)
        if key not in groups:
            groups[key] = Group(Preprocessor(spec.preprocess, spec.name, bundle), [])
        groups[key].members.append((index, model))
    return list(groups.values())


def loader(
    paths: Sequence[Path], groups: Sequence[Group], *, batch_size: int, workers: int, strict: bool = False,
    decode_mode: str = "exact", schedule: Sequence[list[int]] | None = None, ids: Sequence[str] | None = None,
) -> Loader:
    """Batches of (one uint8 array per group (float for albumentations), the decoding problem of each image);
    ``schedule`` gives the image positions of each batch (default: every image, in order, ``batch_size`` at a time)."""
    images = DecodedImages(paths, [g.preprocessor for g in groups], strict, decode_mode, ids)
    return Loader(images, schedule if schedule is not None else batch_rows(len(paths), batch_size), workers)


def group_input(pixels: np.ndarray, group: Group, views: Sequence[str], device: Any, eager_model: bool,
                channels_last: bool = True) -> Any:
    """A group's loader batch -> what its models take, every view stacked: a tensor on ``device`` for an eager
    model, a float32 array on the host for an engine."""
    pre, normalizes = group.preprocessor.pre, group.preprocessor.normalizes_on_device
    if eager_model:
        from submission.models import eager

        return eager.inputs(pixels, pre, normalizes, views, device, channels_last)
    return stack_views(normalize(pixels, pre) if normalizes else pixels, views)


def forward(model: Any, inputs: tuple[Any, ...], device: Any, log: Callable[[str], None], name: str = "") -> Any:
    """One model's output on ``inputs`` (the images, and the metadata features where it takes them); a failure of
    the model, eager or on its engine, is one error naming the model and what it was given."""
    try:
        if isinstance(model, Engine):
            return model(*inputs)
        from submission.models import eager

        return eager.forward(model, inputs, device, log, name)
    except SubmissionError:  # out of memory on a single image: the run's own error
        raise
    except Exception as e:  # noqa: BLE001 (a model's code and each engine raise their own types)
        given = " and ".join(f"{tuple(t.shape)}" for t in inputs)
        raise BundleError(f"model {name!r} fails on inputs of shape {given}: {type(e).__name__}: {e}") from None


def on_host(logits: Any) -> np.ndarray:
    """A head's logits (a tensor on its device, or an engine's array) as float64 numpy, where the merge runs."""
    if isinstance(logits, np.ndarray):
        return logits.astype(np.float64)
    return logits.detach().cpu().double().numpy()


def predict_batch(manifest: Manifest, groups: Sequence[Group], pixels: Sequence[np.ndarray],
                  meta: np.ndarray | None, *, device: Any, channels_last: bool = True,
                  log: Callable[[str], None] = lambda message: None, plan: Plan | None = None) -> np.ndarray:
    """One batch -> [B, C] float64 probabilities, every model and view merged per head and the heads combined;
    with merge "rank", [M, B, C]: each model's probabilities (its views averaged), ranked once all are known.
    ``plan`` (the watchdog's, when a run is late) names the models and views that run; by default all of them."""
    plan = plan or full_plan(manifest, views_of(manifest.tta))
    size, n_views, heads = len(pixels[0]), len(plan.views), manifest.heads
    weights = np.array([manifest.models[i].weight for i in plan.models], dtype=np.float64)
    features = None if meta is None else np.tile(np.asarray(meta, dtype=np.float32), (n_views, 1))
    per_head: list[dict[int, np.ndarray]] = [{} for _ in heads]
    for group, batch in zip(groups, pixels):
        members = [(index, model) for index, model in group.members if index in plan.models]
        inputs: dict[bool, Any] = {}  # eager or not -> the group's input, made once for each kind of model
        for index, model in members:
            spec = manifest.models[index]
            eager_model = not isinstance(model, Engine)
            if eager_model not in inputs:
                inputs[eager_model] = group_input(batch, group, plan.views, device, eager_model, channels_last)
            given = (inputs[eager_model], features) if spec.takes_metadata else (inputs[eager_model],)
            outputs = model_io.split(forward(model, given, device, log, spec.name), spec, heads, n_views * size)
            for h, y in enumerate(outputs):
                per_head[h][index] = on_host(y).reshape(n_views, size, heads[h].size)
    stacked = [np.stack([logits[i] for i in plan.models]) for logits in per_head]
    if manifest.merge == "rank":
        return view_means(stacked[0], manifest.task)
    return combine([merge(logits, weights, manifest.merge, manifest.task) for logits in stacked], manifest.task)


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
    device: Any,
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
