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
from tests.bundles import make_images

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
    path, bundle = exported(name)
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
    assert pins == {n: metadata.version(n) for n in bundle_packages(load(path), bundle)}  # the packing machine's
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


def test_a_model_that_takes_metadata_is_exported_and_checked_with_metadata_of_its_own(tmp_path):
    """ISIC's layout (the metadata CSV beside the test folder), on Dacon's relative paths: the check runs its own
    images with metadata rows from the training metadata, and the export alone writes the runtime's CSV."""
    from tests.naive import FIXTURES
    from tests.pack.test_code import models_of, save_folds
    from tests.pack.test_real_cases import META_COLUMNS, isic_metadata

    kwargs = {"enet_type": "test_efficientnet", "out_dim": 2, "n_meta_features": 6}
    runs = save_folds(tmp_path / "runs", models_of("isic_meta.py", "Effnet_Melanoma", n=2, **kwargs))
    isic_metadata([f"t{i}" for i in range(20)], seed=1).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "pack.yaml").write_text(json.dumps({"metadata_columns": META_COLUMNS}))
    request = PackRequest(models=runs, config=tmp_path / "pack.yaml", options={
        "platform": "dacon", "model_code": f"{FIXTURES}/isic_meta.py:Effnet_Melanoma", "model_kwargs": json.dumps(kwargs),
        "train_metadata": tmp_path / "train.csv", "metadata_file": "../test.csv", "img_size": "48",
        "metadata_id_column": "image_name"})
    result = pack(request, tag="unused", base_image="unused", bundle_dir=tmp_path / "bundle", export_to=tmp_path / "out")
    archive = result.exported.files[0]
    with zipfile.ZipFile(archive) as z:
        assert "model/check/metadata.csv" in z.namelist()
    work = unpack(archive, tmp_path / "work")
    ids = [p.stem for p in make_images(work / "data" / "test", n=5)]
    isic_metadata(ids).to_csv(work / "data" / "test.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-I", "script.py", "--ignore-sample"], cwd=work, capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "check: the bundle's check images as at packing" in run.stderr
    direct = subprocess.run([sys.executable, "-m", "submission", str(work / "data" / "test"), "--bundle",
                             str(tmp_path / "bundle"), "--out", str(tmp_path / "direct.csv"), "--quiet",
                             "--ignore-sample"], cwd=ROOT, capture_output=True, text=True)
    assert direct.returncode == 0, direct.stderr
    assert (work / "submission.csv").read_bytes() == (tmp_path / "direct.csv").read_bytes()


@pytest.mark.parametrize("yaml_text, why", [
    ("command: [python3, run.py\n", "metadata.yaml is not YAML"),
    ("description: my model\n", "metadata.yaml has no command: line"),
])
def test_a_codabench_zip_whose_metadata_names_no_command_fails_its_layout(exported, tmp_path, yaml_text, why):
    from builder import platforms
    from builder.validate.exported import open_export

    archive, _ = exported("codabench")
    spoilt = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(spoilt, "w") as target:
        for item in source.infolist():
            data = yaml_text.encode() if item.filename == "metadata.yaml" else source.read(item)
            target.writestr(item, data)
    opened = open_export(spoilt, platforms.get("codabench"), tmp_path / "open")
    layout = [c for c in opened.checks if c.name == "export layout"]
    assert len(layout) == 1 and not layout[0].passed and why in layout[0].detail
