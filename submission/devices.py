"""Every device of the machine: one worker process per device, each taking every W-th batch, gathered in order.

``--devices all`` (the default) takes every visible GPU, the CPU when there is none; ``0,1`` names GPUs; ``cpu``
is one CPU process and ``cpu,cpu`` two. The batches are the same as a single device's (same images, same order
within each), so the CSV is byte for byte the single-device one. One device runs in this process.

A GPU the torch build cannot drive (a V100, sm_70, under a build for sm_75 and newer) never reaches a model: it
is one ``DeviceError`` naming the GPU and the build's architectures before anything loads, or, with ``--devices
all``, left out with a line that says so (the CPU when it was the only one).
"""

from __future__ import annotations

import multiprocessing
import queue
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from submission import errors
from submission.errors import DeviceError, SubmissionError
from submission.inputs.loader import batch_rows
from submission.manifest import Manifest, load_manifest
from submission.predict import available_cpus, cpu_threads, empty_values, load_groups, loader, predict_batch, put
from submission.tta import views_of
from submission.watchdog import Plan, Watchdog


@dataclass(frozen=True)
class Device:
    """A device the runtime predicts on, ``cpu`` or ``cuda:I``: what ``torch.device`` says of itself, without
    torch (an image whose models all run on an engine has none)."""

    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    @classmethod
    def of(cls, text: str) -> Device:
        kind, _, index = text.partition(":")
        return cls(kind, int(index) if index else None)


CPU = Device("cpu")


def _torch() -> Any:
    """torch, where it is installed: it sees the GPUs; without it, only engines run, on the CPU."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def has_torch() -> bool:
    return _torch() is not None


def visible_gpus() -> int:
    torch = _torch()
    return torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0


def capability(index: int) -> tuple[int, int]:
    """The compute capability of visible GPU ``index`` (replaceable in tests, which have no GPU)."""
    return _torch().cuda.get_device_capability(index)


def arch_list() -> tuple[str, ...]:
    """The architectures this torch build carries: ``sm_75`` machine code, ``compute_90`` PTX (replaceable)."""
    torch = _torch()
    return tuple(torch.cuda.get_arch_list()) if torch is not None and torch.cuda.is_available() else ()


def drivable(cap: tuple[int, int], archs: tuple[str, ...]) -> bool:
    """Whether a GPU of capability ``cap`` runs a build carrying ``archs``: machine code of the same major version
    and a minor no higher, or PTX of a capability no higher (compiled when loaded)."""
    major, minor = cap
    for arch in archs:
        found = re.fullmatch(r"(sm|compute)_(\d+)(\d)", arch)
        if found is None:
            continue
        kind, a_major, a_minor = found.group(1), int(found.group(2)), int(found.group(3))
        if (kind == "sm" and a_major == major and a_minor <= minor) or (kind == "compute" and (a_major, a_minor) <= cap):
            return True
    return False


def _name(index: int) -> str:
    try:
        return _torch().cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 (a name is only for the message)
        return f"GPU {index}"


def _drivable_gpus(indices: list[int], spec: str, log: Callable[[str], None]) -> list[int]:
    """``indices`` the build can drive; one it cannot is an error, or, for ``all``, left out with a line saying so."""
    archs = arch_list()
    if not archs:
        return indices
    bad = [i for i in indices if not drivable(capability(i), archs)]
    if not bad:
        return indices
    named = ", ".join(f"{_name(i)} (GPU {i}, sm_{capability(i)[0]}{capability(i)[1]})" for i in bad)
    if spec in ("all", "auto"):
        log(f"{named}: the torch build carries {' '.join(archs)} and cannot drive it; left out"
            + ("; running on the CPU" if len(bad) == len(indices) else ""))
        return [i for i in indices if i not in bad]
    raise DeviceError(f"{named}: the torch build carries {' '.join(archs)} and cannot drive it; pack with a torch "
                      "build that lists this architecture, or run with --devices cpu (or all, to fall back)")


def _no_gpu() -> str:
    if not has_torch():
        return ("this image has no torch (its models all run on an engine, on the CPU); pack with --engine torch for "
                "a GPU")
    return "run the container with --gpus all (NVIDIA container toolkit)"


def parse(spec: str, log: Callable[[str], None] = lambda message: None) -> list[Device]:
    """``all``/``auto``, ``cpu``, ``cuda``, or a comma-separated list of GPU indices and ``cpu`` -> the devices; GPUs
    the torch build cannot drive are refused (or, for ``all``, left out with a line to ``log``)."""
    gpus = visible_gpus()
    spec = spec.strip().lower()
    if spec in ("all", "auto"):
        usable = _drivable_gpus(list(range(gpus)), spec, log)
        return [Device("cuda", i) for i in usable] or [CPU]
    if spec == "cuda":
        if not gpus:
            raise DeviceError(f"--devices cuda was asked for, but no GPU is visible to torch; {_no_gpu()}, or use "
                              "--devices all to fall back to the CPU")
        return [Device("cuda", i) for i in _drivable_gpus(list(range(gpus)), spec, log)]
    found = []
    for item in (part.strip() for part in spec.split(",")):
        if item == "cpu":
            found.append(CPU)
        elif item.isdigit():
            if int(item) >= gpus:
                raise DeviceError(f"--devices names GPU {item}, but {gpus} GPU(s) are visible to torch"
                                  + ("" if gpus else f"; {_no_gpu()}"))
            found.append(Device("cuda", _drivable_gpus([int(item)], spec, log)[0]))
        else:
            raise DeviceError(f"--devices {spec!r}: {item!r} is neither a GPU index nor 'cpu'; e.g. all, 0,1, cpu,cpu")
    return found


@dataclass(frozen=True)
class Job:
    """What one device's worker predicts: the batches (image positions) whose number is rank mod world."""

    bundle: Path
    paths: tuple[Path, ...]
    ids: tuple[str, ...]  # the submission id of each path, for error messages
    features: np.ndarray | None
    batch_size: int
    workers: int  # loader processes of this worker
    threads: int  # CPU threads of this worker (torch's pool, the engines'); 0: every CPU available
    strict: bool
    deadline: float | None = None  # time.time() by which every batch must be done (the watchdog's), or None


def _schedule(total: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    return [rows for i, rows in enumerate(batch_rows(total, batch_size)) if i % world == rank]


def _batches(manifest: Manifest, job: Job, device: Device, schedule: list[list[int]], log: Callable[[str], None],
             on_ready: Callable[[], None]):
    """(image positions, values, {position: problem}, {position: warnings}, the watchdog's plan or None, (seconds
    waited for the loader, seconds in the forward passes)) of each batch of ``schedule``, predicted on ``device``."""
    threads = job.threads or available_cpus()
    if device.type == "cpu":
        cpu_threads(manifest, threads)
    groups = load_groups(manifest, job.bundle, device, threads=threads)
    on_ready()
    watch = Watchdog(manifest, views_of(manifest.tta), job.deadline) if job.deadline is not None else None
    batches = loader(job.paths, groups, batch_size=job.batch_size, workers=job.workers, strict=job.strict,
                     decode_mode=manifest.decode, schedule=schedule, ids=job.ids)
    plan, decoded = None, iter(batches)
    for done, rows in enumerate(schedule, start=1):
        asked = time.perf_counter()
        batch = next(decoded).checked()
        given = time.perf_counter()
        meta = None if job.features is None else job.features[rows]
        values = predict_batch(manifest, groups, batch.pixels, meta, device=device, log=log, plan=plan)
        yield (rows, values, {r: p for r, p in zip(rows, batch.problems) if p},
               {r: w for r, w in zip(rows, batch.warnings) if w}, plan, (given - asked, time.perf_counter() - given))
        if watch is not None:
            if done == 1:
                watch.started()  # the first batch waited for the loader to start: the second is timed
                continue
            plan = watch.after_batch(len(schedule) - done, sum(map(len, schedule[done:])), log)
            plan = None if plan.units == watch.full.units else plan


def _worker(job: Job, device: str, rank: int, world: int, results: multiprocessing.Queue) -> None:
    try:
        manifest = load_manifest(job.bundle)
        if job.threads:
            cpu_threads(manifest, job.threads)
        schedule = _schedule(len(job.paths), job.batch_size, rank, world)
        for item in _batches(manifest, job, Device.of(device), schedule, lambda m: results.put(("log", m)),
                             lambda: results.put(("ready", rank))):
            results.put(("batch", *item))
        results.put(("done", rank))
    except SubmissionError as e:
        results.put(("error", type(e).__name__, str(e)))
    except BaseException as e:  # a bug: its traceback travels to the main process
        results.put(("error", "SubmissionError", f"{type(e).__name__} on {device}: {e}\n{traceback.format_exc()}"))


@dataclass
class Scores:
    values: np.ndarray  # ``predict.empty_values``' shape
    problems: dict[int, str]  # image position -> why it was predicted from a blank image
    warnings: dict[int, tuple[tuple[str, str], ...]]  # image position -> the image libraries' warnings on it
    reduced: dict[int, Plan] = field(default_factory=dict)  # image position -> the watchdog's plan, when it was late
    decode_seconds: float = 0.0  # waiting for the loader's batches, summed over the devices
    forward_seconds: float = 0.0  # the models and views of every batch and their merge, summed over the devices

    def add(self, rows: list[int], batch: np.ndarray, problems: dict, warnings: dict, plan: Plan | None,
            seconds: tuple[float, float]) -> None:
        put(self.values, rows, batch)
        self.decode_seconds += seconds[0]
        self.forward_seconds += seconds[1]
        self.problems.update(problems)
        self.warnings.update(warnings)
        if plan is not None:
            self.reduced.update(dict.fromkeys(rows, plan))


def score(manifest: Manifest, job: Job, devices: Sequence[Device], *, on_batch: Callable[[int], None],
          on_ready: Callable[[], None], log: Callable[[str], None]) -> Scores:
    """The values of every image of ``job``, its decoding problems and warnings; ``on_ready`` is called once every
    device has its models loaded."""
    scores = Scores(empty_values(manifest, len(job.paths)), {}, {})
    if len(devices) == 1:
        schedule = batch_rows(len(job.paths), job.batch_size)
        for rows, *rest in _batches(manifest, job, devices[0], schedule, log, on_ready):
            scores.add(rows, *rest)
            on_batch(len(rows))
        return scores
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_worker, args=(job, str(d), rank, len(devices), results))
                 for rank, d in enumerate(devices)]  # not daemons: each has loader processes of its own
    for p in processes:
        p.start()
    try:
        running, loading = len(processes), len(processes)
        while running:
            try:
                message = results.get(timeout=5)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise SubmissionError(
                        f"a device worker ended with exit code {dead[0].exitcode} (out of memory?)") from None
                continue
            kind = message[0]
            if kind == "batch":
                scores.add(*message[1:])
                on_batch(len(message[1]))
            elif kind == "log":
                log(message[1])
            elif kind == "ready":
                loading -= 1
                if not loading:
                    on_ready()
            elif kind == "done":
                running -= 1
            else:
                _, name, text = message
                raise getattr(errors, name, SubmissionError)(text)
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()
            p.join(timeout=10)
    return scores


def plan(devices: Sequence[Device], workers: int | None) -> tuple[int, int]:
    """(loader processes, CPU threads) of each device worker: the CPUs shared out between the workers. A CPU
    device worker that gets one core decodes in its own process (a loader beside it would only compete for it)."""
    cpus = available_cpus()
    if len(devices) == 1:
        return (cpus if workers is None else workers), 0
    share = max(1, cpus // len(devices))
    cpu_workers = sum(d.type == "cpu" for d in devices)
    if workers is not None:
        loaders = workers // len(devices)
    else:
        loaders = share - 1 if cpu_workers else share
    return loaders, max(1, share - loaders) if cpu_workers else 0
