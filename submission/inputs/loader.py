"""Test images -> batches of model inputs, decoded ahead of use by loader processes.

Each image is decoded once and made into one input per model group (``preprocess.Preprocessor``). A batch holds
numpy arrays only, so the loader needs no torch: the eager models take their batch to their device, an engine
takes it as it is.

The loader forks ``workers`` processes; worker k decodes batches k, k + W, k + 2W, ... and keeps up to
``prefetch`` of them ready, and the batches are taken from the workers in turn, so they come in schedule order
whatever the number of workers. A worker that dies (killed for memory) is one error naming its exit code; the
workers end with the iteration, however it ends.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from submission import errors
from submission.errors import SubmissionError
from submission.inputs.images import decode
from submission.inputs.preprocess import Preprocessor, fast_decode_keep

PREFETCH = 4  # batches each loader process keeps ready
POLL_SECONDS = 5  # how often a wait for a batch looks whether its worker is still alive


class DecodedImages:
    """Item i: (one array per group made from the i-th image, decoded once; "" or why it could not be decoded;
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

    def __getitem__(self, i: int) -> tuple[tuple[np.ndarray, ...], str, tuple[str, str] | None, tuple]:
        decoded = decode(self.paths[i], self.keep)
        try:
            if decoded.image is None:
                blanks = tuple(p.blank() for p in self.preprocessors)
                fatal = ("InputError", f"{decoded.error} (--strict: no blank-image fallback)") if self.strict else None
                return blanks, decoded.error, fatal, decoded.warnings
            return tuple(p(decoded.image) for p in self.preprocessors), "", None, decoded.warnings
        except SubmissionError as e:
            message = f"{self.paths[i]} (id {self.ids[i]!r}): {e}" if self.ids else f"{self.paths[i]}: {e}"
            blanks = tuple(np.zeros(p.pre.input_size, dtype=np.uint8) for p in self.preprocessors)
            return blanks, "", (type(e).__name__, message), decoded.warnings


@dataclass
class Batch:
    pixels: list[np.ndarray]  # one [B, C, H, W] array per group: uint8, or float32 from an albumentations transform
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
    pixels = [np.stack([item[0][g] for item in items]) for g in range(len(items[0][0]))]
    return Batch(pixels, [item[1] for item in items], [item[3] for item in items], [i[2] for i in items if i[2]])


def batch_rows(total: int, batch_size: int) -> list[list[int]]:
    """The image positions of every batch, in order: [0..b-1], [b..2b-1], ..."""
    return [list(range(start, min(start + batch_size, total))) for start in range(0, total, batch_size)]


@dataclass(frozen=True)
class _Failed:
    """What a loader process sends instead of a batch when it fails outside the errors that travel as data."""

    text: str


def _work(images: DecodedImages, schedule: Sequence[list[int]], out: multiprocessing.Queue) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        for rows in schedule:
            out.put(collate([images[i] for i in rows]))
    except BaseException as e:  # a bug: its traceback travels to the main process
        out.put(_Failed(f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class Loader:
    """The batches of ``schedule`` (lists of image positions) in order, decoded by ``workers`` processes (0:
    in this process, when each is asked for)."""

    def __init__(self, images: DecodedImages, schedule: Sequence[list[int]], workers: int, prefetch: int = PREFETCH):
        self.images, self.schedule, self.prefetch = images, list(schedule), max(1, prefetch)
        self.workers = max(0, min(workers, len(self.schedule)))

    def __len__(self) -> int:
        return len(self.schedule)

    def __iter__(self) -> Iterator[Batch]:
        if not self.workers:
            for rows in self.schedule:
                yield collate([self.images[i] for i in rows])
            return
        context = multiprocessing.get_context("fork")  # the workers inherit the preprocessing as it is
        n = self.workers
        queues = [context.Queue(self.prefetch) for _ in range(n)]
        processes = [context.Process(target=_work, args=(self.images, self.schedule[k::n], queues[k]), daemon=True)
                     for k in range(n)]
        for process in processes:
            process.start()
        try:
            for i in range(len(self.schedule)):
                yield _receive(queues[i % n], processes[i % n])
        finally:
            # SIGKILL, not SIGTERM: a worker still starting has the main process's stop handler, which would
            # swallow a SIGTERM (interrupt.py), and a worker holds nothing that needs cleaning up
            for process in processes:
                process.kill()
            for process in processes:
                process.join()
            for q in queues:
                q.cancel_join_thread()
                q.close()


def _receive(source: multiprocessing.Queue, worker: multiprocessing.process.BaseProcess) -> Batch:
    while True:
        try:
            item = source.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if worker.exitcode is not None:
                raise SubmissionError(f"a loader process ended with exit code {worker.exitcode} before its batch was "
                                      "ready (killed for memory?); run with fewer --workers or a smaller "
                                      "--batch-size") from None
            continue
        if isinstance(item, _Failed):
            raise SubmissionError(f"a loader process failed: {item.text}")
        return item
