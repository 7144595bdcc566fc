"""Test sets larger than one machine: a deterministic share of the ids per array task, and the merge of the shares.

``python -m submission TEST_DIR --shard I/N --out-probs DIR`` predicts the I-th of N contiguous slices of the
sorted ids and writes their values (probabilities before any decision; each model's for merge "rank"), their
ids and positions, and the manifest's sha256, to one file, atomically; a shard already finished is skipped when
rerun. I and N come from the array engine where ``--shard auto``: Kubernetes Indexed Jobs
(``JOB_COMPLETION_INDEX``; N from ``SUBMISSION_SHARDS`` or ``auto/N``), Slurm job arrays
(``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT``), AWS Batch array jobs
(``AWS_BATCH_JOB_ARRAY_INDEX``, ``AWS_BATCH_JOB_ARRAY_SIZE``). ``python -m submission merge DIR`` checks that the
shards are one bundle's and one test set's, each id once, none missing, then decides and writes the CSV.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from submission.atomic import atomic_path
from submission.errors import ShardError

INDEX_VARIABLES = (("JOB_COMPLETION_INDEX", None), ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN"),
                   ("AWS_BATCH_JOB_ARRAY_INDEX", None))
COUNT_VARIABLES = ("SUBMISSION_SHARDS", "SLURM_ARRAY_TASK_COUNT", "AWS_BATCH_JOB_ARRAY_SIZE")


def _number(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise ShardError(f"{what} is {text!r}; expected a whole number")
    return int(text)


def parse_shard(spec: str, environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """"I/N" (0-based I), "auto" or "auto/N" -> (I, N), reading the array engine's variables for "auto"."""
    index_text, _, count_text = spec.partition("/")
    if index_text.strip().lower() == "auto":
        found = [(name, low) for name, low in INDEX_VARIABLES if name in environ]
        if not found:
            raise ShardError(f"--shard {spec}: none of {', '.join(n for n, _ in INDEX_VARIABLES)} is set; give I/N")
        name, low = found[0]
        index = _number(environ[name], name) - (_number(environ[low], low) if low and low in environ else 0)
    else:
        index = _number(index_text, "the shard index")
    if count_text:
        count = _number(count_text, "the shard count")
    else:
        names = [n for n in COUNT_VARIABLES if n in environ]
        if not names:
            raise ShardError(f"--shard {spec}: the number of shards is unknown; give I/N or auto/N, or set "
                             f"{' or '.join(COUNT_VARIABLES)}")
        count = _number(environ[names[0]], names[0])
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"shard index {index} is out of range for {count} shard(s) (0 to {count - 1})")
    return index, count


def digest(ids: Sequence[str]) -> str:
    """Names one test set: the sha256 of its ids in row order."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def rows_of(ids: Sequence[str], index: int, count: int) -> list[int]:
    """The row positions of shard ``index`` of ``count``: a contiguous slice of the sorted ids."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    low, high = index * len(ids) // count, (index + 1) * len(ids) // count
    return sorted(order[low:high])


def file_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.npz"


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    manifest_sha256: str
    test_digest: str  # the whole test set's ids, in row order
    total: int  # rows of the whole test set
    rows: np.ndarray  # this shard's row positions
    ids: tuple[str, ...]  # this shard's ids, by row
    values: np.ndarray  # [n, C], or [M, n, C] (merge "rank")
    problems: dict  # {"undecodable": [...], "metadata": {...}} of this shard's images


def write(folder: Path, shard: Shard) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(shard.index, shard.count)
    meta = {"index": shard.index, "count": shard.count, "manifest_sha256": shard.manifest_sha256,
            "test_digest": shard.test_digest, "total": shard.total, "problems": shard.problems}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), rows=shard.rows, ids=np.array(shard.ids, dtype=str),
                 values=shard.values)
    return path


def read(path: Path) -> Shard:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return Shard(meta["index"], meta["count"], meta["manifest_sha256"], meta["test_digest"], meta["total"],
                         data["rows"], tuple(str(i) for i in data["ids"]), data["values"], meta["problems"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ShardError(f"{path} is not a shard written by this runtime: {e}") from None


def finished(folder: Path, index: int, count: int, manifest_sha256: str, test_digest: str) -> bool:
    """Whether this shard's file is already there, for this bundle and this test set (a retried task)."""
    path = folder / file_name(index, count)
    if not path.is_file():
        return False
    shard = read(path)
    return (shard.manifest_sha256, shard.test_digest, shard.index, shard.count) == (
        manifest_sha256, test_digest, index, count)


@dataclass(frozen=True)
class Merged:
    ids: tuple[str, ...]  # every id, in row order
    values: np.ndarray  # [N, C] or [M, N, C]
    problems: list[dict]  # each shard's problems


def merge(folder: Path, manifest_sha256: str) -> Merged:
    """Every shard of ``folder`` into one test set's values, or a named error."""
    paths = sorted(Path(folder).glob("shard-*-of-*.npz"))
    if not paths:
        raise ShardError(f"no shard files (shard-*-of-*.npz) in {folder}")
    shards = [read(p) for p in paths]
    first = shards[0]
    for s, p in zip(shards, paths):
        if s.manifest_sha256 != manifest_sha256:
            raise ShardError(f"{p.name} was made with another bundle (manifest sha256 {s.manifest_sha256[:12]}, this "
                             f"bundle {manifest_sha256[:12]}); rerun that shard with this image")
        if (s.count, s.test_digest, s.total) != (first.count, first.test_digest, first.total):
            raise ShardError(f"{p.name} and {paths[0].name} were made for different test sets or shard counts")
    missing = sorted(set(range(first.count)) - {s.index for s in shards})
    if missing:
        raise ShardError(f"{len(missing)} of {first.count} shards are missing from {folder}: "
                         f"{', '.join(file_name(i, first.count) for i in missing[:10])}; run those array tasks again")
    values = np.empty((*first.values.shape[:-2], first.total, first.values.shape[-1]), dtype=np.float64)
    ids: list[str | None] = [None] * first.total
    for s in shards:
        for r, i in zip(s.rows, s.ids):
            if ids[r] is not None:
                raise ShardError(f"id {i!r} is in more than one shard (e.g. {file_name(s.index, s.count)}); the shards "
                                 "overlap: remove the stray files and merge again")
            ids[r] = i
        if values.ndim == 3:
            values[:, s.rows] = s.values
        else:
            values[s.rows] = s.values
    absent = [r for r, i in enumerate(ids) if i is None]
    if absent:
        raise ShardError(f"{len(absent)} row(s) of the test set are in no shard")
    if digest([str(i) for i in ids]) != first.test_digest:
        raise ShardError("the shards' ids do not make the test set they were made for")
    return Merged(tuple(str(i) for i in ids), values, [s.problems for s in shards])
