"""A code platform's run replayed on the real engine: the Codabench export unpacked in /app/program, the data at
/app/input_data, the output under /app/output, network off, no capabilities, in an environment that is not the
pinned one (the pinned environment with another timm release from the package registry put first on the path).
The export names the difference, its check passes (the models are defined alike in both), and the CSV is the
pinned environment's byte for byte. Slow: it needs the environment image and a wheel from the package registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builder.cli import app
from builder.environment import bundle_packages
from builder.image.engine import Mount, load_image, run_container
from builder.image.env import env_image
from builder.image.layers import ImageSpec, write_layer
from builder.pack.bundle import PackRequest
from builder.pipeline import pack
from submission.manifest import load_manifest
from tests.conftest import BASE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
OTHER_TIMM = "1.0.20"  # a release with the same test_resnet as the pinned one


def other_environment(client, base_tag: str, tmp: Path, tag: str, workdir: str, also: tuple[str, ...] = ()) -> str:
    """The environment ``base_tag`` with timm OTHER_TIMM (and the packages ``also``, pip say) first on PYTHONPATH,
    run as ``python3`` in ``workdir``."""
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", f"timm=={OTHER_TIMM}", *also, "--no-deps", "-d",
                    str(wheels), "-q"], check=True, capture_output=True)
    tree = tmp / "tree"
    for path in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(path) as wheel:
            wheel.extractall(tree)
    files = {f"/opt/other/{p.relative_to(tree).as_posix()}": p for p in sorted(tree.rglob("*")) if p.is_file()}
    layer = write_layer("other timm", files, tmp / "other.tar")
    parent = client.images.get(base_tag).attrs
    config = dict(ImageSpec.of(parent).config)
    config.update(Env=[*config.get("Env", []), "PYTHONPATH=/opt/other"], WorkingDir=workdir,
                  Entrypoint=["python3"], Cmd=[])
    load_image(client, ImageSpec.of(parent).plus([layer], config), [layer], tag)
    return tag


def pinned_csv(test: Path, bundle: Path, tmp: Path) -> bytes:
    """The CSV `python -m submission` writes here, in the pinned environment."""
    pinned = tmp / "pinned.csv"
    host = subprocess.run([sys.executable, "-m", "submission", str(test), "--bundle", str(bundle), "--out", str(pinned),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert host.returncode == 0, host.stderr
    return pinned.read_bytes()


def test_the_codabench_export_runs_in_another_environment_as_in_the_pinned_one(client, module_docker_cleanup, exported,
                                                                              competition, tmp_path):
    archive, bundle = exported("codabench")
    env = env_image(client, BASE, bundle_packages(load_manifest(bundle), bundle))
    other = other_environment(client, env.tag, tmp_path, module_docker_cleanup("codabench-other:latest"), "/app/program")
    program = tmp_path / "program"
    with zipfile.ZipFile(archive) as z:
        z.extractall(program)
    command = (program / "metadata.yaml").read_text().split("command:", 1)[1].split()
    assert command[:2] == ["python3", "run.py"]
    for path in [tmp_path, *program.rglob("*"), program, competition / "test", *(competition / "test").iterdir()]:
        path.chmod(0o755)
    out = tmp_path / "output"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    run = run_container(client, other, command[1:], competition / "test", out, data_target="/app/input_data",
                        out_target="/app/output", extra_mounts=[Mount(program, "/app/program", read_only=True)],
                        time_limit=600)
    assert run.exit_code == 0, run.log
    assert f"warning: timm {OTHER_TIMM} here, packed with {metadata.version('timm')}" in run.log
    assert "check: the bundle's check images as at packing" in run.log
    assert (out / "submission.csv").read_bytes() == pinned_csv(competition / "test", bundle, tmp_path)


@pytest.fixture(scope="module")
def kaggle(competition):
    """The Kaggle export of the competition: (its folder, the bundle kept beside it)."""
    out, bundle = competition / "out-kaggle", competition / "bundle-kaggle"
    request = PackRequest(models=competition / "runs", options={
        "sample_submission": competition / "sample_submission.csv", "platform": "kaggle",
        "competition": "leaf-disease-2026", "owner": "ana"})
    result = pack(request, tag="submission", base_image="unused", bundle_dir=bundle, export_to=out)
    assert result.exported.files == tuple(out / name for name in ("wheels-dataset", "bundle-dataset", "notebook"))
    return out, bundle


def test_the_kaggle_notebook_runs_top_to_bottom_offline_in_another_environment(client, module_docker_cleanup,
                                                                              competition, kaggle, tmp_path):
    """Kaggle's layout replayed: the competition's test folder, the two datasets under /kaggle/input, the notebook's
    cells run in order by the kernel's python in /kaggle/working, in an environment with another timm (and pip):
    it installs the pinned timm, offline, and writes the pinned environment's CSV byte for byte."""
    out, bundle = kaggle
    wheels, data, notebook = (out / name for name in ("wheels-dataset", "bundle-dataset", "notebook"))
    kernel = json.loads((notebook / "kernel-metadata.json").read_text())
    assert kernel["enable_internet"] is False and kernel["competition_sources"] == ["leaf-disease-2026"]
    assert kernel["dataset_sources"] == [json.loads((d / "dataset-metadata.json").read_text())["id"]
                                         for d in (data, wheels)]
    cells = json.loads((notebook / kernel["code_file"]).read_text())["cells"]
    script = tmp_path / "src" / "notebook.py"
    script.parent.mkdir()
    script.write_text("\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))

    env = env_image(client, BASE, bundle_packages(load_manifest(bundle), bundle))
    other = other_environment(client, env.tag, tmp_path, module_docker_cleanup("kaggle-other:latest"),
                              "/kaggle/working", also=("pip",))
    for path in [tmp_path, script.parent, script, *data.rglob("*"), data, wheels, out, competition,
                 competition / "test", *(competition / "test").iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    working = tmp_path / "working"
    working.mkdir()
    working.chmod(0o777)
    root = "/kaggle/input"
    run = run_container(client, other, ["/kaggle/src/notebook.py"], competition / "test", working,
                        data_target=f"{root}/leaf-disease-2026/test", out_target="/kaggle/working", read_only=False,
                        extra_mounts=[Mount(script.parent, "/kaggle/src"),
                                      Mount(data, f"{root}/{kernel['dataset_sources'][0].split('/')[1]}"),
                                      Mount(wheels, f"{root}/{kernel['dataset_sources'][1].split('/')[1]}")],
                        time_limit=900)
    assert run.exit_code == 0, run.log
    installing = [line for line in run.log.splitlines() if line.startswith("installing ")]
    timm_line = f"installing timm {metadata.version('timm')} (here {OTHER_TIMM})"
    assert timm_line in installing, run.log
    # and only what this (slim) environment lacks altogether: nothing it holds at the pinned version
    assert all(line.endswith("(here not installed)") for line in installing if line != timm_line), run.log
    assert "warning: timm" not in run.log  # the run itself imports the pinned timm
    assert "check: the bundle's check images as at packing" in run.log
    assert (working / "submission.csv").read_bytes() == pinned_csv(competition / "test", bundle, tmp_path)
    code, output = validate(out, "kaggle", competition / "test")  # replayed in the pinned environment
    assert code == 0, output
    assert output.rstrip().endswith("passed")


def validate(export: Path, platform: str, data: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", str(export), "--platform", platform, "--data", str(data),
                                      "--base-image", BASE, "--no-log", "--time-limit", "10m", *extra])
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["codabench", "drivendata", "dacon"])  # the output apart, beside, relative
def test_validate_replays_each_zip_in_its_platforms_folders(client, exported, competition, name):
    archive, _ = exported(name)
    code, output = validate(archive, name, competition / "test")
    assert code == 0, output
    assert "export layout" in output and output.rstrip().endswith("passed")


def test_validate_fails_a_dacon_zip_with_another_top_folder_without_running_it(client, exported, competition,
                                                                             tmp_path):
    archive, _ = exported("dacon")
    spoilt = tmp_path / "submit.zip"
    shutil.copy(archive, spoilt)
    with zipfile.ZipFile(spoilt, "a") as z:
        z.writestr("notes/README.txt", "how I trained\n")
    code, output = validate(spoilt, "dacon", competition / "test", "--report", str(tmp_path / "report.json"))
    assert code == 1, output
    checks = json.loads((tmp_path / "report.json").read_text())["checks"]
    assert [c["name"] for c in checks] == ["export layout"]  # nothing was run
    assert "dacon takes exactly model/, requirements.txt, script.py at the root; also found: notes/" in checks[0]["detail"]


def test_validate_fails_a_kaggle_notebook_with_the_internet_on_without_running_it(client, competition, kaggle,
                                                                                tmp_path):
    out, _ = kaggle
    copy = tmp_path / "export"
    shutil.copytree(out, copy, copy_function=os.link)
    metadata_file = copy / "notebook" / "kernel-metadata.json"
    kernel = json.loads(metadata_file.read_text())
    metadata_file.unlink()  # a file of its own, not the export's
    metadata_file.write_text(json.dumps({**kernel, "enable_internet": True}))
    code, output = validate(copy, "kaggle", competition / "test", "--report", str(tmp_path / "report.json"))
    assert code == 1, output
    checks = json.loads((tmp_path / "report.json").read_text())["checks"]
    assert [c["name"] for c in checks] == ["export layout"]
    assert "turns the internet on: a code competition reruns the notebook offline" in checks[0]["detail"]
