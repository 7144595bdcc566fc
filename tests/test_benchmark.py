"""The benchmark stays runnable, and the runtime it measures agrees with the naive loop it is compared to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_decode_regime_runs_and_agrees_with_the_naive_loop(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_inference.py"), "--regime", "decode", "--images", "6",
         "--folds", "2", "--repeat", "1", "--batch-size", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (figures,) = json.loads(out.read_text())
    assert figures["images"] == 6 and figures["folds"] == 2
    for key in ("naive_images_per_s", "runtime_images_per_s", "compute_only_images_per_s",
                "runtime_over_compute_only", "runtime_over_naive", "channels_last_gain"):
        assert figures[key] > 0, key
    assert figures["max_abs_diff_runtime_vs_naive"] < 2e-6  # the CSV keeps 6 decimals
    assert figures["runtime_fast_decode_images_per_s"] > 0 and figures["fast_decode_speedup"] > 0
    assert 0.0 <= figures["fast_decode"]["argmax_agreement"] <= 1.0
    assert "runtime/naive" in proc.stdout


def test_the_loader_benchmark_runs_and_both_loaders_give_the_same_batches(tmp_path):
    out = tmp_path / "loader.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_loader.py"), "--images", "10", "--size", "96", "--img-size",
         "32", "--batch-size", "4", "--repeat", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    assert figures["same_batches"] is True
    assert figures["loader_images_per_second"] > 0 and figures["dataloader_images_per_second"] > 0
