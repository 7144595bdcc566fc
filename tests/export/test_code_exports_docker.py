"""A code platform's run replayed on the real engine: the Codabench export unpacked in /app/program, the data at
/app/input_data, the output under /app/output, network off, no capabilities, in an environment that is not the
pinned one (the pinned environment with another timm release from the package registry put first on the path).
The export names the difference, its check passes (the models are defined alike in both), and the CSV is the
pinned environment's byte for byte. Slow: it needs the environment image and a wheel from the package registry."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from builder.environment import bundle_packages
from builder.image.engine import Mount, load_image, run_container
from builder.image.env import env_image
from builder.image.layers import ImageSpec, write_layer
from submission.manifest import load_manifest
from tests.conftest import BASE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
OTHER_TIMM = "1.0.20"  # a release with the same test_resnet as the pinned one


def other_environment(client, base_tag: str, tmp: Path, tag: str) -> str:
    """The environment ``base_tag`` with timm OTHER_TIMM first on PYTHONPATH."""
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", f"timm=={OTHER_TIMM}", "--no-deps", "-d", str(wheels),
                    "-q"], check=True, capture_output=True)
    tree = tmp / "tree"
    with zipfile.ZipFile(next(wheels.glob("timm-*.whl"))) as wheel:
        wheel.extractall(tree)
    files = {f"/opt/other/{p.relative_to(tree).as_posix()}": p for p in sorted(tree.rglob("*")) if p.is_file()}
    layer = write_layer("other timm", files, tmp / "other.tar")
    parent = client.images.get(base_tag).attrs
    config = dict(ImageSpec.of(parent).config)
    config.update(Env=[*config.get("Env", []), "PYTHONPATH=/opt/other"], WorkingDir="/app/program",
                  Entrypoint=["python3"], Cmd=[])
    load_image(client, ImageSpec.of(parent).plus([layer], config), [layer], tag)
    return tag


def test_the_codabench_export_runs_in_another_environment_as_in_the_pinned_one(client, module_docker_cleanup, exported,
                                                                              competition, tmp_path):
    archive, bundle = exported("codabench")
    env = env_image(client, BASE, bundle_packages(load_manifest(bundle)))
    other = other_environment(client, env.tag, tmp_path, module_docker_cleanup("codabench-other:latest"))
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
    pinned = tmp_path / "pinned.csv"
    host = subprocess.run([sys.executable, "-m", "submission", str(competition / "test"), "--bundle", str(bundle),
                           "--out", str(pinned), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert host.returncode == 0, host.stderr
    assert (out / "submission.csv").read_bytes() == pinned.read_bytes()
