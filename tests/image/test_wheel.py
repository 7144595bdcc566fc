"""The builder installed from a wheel, outside the checkout, packs an image: everything it needs ships in the wheel."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BASE
from tests.runs import mixed_runs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_wheel_installed_in_a_fresh_venv_packs_an_image(client, tmp_path, docker_cleanup):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("submission_builder-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # torch, timm, docker, ... come from this interpreter's site-packages as a plain path entry: its .pth files
    # (among them the editable install of this checkout) are not run, so `builder` can only come from the wheel
    (Path(purelib) / "host.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    where = subprocess.run([str(python), "-c", "import builder, submission; print(builder.__file__, submission.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert all(p.startswith(purelib) for p in where.split()), where

    mixed_runs(tmp_path / "runs", img_size=48)
    tag = docker_cleanup("wheel-test:latest")
    proc = subprocess.run([str(venv / "bin" / "builder"), "pack", "--models", str(tmp_path / "runs"), "--base-image",
                           BASE, "--tag", tag], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "smoke run: 3 images" in proc.stderr and f"built {tag}" in proc.stdout
