"""The acceptance tests of the whole product: the examples end to end, as a newcomer runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BASE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_digits_example_end_to_end(client, docker_cleanup, tmp_path):
    for tag in ("digits-multiclass", "digits-names", "digits-multilabel-05", "digits-multilabel"):
        docker_cleanup(f"{tag}:latest")
    work = tmp_path / "digits"
    proc = subprocess.run(["bash", str(ROOT / "examples" / "digits" / "run.sh"), str(work)],
                          capture_output=True, text=True, timeout=1500, env={**os.environ, "BASE_IMAGE": BASE})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    scores = {name: json.loads((work / name).read_text())["score"]["value"]
              for name in ("multiclass/report.json", "multiclass/report_names.json",
                           "multilabel/report_05.json", "multilabel/report.json")}
    assert scores["multiclass/report.json"] > 0.9  # chance: 0.1
    assert scores["multiclass/report_names.json"] == scores["multiclass/report.json"]
    assert scores["multilabel/report.json"] > 0.9
    assert "multilabel, tuned thresholds:" in proc.stdout



def test_custom_model_example_end_to_end(client, docker_cleanup, tmp_path):
    """Your own model code: a cosine head, three heads into 18 classes, image + metadata; each scored in Docker,
    and the 18-class image's CSV equal to the runtime's on the host."""
    for tag in ("custom-cosine", "custom-masks", "custom-meta", "custom-image"):
        docker_cleanup(f"{tag}:latest")
    here = ROOT / "examples" / "custom"
    work = tmp_path / "custom"
    proc = subprocess.run(["bash", str(here / "run.sh"), str(work)],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, "BASE_IMAGE": BASE})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    scores = {m: json.loads((work / f"report_{m}.json").read_text())["score"]["value"]
              for m in ("cosine", "masks", "meta", "image")}
    assert scores["cosine"] > 0.3 and scores["image"] > 0.3  # noisy digits; chance: 0.1
    assert scores["masks"] > 0.5  # chance: 1/18
    assert scores["meta"] > scores["image"] + 0.05  # the writer column carries information the images lack

    host = subprocess.run(
        [sys.executable, "-m", "builder", "pack", "--models", str(work / "runs" / "masks"), "--model-code",
         f"{here}/models.py:MaskNet", "--heads", "mask=3,gender=2,age=3", "--config", str(here / "pack.yaml"),
         "--sample-submission", str(work / "masks" / "sample_submission.csv"), "--bundle-only", str(tmp_path / "bundle")],
        capture_output=True, text=True, cwd=ROOT)
    assert host.returncode == 0, host.stdout[-3000:] + host.stderr[-3000:]
    run([str(work / "masks" / "test"), "--bundle", str(tmp_path / "bundle"), "--out", str(tmp_path / "host.csv")])
    assert (tmp_path / "host.csv").read_bytes() == (work / "out" / "submission.csv").read_bytes()


def run(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "submission", *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
