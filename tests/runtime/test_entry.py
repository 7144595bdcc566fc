"""The image run with no arguments: the manifest's entry gives the platform's paths and variables, answers image paths
from stdin line by line (AISG), or one case as JSON (Grand Challenge); weights handed in apart are found where the
platform extracts them; a GPU the torch build cannot drive never reaches a model."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from submission import devices
from submission.errors import BundleError, DeviceError
from submission.manifest import SCHEMA_VERSION, Entry, expand, load_manifest, write_manifest
from tests import naive
from tests.bundles import classes, decision, make_images, manifest, output, preprocess, save_model, write_bundle

ROOT = Path(__file__).resolve().parents[2]
AISG = Entry(platform="aisg", mode="stream", input="/images", output="-", metadata=None, weights=None,
             line="{proba:.4f}\t{label}", devices="all")


def binary_bundle(folder: Path, entry: Entry) -> Path:
    """Two folds of a two-class softmax writing P(class_1), as a harmful-meme detector does."""
    specs = tuple(save_model(folder, f"fold{i}", "test_resnet", 2, preprocess(48), seed=i) for i in range(2))
    m = manifest(specs, fmt="binary", tta="hflip", decision=decision(positive_class="class_1"),
                 output=output("binary", classes(2), columns=("id", "target")), entry=entry)
    return write_bundle(folder, m)


def test_variables_expand_as_a_shell_expands_them():
    env = {"SUBMISSION_PATH": "/submission", "EMPTY": ""}
    assert expand("${SUBMISSION_PATH:-/x}/submission.csv", env) == "/submission/submission.csv"
    assert expand("$SUBMISSION_PATH/a.csv", env) == "/submission/a.csv"
    assert expand("${MISSING:-/fallback}/a", env) == "/fallback/a"
    assert expand("${EMPTY:-/used}", env) == "/used" and expand("${MISSING}", env) == ""


def test_stream_mode_answers_every_path_of_stdin_in_order_on_stdout_alone(tmp_path):
    bundle = binary_bundle(tmp_path / "b", AISG)
    paths = make_images(tmp_path / "images", n=7)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    order = [paths[3], tmp_path / "images" / "broken.png", *paths[:3], *paths[4:]]
    proc = subprocess.run([sys.executable, "-m", "submission", "--bundle", str(bundle), "--batch-size", "3"],
                          input="".join(f"{p}\n" for p in order), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(order) and all(re.fullmatch(r"[01]\.\d{4}\t[01]", line) for line in lines), proc.stdout
    decodable = [p for p in order if p.name != "broken.png"]
    expected = naive.probabilities(bundle, decodable)[:, 1]
    got = [float(line.split("\t")[0]) for line, p in zip(lines, order) if p.name != "broken.png"]
    np.testing.assert_allclose(got, expected, atol=5e-5 + 1e-9)  # 4 decimals, as the platform wants
    labels = [int(line.split("\t")[1]) for line, p in zip(lines, order) if p.name != "broken.png"]
    assert labels == [int(p >= 0.5) for p in np.round(expected, 4)]
    assert "broken.png: predicted from a blank image" in proc.stderr


def test_stream_mode_answers_a_path_before_the_next_one_is_sent(tmp_path):
    """The platform may send one path and wait for its line: nothing waits for the end of stdin."""
    bundle = binary_bundle(tmp_path / "b", AISG)
    paths = make_images(tmp_path / "images", n=3)
    proc = subprocess.Popen([sys.executable, "-m", "submission", "--bundle", str(bundle), "--quiet"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        answers = []
        for path in paths:
            proc.stdin.write(f"{path}\n")
            proc.stdin.flush()
            answers.append(proc.stdout.readline())  # blocks until this path's line is written
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert all(re.fullmatch(r"[01]\.\d{4}\t[01]\n", a) for a in answers), answers


def test_stream_mode_refuses_a_format_of_several_columns(tmp_path):
    from submission.entry import run_stream

    specs = (save_model(tmp_path / "b", "fold0", "test_resnet", 3, preprocess(48), seed=0),)
    write_bundle(tmp_path / "b", manifest(specs, entry=AISG))
    with pytest.raises(BundleError, match="stream mode writes one value per image"):
        run_stream(tmp_path / "b", iter([]), sys.stdout)


def test_case_mode_writes_the_one_case_as_json(tmp_path):
    from submission.entry import run_case

    gc = Entry(platform="grand-challenge", mode="case", input="/input", output="/output/results.json", metadata=None,
               weights=None, line=None, devices="all")
    bundle = binary_bundle(tmp_path / "b", gc)
    case = tmp_path / "input" / "images" / "color-fundus"
    (path,) = make_images(case, n=1)
    shutil.move(path, case / "0b1c2d3e-uuid.png")
    value = run_case(tmp_path / "input", bundle, tmp_path / "output" / "results.json")
    expected = naive.probabilities(bundle, [case / "0b1c2d3e-uuid.png"])[0, 1]
    assert json.loads((tmp_path / "output" / "results.json").read_text()) == pytest.approx(expected, abs=1e-6) == value
    probs_bundle = tmp_path / "p"
    specs = (save_model(probs_bundle, "fold0", "test_resnet", 3, preprocess(48), seed=0),)
    write_bundle(probs_bundle, manifest(specs, entry=gc))
    value = run_case(tmp_path / "input", probs_bundle, tmp_path / "out2.json")
    assert set(value) == set(classes(3)) and sum(value.values()) == pytest.approx(1.0, abs=1e-5)
    make_images(case, n=2, seed=3)
    from submission.errors import InputError

    with pytest.raises(InputError, match="a case folder holds one image, but .* holds 3"):
        run_case(tmp_path / "input", bundle, tmp_path / "out3.json")


def test_no_arguments_take_the_platforms_paths_and_variables(tmp_path):
    evalai = Entry(platform="evalai", mode="folder", input=str(tmp_path / "dataset"),
                   output="${SUBMISSION_PATH:-/submission}/submission.csv", metadata=None, weights=None, line=None,
                   devices="all")
    bundle = binary_bundle(tmp_path / "b", evalai)
    make_images(tmp_path / "dataset", n=4)
    env = {**os.environ, "SUBMISSION_PATH": str(tmp_path / "submission")}
    proc = subprocess.run([sys.executable, "-m", "submission", "--bundle", str(bundle), "--ignore-sample"], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "submission" / "submission.csv")) == 4


def test_weights_handed_in_apart_are_found_where_the_platform_extracts_them(tmp_path):
    from submission.runner import Options, run

    bundle = binary_bundle(tmp_path / "b", replace(AISG, mode="folder", line=None, output="/output/s.csv",
                                                   weights=str(tmp_path / "opt-ml-model")))
    paths = make_images(tmp_path / "test", n=3)
    expected = naive.probabilities(bundle, paths)[:, 1]
    shutil.move(bundle / "weights", tmp_path / "weights-apart")  # the image holds no weights
    with pytest.raises(BundleError, match="is in neither the bundle nor .*opt-ml-model.*upload the model tarball"):
        run(tmp_path / "test", bundle, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True))
    (tmp_path / "opt-ml-model").mkdir()
    shutil.move(tmp_path / "weights-apart", tmp_path / "opt-ml-model" / "weights")
    run(tmp_path / "test", bundle, tmp_path / "s.csv", Options(workers=0, quiet=True, ignore_sample=True))
    np.testing.assert_allclose(pd.read_csv(tmp_path / "s.csv")["target"], expected, atol=2e-6)


@pytest.fixture
def one_gpu_sm70(monkeypatch):
    """A V100 (sm_70) beside a build for sm_75 and newer, as the PyPI wheel of torch 2.14 is."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(devices, "capability", lambda i: (7, 0))
    monkeypatch.setattr(devices, "arch_list", lambda: ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"))


def test_a_gpu_the_build_cannot_drive_is_one_error_or_an_announced_fallback(one_gpu_sm70):
    with pytest.raises(DeviceError, match=r"Tesla V100-SXM2-16GB \(GPU 0, sm_70\): the torch build carries sm_75 sm_80 "
                                          r".* cannot drive it; .*--devices cpu"):
        devices.parse("0")
    said = []
    assert devices.parse("all", said.append) == [devices.CPU]
    assert "cannot drive it; left out; running on the CPU" in said[0]


def test_which_architectures_drive_which_gpus():
    archs = ("sm_75", "sm_80", "sm_86", "sm_90", "compute_90")
    assert devices.drivable((7, 5), archs) and devices.drivable((8, 9), archs)  # an L4 runs sm_86 machine code
    assert devices.drivable((9, 0), archs) and devices.drivable((12, 0), archs)  # PTX of 9.0 compiles for newer
    assert not devices.drivable((7, 0), archs) and not devices.drivable((6, 0), archs)  # V100, P100
    assert not devices.drivable((12, 0), ("sm_75", "sm_90"))  # no PTX, another major


def test_a_bundle_packed_before_the_entry_reads_as_the_generic_one(tmp_path):
    specs = (save_model(tmp_path, "fold0", "test_resnet", 3, preprocess(48), seed=0),)
    write_bundle(tmp_path, manifest(specs))
    data = json.loads((tmp_path / "manifest.json").read_text())
    data.pop("entry")
    data["schema_version"] = 3
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    m = load_manifest(tmp_path)
    assert m.entry.platform == "generic" and m.entry.input == "/data" and m.schema_version == SCHEMA_VERSION
    write_manifest(tmp_path, m)
