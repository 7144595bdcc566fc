"""``builder validate`` on a real engine: one tiny misbehaving image per failure mode, each with its own
report; then pack -> validate with labels on a trained example, scoring above chance."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builder.cli import app
from builder.image.engine import load_image
from builder.image.layers import ImageSpec, write_layer
from builder.validate.report import ValidateRequest, validate
from builder.validate.run import parse_duration
from submission.manifest import IMAGE_BUNDLE_DIR, FileRef, ModelSpec
from tests.browser import CHROMIUM, Browser
from tests.bundles import manifest, preprocess
from tests.conftest import BASE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
IDS = ["001", "002", "003"]
SAMPLE = "id,label\n" + "".join(f"{i},0\n" for i in IDS)
GOOD_CSV = "id,label\n" + "".join(f"{i},class_1\n" for i in IDS)

BEHAVIOURS = {
    "good": f"open('/output/submission.csv', 'w').write({GOOD_CSV!r}); print('wrote /output/submission.csv (3 rows, 2 columns) in 0.5s')",
    "slow": f"import time; time.sleep(65); open('/output/submission.csv', 'w').write({GOOD_CSV!r})",
    "writes_nothing": "print('done')",
    "bad_header": "open('/output/submission.csv', 'w').write('ID,prediction\\n001,class_1\\n002,class_1\\n003,class_1\\n')",
    "sleeps": "import time; time.sleep(120)",
    "network": "import urllib.request; urllib.request.urlopen('https://huggingface.co/timm/resnet50/resolve/main/model.safetensors', timeout=5)",
    "exits_nonzero": "import sys; print('CUDA error: something broke', file=sys.stderr); sys.exit(3)",
}


def fake_image(client, tag: str, script: str, tmp: Path) -> str:
    """A submission-shaped image (manifest and sample inside) whose entrypoint runs ``script``."""
    model = ModelSpec(name="fold0", source="timm", arch="test_resnet", code=None, kwargs={"num_classes": 3}, output=None,
                      takes_metadata=False, weights=FileRef("weights/fold0.safetensors", "0" * 64), weight=1.0,
                      preprocess=preprocess(32))
    m = manifest((model,), fmt="label")
    files = {
        "/app/entry.py": script.encode(),
        f"{IMAGE_BUNDLE_DIR}/manifest.json": m.to_json().encode(),
    }
    layer = write_layer("fake", files, tmp / f"{tag}.tar")
    image = ImageSpec.of(client.images.get(BASE).attrs).plus([layer], {
        "Entrypoint": ["python3", "/app/entry.py"], "Cmd": ["/data"], "User": "10001:10001", "Env": ["PATH=/usr/bin:/bin"]})
    load_image(client, image, [layer], f"{tag}:latest")
    return f"{tag}:latest"


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("validate-data")
    for i in IDS:
        Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "sample_submission.csv"
    path.write_text(SAMPLE)
    return path


@pytest.fixture
def run(client, docker_cleanup, tmp_path, test_folder, sample):
    def run_one(behaviour, **kwargs):
        image = docker_cleanup(fake_image(client, f"validate-{behaviour.replace('_', '-')}", BEHAVIOURS[behaviour], tmp_path))
        report = validate(ValidateRequest(image=image, data=test_folder, sample=sample, **kwargs))
        return report, {c.name: c.detail for c in report.checks if not c.passed and c.level == "error"}

    return run_one


def test_a_good_run_passes(run):
    report, failed = run("good", time_limit=60)
    assert report.passed, failed
    assert report.run.exit_code == 0 and not report.run.timed_out
    assert report.projection["expected_rows"] == 3


def test_without_a_time_limit_a_long_run_is_waited_for(run):
    report, failed = run("slow")  # longer than one 60 s wait
    assert report.passed, failed
    assert not report.run.timed_out and report.run.exit_code == 0 and report.run.seconds > 60


def test_writes_nothing(run):
    report, failed = run("writes_nothing")
    assert list(failed) == ["CSV not found"] and "wrote no submission" in failed["CSV not found"]


def test_bad_header(run):
    _, failed = run("bad_header")
    assert "wrong columns" in failed and "missing ['id', 'label']" in failed["wrong columns"]


def test_sleeps_past_the_limit(run):
    report, failed = run("sleeps", time_limit=parse_duration("5s"))
    assert report.run.timed_out and report.run.seconds < 60
    assert failed["timeout"] == "stopped at the time limit of 5s"


def test_tries_the_network(run):
    report, failed = run("network")
    assert report.run.network_attempted
    assert "tried to reach the network" in failed["network access"]
    assert "exit code" in failed


def test_exits_non_zero(run):
    report, failed = run("exits_nonzero")
    assert report.run.exit_code == 3
    assert "exited with code 3" in failed["exit code"] and "CUDA error: something broke" in failed["exit code"]


@pytest.fixture(scope="module")
def tiny(client, module_docker_cleanup, tmp_path_factory) -> Path:
    """The tiny example's trained folds, packed as the image validate-tiny; returns its folder."""
    folder = tmp_path_factory.mktemp("tiny")
    subprocess.run([sys.executable, str(ROOT / "examples" / "tiny" / "make_runs.py"), str(folder)], check=True,
                   capture_output=True)
    packed = CliRunner().invoke(app, [
        "pack", "--models", str(folder / "runs"), "--config", str(folder / "pack.yaml"),
        "--sample-submission", str(folder / "sample_submission.csv"), "--base-image", BASE, "--tag", module_docker_cleanup("validate-tiny:latest"),
        "--html", str(folder / "pack.html")])
    assert packed.exit_code == 0, packed.output
    for path in [folder, folder / "test", *(folder / "test").iterdir()]:
        path.chmod(0o755)
    return folder


def test_pack_then_validate_with_labels_scores_above_chance(tiny, tmp_path):
    result = CliRunner().invoke(app, [
        "validate", "validate-tiny", "--data", str(tiny / "test"), "--labels", str(tiny / "test_labels.csv"),
        "--time-limit", "10m", "--memory", "4g", "--cpus", "2", "--report", str(tmp_path / "report.json"),
        "--html", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["run"]["exit_code"] == 0
    assert report["score"]["metric"] == "accuracy" and report["score"]["value"] > 0.6  # chance: 1/3
    assert report["run"]["peak_memory_bytes"] > 0
    assert "score: accuracy =" in result.output
    split = report["time_split"]  # the runtime's own figures, start-up the rest of the container's run
    assert list(split) == ["startup", "decode", "forward", "merge", "write"] and split["forward"] > 0
    assert sum(split.values()) == pytest.approx(report["run"]["seconds"])
    assert split["startup"] > split["write"]  # the interpreter, torch and the models load in every run


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed")
def test_the_pages_of_a_real_pack_and_run_open_in_a_browser(tiny, tmp_path):
    result = CliRunner().invoke(app, [
        "validate", "validate-tiny", "--data", str(tiny / "test"), "--labels", str(tiny / "test_labels.csv"),
        "--time-limit", "10m", "--no-log", "--html", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    with Browser() as browser:
        run = browser.open(tmp_path / "report.html", ("#verdict", "#time svg", "#limits td"))
        pack = browser.open(tiny / "pack.html", ("#verdict", "#layers svg", "#slim", "#folds h3"))
    for opened in (run, pack):
        assert opened.errors == [] and all(u.startswith(("file:", "data:")) for u in opened.requests)
    assert run.dom["#verdict"] == "passed" and run.dom["#time svg"] is not None and run.dom["#limits td"] == "platform"
    assert pack.dom["#verdict"] == "built" and pack.dom["#layers svg"] is not None
    assert "left out what inference never loads" in pack.dom["#slim"] and pack.dom["#folds h3"] == "fold0"
    layers = re.findall(r"<tr><td>(environment: [^<]+|weights|[^<]*code[^<]*)</td><td class=\"num\">([^<]+)</td>",
                        (tiny / "pack.html").read_text())
    assert [name for name, _ in layers][:4] == ["environment: system", "environment: CUDA libraries",
                                                "environment: torch", "environment: packages"]
    assert all(size != "not recorded" for _, size in layers)


def test_a_held_out_folder_with_ignore_sample(tiny, tmp_path):
    """The same image validated on another folder (a held-out split) with that folder's sample and labels."""
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    labels = (tiny / "test_labels.csv").read_text().splitlines()[:11]  # header and ten images
    ids = [line.split(",")[0] for line in labels[1:]]
    for image_id in ids:
        (held_out / f"{image_id}.png").write_bytes((tiny / "test" / f"{image_id}.png").read_bytes())
    (tmp_path / "held_labels.csv").write_text("\n".join(labels) + "\n")
    (tmp_path / "held_sample.csv").write_text("id,label\n" + "".join(f"{i},blue\n" for i in ids))
    for path in (tmp_path, held_out, *held_out.iterdir()):
        path.chmod(0o755)
    common = ["validate", "validate-tiny", "--data", str(held_out), "--sample-submission",
              str(tmp_path / "held_sample.csv"), "--labels", str(tmp_path / "held_labels.csv"), "--no-log"]
    stale = CliRunner().invoke(app, common)
    assert stale.exit_code == 1 and "sample differs" in stale.output
    result = CliRunner().invoke(app, [*common, "--ignore-sample"])
    assert result.exit_code == 0, result.output
    assert "score: accuracy =" in result.output
