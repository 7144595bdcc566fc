"""On the real engine: an image packed for each platform runs with no arguments under exactly that platform's
``docker run`` (mounts, variables, flags, stdin) and writes the platform's answer, equal to the host run;
``builder validate --platform`` replays each; ``builder export`` writes what is uploaded."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from builder import platforms
from builder.errors import BuilderError, ConfigError
from builder.export.archive import image_archive
from builder.pack.resolve import PackRequest
from builder.pipeline import pack
from builder.validate.report import ValidateRequest, validate
from tests import naive
from tests.bundles import make_images
from tests.conftest import BASE
from tests.runs import save_timm, timm_args, tiny_model

pytestmark = pytest.mark.slow
DOCKER = "/usr/bin/docker"  # Debian's client, as the platforms' guides use `docker run`


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("platform-runs")
    for i in range(2):
        save_timm(root / f"fold{i}", tiny_model(num_classes=2, seed=i), timm_args("test_resnet", 2, 32))
    return root


@pytest.fixture(scope="module")
def test_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("platform-test")
    paths = make_images(folder, n=5)
    folder.chmod(0o755)
    sample = folder.parent / f"{folder.name}-sample.csv"
    sample.write_text("id,target\n" + "".join(f"{p.stem},0.5\n" for p in paths))
    return folder, paths, sample


@pytest.fixture(scope="module")
def packed(client, module_docker_cleanup, runs, test_data, tmp_path_factory):
    """One image per platform (a two-class softmax writing P(class 1)), and its bundle."""
    _, _, sample = test_data
    made = {}
    for name, options in (("evalai", {"sample_submission": sample}), ("aicrowd", {"sample_submission": sample}),
                          ("aisg", {"devices": "cpu"}), ("grand-challenge", {})):
        bundle = tmp_path_factory.mktemp(f"bundle-{name}") / "bundle"
        tag = module_docker_cleanup(f"platform-{name}:test")
        result = pack(PackRequest(models=runs, options={"platform": name, **options}), tag=tag, base_image=BASE,
                      bundle_dir=bundle)
        made[name] = (result.image.tag, bundle)
    return made


def docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], input=stdin, capture_output=True, text=True, timeout=600)


def writable(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)
    return folder


def test_evalai_runs_it_with_its_mounts_and_variable(packed, test_data, tmp_path):
    folder, paths, _ = test_data
    tag, bundle = packed["evalai"]
    out = writable(tmp_path / "submission")
    proc = docker("run", "--rm", "--network", "none", "-v", f"{folder}:/dataset:ro", "-v", f"{out}:/submission",
                  "-e", "SUBMISSION_PATH=/submission", "-e", "CHALLENGE_PK=1", "-e", "PHASE_PK=1", tag)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out / "submission.csv")
    np.testing.assert_allclose(got["target"], naive.probabilities(bundle, paths)[:, 1], atol=2e-6)


def test_aisg_runs_it_as_its_guide_does(packed, test_data):
    folder, paths, _ = test_data
    tag, bundle = packed["aisg"]
    proc = docker("run", "--init", "--attach", "stdin", "--attach", "stdout", "--attach", "stderr", "--cpus", "2",
                  "--memory", "4g", "--memory-swap", "4g", "--ulimit", "nproc=1024", "--ulimit", "nofile=1024",
                  "--network", "none", "--read-only", "--mount", f"type=bind,source={folder},target=/images,readonly",
                  "--mount", "type=tmpfs,destination=/tmp,tmpfs-size=5368709120,tmpfs-mode=1777", "--interactive",
                  "--rm", tag, stdin="".join(f"/images/{p.name}\n" for p in paths))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths) and all(re.fullmatch(r"[01]\.\d{4}\t[01]", line) for line in lines), proc.stdout
    expected = naive.probabilities(bundle, paths)[:, 1]
    np.testing.assert_allclose([float(line.split("\t")[0]) for line in lines], expected, atol=5e-5 + 1e-9)


def test_grand_challenge_runs_one_case_with_the_model_tarball(packed, test_data, tmp_path, client):
    folder, paths, _ = test_data
    tag, bundle = packed["grand-challenge"]
    listed = docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/ls", tag, "/opt/submission/bundle")
    assert "manifest.json" in listed.stdout and "weights" not in listed.stdout  # the weights are handed in apart
    case = tmp_path / "input" / "images" / "color-fundus-image"
    case.mkdir(parents=True)
    shutil.copy2(paths[2], case / "2a0f8e3c-9c1d.png")
    for d in (tmp_path / "input", tmp_path / "input" / "images", case):
        d.chmod(0o755)
    out = writable(tmp_path / "output")
    proc = docker("run", "--rm", "--network", "none", "-v", f"{tmp_path / 'input'}:/input:ro", "-v", f"{out}:/output",
                  "-v", f"{bundle}:/opt/ml/model:ro", tag)
    assert proc.returncode == 0, proc.stderr
    value = json.loads((out / "results.json").read_text())  # the class probabilities, by class
    expected = naive.probabilities(bundle, [paths[2]])[0]
    assert value == pytest.approx({"0": expected[0], "1": expected[1]}, abs=1e-6)
    no_model = docker("run", "--rm", "--network", "none", "-v", f"{tmp_path / 'input'}:/input:ro", "-v",
                      f"{out}:/output", tag)
    assert no_model.returncode == 3 and "upload the model tarball" in no_model.stderr


def test_aicrowd_runs_it_with_its_variables(packed, test_data, tmp_path):
    folder, paths, _ = test_data
    tag, bundle = packed["aicrowd"]
    shared = writable(tmp_path / "shared")
    proc = docker("run", "--rm", "--network", "none", "-v", f"{folder}:/test_images:ro", "-v", f"{shared}:/shared",
                  "-e", "AICROWD_IS_GRADING=True", "-e", "AICROWD_TEST_IMAGES_PATH=/test_images",
                  "-e", "AICROWD_PREDICTIONS_OUTPUT_PATH=/shared/predictions.csv", tag)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(pd.read_csv(shared / "predictions.csv")["target"],
                               naive.probabilities(bundle, paths)[:, 1], atol=2e-6)


@pytest.mark.parametrize("name", ["evalai", "aicrowd", "aisg", "grand-challenge"])
def test_validate_replays_each_platform(packed, test_data, tmp_path, name):
    folder, _, sample = test_data
    tag, bundle = packed[name]
    model = bundle if platforms.get(name).weights_apart else None
    report = validate(ValidateRequest(image=tag, data=folder, platform=name, model=model,
                                      sample=sample if name in ("evalai", "aicrowd") else None))
    failed = {c.name: c.detail for c in report.checks if not c.passed and c.level != "warning"}
    assert report.passed, failed
    assert report.projection is not None


def test_validate_names_a_failure_in_the_platforms_own_words(packed, test_data, client, module_docker_cleanup):
    """An image packed for the generic contract writes /output/submission.csv, which EvalAI never reads."""
    folder, _, sample = test_data
    tag, _ = packed["aicrowd"]
    report = validate(ValidateRequest(image=tag, data=folder, platform="evalai", sample=sample))
    failed = {c.name: c.detail for c in report.checks if not c.passed and c.level == "error"}
    assert "CSV not found" in failed and "evalai says: 'submission.json/submission.csv not found.'" in failed["CSV not found"]
    with pytest.raises(ConfigError, match="holds no weights: the platform extracts them at /opt/ml/model; pass --model"):
        validate(ValidateRequest(image=packed["grand-challenge"][0], data=folder, platform="grand-challenge"))


def test_export_writes_the_archive_and_the_model_tarball(packed, tmp_path, client):
    """The archive of the small base image (the code path is the same for any image; a 5 GB one takes minutes)."""
    from builder.export.archive import export_image
    from submission.manifest import load_manifest

    _, bundle = packed["grand-challenge"]
    done = export_image(client, BASE, platforms.get("grand-challenge"), bundle, load_manifest(bundle), tmp_path / "out")
    archive, tarball = done.files
    with gzip.open(archive) as raw, tarfile.open(fileobj=raw) as tar:
        names = tar.getnames()
        assert "manifest.json" in names  # docker save's archive, which `docker load` reads
        assert json.loads(tar.extractfile("manifest.json").read())[0]["RepoTags"] == [BASE]
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == sorted(m.weights.path for m in load_manifest(bundle).models)
    with pytest.raises(BuilderError, match="over the platform's cap of .*nothing was written"):
        image_archive(client, BASE, tmp_path / "small.tar.gz", cap=1000)
    assert not (tmp_path / "small.tar.gz").exists() and not list(tmp_path.glob(".small*"))
