"""The acceptance test of the whole product: the digits example end to end, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import subprocess
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

