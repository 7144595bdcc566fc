"""Exports for the platforms that run code (Codabench, DrivenData, Dacon): the archive holds exactly what the
platform reads, from the export alone it writes the CSV `python -m submission` writes on the same bundle, byte for
byte, and in an environment that predicts differently it fails on its own check before writing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from builder.environment import bundle_packages
from builder.pack.bundle import PackRequest
from builder.pipeline import pack
from submission.errors import BundleError

ROOT = Path(__file__).resolve().parents[2]
DRIFT = '''# another environment's Pillow: every resize with another filter than the one asked for
from PIL import Image

_resize = Image.Image.resize


def resize(self, size, resample=None, *args, **kwargs):
    return _resize(self, size, Image.Resampling.NEAREST, *args, **kwargs)


Image.Image.resize = resize
'''


def unpack(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as z:
        z.extractall(into)
    return into


def top_level(archive: Path) -> set[str]:
    with zipfile.ZipFile(archive) as z:
        return {name.split("/")[0] + ("/" if "/" in name else "") for name in z.namelist()}


@pytest.mark.parametrize("name, archive, root", [
    ("codabench", "submission.zip", {"metadata.yaml", "run.py", "model/"}),
    ("drivendata", "submission.zip", {"main.py", "model/"}),
    ("dacon", "submit.zip", {"model/", "script.py", "requirements.txt"}),
])
def test_each_archive_holds_exactly_what_its_platform_reads(exported, name, archive, root):
    path, _ = exported(name)
    assert path.name == archive and top_level(path) == root
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"model/bundle/manifest.json", "model/submission/__main__.py", "model/submission/hosted.py",
                "model/pins.json", "model/check/probabilities.json"} <= names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        pins = json.loads(z.read("model/pins.json"))
        manifest = json.loads(z.read("model/bundle/manifest.json"))
        assert manifest["entry"]["platform"] == name
        if name == "codabench":
            assert z.read("metadata.yaml").decode() == "command: python3 run.py\n"
        if name == "dacon":
            assert z.read("requirements.txt").decode().splitlines() == [f"{n}=={v}" for n, v in sorted(pins.items())]
    assert pins == {n: metadata.version(n) for n in bundle_packages(load(path))}  # the packing machine's
    assert {"torch", "timm", "numpy"} <= set(pins)


def load(archive: Path):
    from submission.manifest import Manifest

    with zipfile.ZipFile(archive) as z:
        return Manifest.from_dict(json.loads(z.read("model/bundle/manifest.json")))


def test_the_same_inputs_give_the_same_archive(exported, competition, tmp_path):
    first, _ = exported("drivendata")
    request = PackRequest(models=competition / "runs", options={
        "sample_submission": competition / "sample_submission.csv", "platform": "drivendata"})
    again = pack(request, tag="unused", base_image="unused", export_to=tmp_path).exported.files[0]
    assert again.read_bytes() == first.read_bytes()


def test_from_the_export_alone_with_no_arguments_it_writes_what_the_runtime_writes(exported, competition, tmp_path):
    """Dacon's paths are relative to the working directory: the script runs there with no arguments, in a fresh
    interpreter that sees neither this checkout nor PYTHONPATH (-I)."""
    archive, bundle = exported("dacon")
    work = unpack(archive, tmp_path / "work")
    (work / "data").mkdir()
    (work / "data" / "test").symlink_to(competition / "test")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-I", "script.py"], cwd=work, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "check: the bundle's check images as at packing" in run.stderr
    direct = subprocess.run([sys.executable, "-m", "submission", str(competition / "test"), "--bundle", str(bundle),
                             "--out", str(tmp_path / "direct.csv"), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert direct.returncode == 0, direct.stderr
    assert (work / "submission.csv").read_bytes() == (tmp_path / "direct.csv").read_bytes()


def test_an_environment_that_predicts_differently_fails_before_writing(exported, competition, tmp_path):
    archive, _ = exported("codabench")
    work = unpack(archive, tmp_path / "program")
    (tmp_path / "drift").mkdir()
    (tmp_path / "drift" / "sitecustomize.py").write_text(DRIFT)
    out = tmp_path / "output" / "submission.csv"
    out.parent.mkdir()
    run = subprocess.run([sys.executable, "run.py", str(competition / "test"), "--out", str(out)], cwd=work,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path / "drift")})
    assert run.returncode == BundleError.exit_code, run.stderr
    assert "predicts the bundle's own 4 check images differently from the packing run: largest probability " \
           "difference" in run.stderr and "No CSV was written" in run.stderr
    assert not out.exists() and not list(out.parent.iterdir())


def test_versions_that_differ_are_named_and_a_run_they_do_not_change_goes_on(exported, competition, tmp_path):
    archive, _ = exported("drivendata")
    work = unpack(archive, tmp_path / "code_execution")
    pins = json.loads((work / "model" / "pins.json").read_text())
    pins["timm"] = "0.9.2"
    (work / "model" / "pins.json").write_text(json.dumps(pins))
    run = subprocess.run([sys.executable, "-I", "main.py", str(competition / "test"), "--out",
                          str(work / "submission.csv")], cwd=work, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"warning: timm {metadata.version('timm')} here, packed with 0.9.2" in run.stderr
    assert (work / "submission.csv").exists()
