"""The loader's processes: the batches of any schedule in its order, the same as decoding in-process; a worker that
dies or fails is one error; the workers end with the iteration, however it ends."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest

from submission.errors import SubmissionError
from submission.inputs.loader import DecodedImages, Loader, collate
from submission.inputs.preprocess import Preprocessor
from tests.bundles import make_images, preprocess


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    paths = make_images(tmp_path_factory.mktemp("loader"), n=13)
    return DecodedImages(paths, [Preprocessor(preprocess(32), "a"), Preprocessor(preprocess((24, 40)), "b")])


def test_any_number_of_workers_gives_the_in_process_batches_in_schedule_order(images):
    schedule = [[4, 0], [12], [1, 2, 3], [11, 10, 9, 8], [5], [6, 7]]
    expected = [collate([images[i] for i in rows]) for rows in schedule]
    for workers in (1, 2, 3, 8):
        got = list(Loader(images, schedule, workers, prefetch=1))
        assert len(got) == len(expected)
        for batch, want in zip(got, expected):
            assert [p.shape for p in batch.pixels] == [p.shape for p in want.pixels]
            assert all(np.array_equal(a, b) for a, b in zip(batch.pixels, want.pixels))
            assert batch.problems == want.problems


class Dies:
    """A dataset whose item 3 ends its process as the kernel's OOM killer would."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):
        if i == 3 and multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return (np.zeros((3, 2, 2), dtype=np.uint8),), "", None, ()


class Fails(Dies):
    def __getitem__(self, i: int):
        return 1 // (i - 3) and super().__getitem__(i)


def test_a_worker_killed_for_memory_is_one_error_with_its_exit_code():
    with pytest.raises(SubmissionError, match="a loader process ended with exit code -9 .*fewer --workers"):
        list(Loader(Dies(), [[i] for i in range(6)], workers=2))
    assert not multiprocessing.active_children()


def test_a_bug_in_a_worker_brings_its_traceback():
    with pytest.raises(SubmissionError, match=r"(?s)a loader process failed: ZeroDivisionError.*Traceback"):
        list(Loader(Fails(), [[i] for i in range(6)], workers=2))
    assert not multiprocessing.active_children()


def test_the_workers_end_when_the_run_stops_early(images):
    # one batch ready per worker: each has more to decode, so none can finish before the stop
    batches = iter(Loader(images, [[i] for i in range(13)], workers=3, prefetch=1))
    next(batches)
    assert len(multiprocessing.active_children()) == 3
    batches.close()  # what a stop, an error or a watchdog's cut does to the iteration
    assert not multiprocessing.active_children()


class DeafToStop(Dies):
    """A dataset whose loader processes do what a worker still starting does with the main process's stop handler
    it inherited (interrupt.py): a SIGTERM does not end them."""

    def __getitem__(self, i: int):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return super().__getitem__(i + 4 if i == 3 else i)  # no OOM kill here


def test_the_workers_end_even_when_they_would_not_heed_a_sigterm():
    batches = iter(Loader(DeafToStop(), [[i] for i in range(6)], workers=2, prefetch=1))
    next(batches)
    batches.close()
    left = multiprocessing.active_children()
    for process in left:  # so that a failure here does not hang the test run at its exit
        process.kill()
    assert not left
