"""The watchdog keeps the deadline: a run that would be late drops work for the batches left in the declared order,
finishes within one batch's time of the deadline, keeps the full run's rows up to the drop exactly, and names in
the problems JSON which ids were predicted with what. A run that fits is byte for byte the run without a deadline.

The model sleeps in forward (10 ms an image), so that its cost is known and does not depend on the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from builder.errors import ConfigError
from submission import runner
from submission.manifest import load_manifest
from submission.watchdog import Watchdog
from tests.bundles import make_images
from tests.naive import FIXTURES
from tests.pack.test_code import models_of, pack, save_folds
from tests.runs import save_bare, tiny_model

ROOT = Path(__file__).resolve().parents[2]
IMAGES, BATCH, MODELS, VIEWS = 64, 8, 3, 4  # 8 batches, each 3 models x 4 views x 8 images x 10 ms = 0.96 s
BATCH_SECONDS = MODELS * VIEWS * BATCH * 0.01
ORDER = "view:vflip,view:hflip,model:fold2,view:rot180"


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    root = tmp_path_factory.mktemp("watchdog")
    runs = save_folds(root / "runs", models_of("slow.py", "Slow", n=MODELS))
    bundle = pack(runs, root / "bundle", model_code=f"{FIXTURES}/slow.py:Slow", img_size="32", tta="flips",
                  format="probs", drop_order=ORDER).path
    make_images(root / "test", n=IMAGES)
    return root, bundle


def run(root: Path, bundle: Path, name: str, deadline: float | None = None) -> tuple[float, Path]:
    """(seconds from the run's start to the CSV's writing, the CSV); the deadline counts from the run's start, as it
    counts from the process's start in ``python -m submission`` (the test process started long ago)."""
    out = root / f"{name}.csv"
    start = time.time()
    with mock.patch.object(runner, "STARTED", start):
        runner.run(root / "test", bundle, out, runner.Options(batch_size=BATCH, workers=0, ignore_sample=True,
                                                              quiet=True, deadline=deadline))
    return out.stat().st_mtime - start, out


def test_a_late_run_drops_work_in_the_declared_order_and_keeps_the_deadline(slow):
    root, bundle = slow
    assert load_manifest(bundle).deadline.drop_order == tuple(ORDER.split(","))
    full_written, full = run(root, bundle, "full")
    assert not json.loads((root / "full.problems.json").read_text()).get("watchdog")

    deadline = full_written - 3.5 * BATCH_SECONDS  # the full run cannot fit
    written, late = run(root, bundle, "late", deadline)
    assert written <= deadline + BATCH_SECONDS, (written, deadline)

    report = json.loads((root / "late.problems.json").read_text())["watchdog"]
    assert report["deadline_seconds"] == deadline
    reduced = report["reduced"]
    assert reduced, "the run was late and dropped nothing"
    full_views, full_models = ["identity", "hflip", "vflip", "rot180"], ["fold0", "fold1", "fold2"]
    dropped = []
    for plan in reduced:  # each later plan drops a further prefix of the declared order
        gone = [f"view:{v}" for v in full_views if v not in plan["views"]]
        gone += [f"model:{m}" for m in full_models if m not in plan["models"]]
        assert sorted(gone) == sorted(ORDER.split(",")[: len(gone)]) and len(gone) > len(dropped)
        dropped = gone

    later = {i for plan in reduced for i in plan["ids"]}
    full_lines = full.read_text().splitlines()
    late_lines = late.read_text().splitlines()
    assert len(late_lines) == len(full_lines) == IMAGES + 1 and late_lines[0] == full_lines[0]
    for a, b in zip(full_lines[1:], late_lines[1:]):
        assert a.split(",")[0] == b.split(",")[0]
        if a.split(",")[0] not in later:
            assert a == b  # predicted before the drop: the full run's row exactly
    # the first rows are predicted in full, the last ones are the reduced ones
    assert full_lines[1].split(",")[0] not in later and full_lines[-1].split(",")[0] in later
    values = np.array([[float(v) for v in line.split(",")[1:]] for line in late_lines[1:]])
    np.testing.assert_allclose(values.sum(1), 1.0, atol=1e-5)


def test_a_run_that_fits_is_the_run_without_a_deadline(slow):
    root, bundle = slow
    run(root, bundle, "plain")
    proc = subprocess.run([sys.executable, "-m", "submission", str(root / "test"), "--bundle", str(bundle), "--out",
                           str(root / "roomy.csv"), "--batch-size", str(BATCH), "--workers", "0", "--ignore-sample",
                           "--deadline", "3600"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "deadline 3600 s" in proc.stderr
    assert (root / "roomy.csv").read_bytes() == (root / "plain.csv").read_bytes()
    assert json.loads((root / "roomy.problems.json").read_text())["watchdog"]["reduced"] == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_watchdog_drops_as_little_as_the_projection_needs(slow):
    """Against the projection worked by hand: 10 batches left at 1.2 s each (12 units of 0.1 s) and 5 s to go."""
    _, bundle = slow
    manifest = load_manifest(bundle)
    clock = Clock()
    watch = Watchdog(manifest, ["identity", "hflip", "vflip", "rot180"], at=clock.now + 1.2 + 5.0, clock=clock)
    clock.now += 1.2  # one batch of the full plan
    logged = []
    plan = watch.after_batch(10, 80, logged.append)
    # the batches left and one in hand: 11 x 0.1 s x units <= 5 s, so at most 4 units. In the declared order:
    # without vflip 3 x 3 = 9 units, without hflip 3 x 2 = 6, without fold2 2 x 2 = 4 (4.4 s): it fits there
    assert plan.views == ("identity", "rot180") and plan.models == (0, 1)
    assert len(logged) == 1 and "the 80 image(s) left are predicted without view vflip, view hflip, model fold2" \
        in logged[0]
    clock.now += 0.4  # a batch of the new plan at the projected rate: on time, nothing more dropped
    assert watch.after_batch(9, 72, logged.append) == plan and len(logged) == 1


def test_a_deadline_is_refused_where_it_cannot_drop_work(tmp_path):
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model())
    save_bare(tmp_path / "runs" / "fold1.pth", tiny_model(seed=1))
    common = dict(arch="test_resnet", img_size="32")
    with pytest.raises(ConfigError, match=r"drop_order names 'view:hflip', but the views that may be dropped are \[\]"):
        pack(tmp_path / "runs", tmp_path / "b", drop_order="view:hflip", **common)
    with pytest.raises(ConfigError, match="drop_order drops every model; one must stay"):
        pack(tmp_path / "runs", tmp_path / "b", drop_order="model:fold0,model:fold1", **common)
    with pytest.raises(ConfigError, match="a deadline cannot drop work under merge 'rank'"):
        pack(tmp_path / "runs", tmp_path / "b", merge="rank", deadline="60", task="multilabel", classes="a,b,c",
             format="probs", **common)


def test_the_platforms_time_limit_gives_the_default_deadline(tmp_path):
    save_bare(tmp_path / "runs" / "fold0.pth", tiny_model())
    save_bare(tmp_path / "runs" / "fold1.pth", tiny_model(seed=1))
    m = load_manifest(pack(tmp_path / "runs", tmp_path / "b", arch="test_resnet", img_size="32", tta="hflip",
                           platform="evalai").path)
    assert m.deadline.seconds == 86400 * 0.95  # EvalAI's day less 5% (at least a minute)
    assert m.deadline.drop_order == ("view:hflip", "model:fold1")  # the last view, then the later of equal weights
    m = load_manifest(pack(tmp_path / "runs", tmp_path / "c", arch="test_resnet", img_size="32", platform="evalai",
                           deadline="0", fold_weights="2,1").path)
    assert m.deadline.seconds is None and m.deadline.drop_order == ("model:fold1",)


def test_the_time_split_counts_the_forward_passes_where_they_are(slow):
    """The model sleeps a known time in forward: the split puts it in forward, and the stages add up to no more than
    the run took."""
    root, bundle = slow
    start = time.time()
    with mock.patch.object(runner, "STARTED", start):
        result = runner.run(root / "test", bundle, root / "split.csv",
                            runner.Options(batch_size=BATCH, workers=0, ignore_sample=True, quiet=True))
    took = time.time() - start
    t = result.timings
    assert set(t) == set(runner.STAGES) and min(t.values()) >= 0
    assert t["forward"] >= IMAGES // BATCH * BATCH_SECONDS  # the sleeps alone
    assert t["forward"] + t["decode"] <= result.seconds + 0.05
    assert sum(t.values()) <= took + 0.05
    assert runner.timing_line(t).startswith(f"time: startup {t['startup']:.2f}s, decode ")
