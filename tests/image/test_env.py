"""The environment image the builder writes itself: a venv as ``python -m venv`` makes it, wheels unpacked without
pip's noise, the same layers from caches filled apart, and nothing left behind."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import zipfile
from pathlib import Path

import pytest

from builder.errors import BuilderError
from builder.image.env import ENV, USER, env_image
from builder.image.layers import Link
from builder.image.lock import Lock, cache_dir
from builder.image.venv import PYTHON, install_wheels, skeleton
from tests.conftest import BASE

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_dockerfile_sets_the_builders_env_and_user():
    text = (ROOT / "Dockerfile").read_text()
    block = re.search(r"^ENV (.*?)\n(?=USER)", text, re.S | re.M).group(1)
    pairs = dict(p.split("=", 1) for p in re.findall(r"(\w+=\S+)", block))
    assert pairs == ENV
    assert re.search(r"^USER (\S+)$", text, re.M).group(1) == USER


def _base(passwd: str):
    from builder.image.base import Base
    from builder.image.layers import ImageSpec

    return Base("b", "sha256:" + "0" * 64, ImageSpec("amd64", "linux", ()), "3.11", "3.11.2", "/usr/local/bin/python3.11",
                frozenset(), passwd, "root:x:0:\n")


def test_the_venv_skeleton_is_what_python_m_venv_makes_and_the_user_is_added_once():
    files = skeleton(_base("root:x:0:0:root:/root:/bin/bash"))
    assert files["/opt/venv/pyvenv.cfg"] == b"home = /usr/local/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n"
    assert files["/opt/venv/bin/python"] == Link("/usr/local/bin/python3.11")
    assert files["/opt/venv/bin/python3"] == files["/opt/venv/bin/python3.11"] == Link("python")
    assert files["/opt/venv/lib64"] == Link("lib")
    assert files["/etc/passwd"] == b"root:x:0:0:root:/root:/bin/bash\nsubmission:x:10001:10001::/tmp:/usr/sbin/nologin\n"
    assert files["/etc/group"] == b"root:x:0:\nsubmission:x:10001:\n"
    again = skeleton(_base(files["/etc/passwd"].decode()))
    assert again["/etc/passwd"] == files["/etc/passwd"]


def _wheel(folder: Path) -> Path:
    entries = {
        "demo/__init__.py": b"def main():\n    return 0\n",
        "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "demo-1.0.dist-info/entry_points.txt": b"[console_scripts]\ndemo = demo:main\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in entries.items()) + "demo-1.0.dist-info/RECORD,,\n"
    path = folder / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**entries, "demo-1.0.dist-info/RECORD": record.encode()}.items():
            z.writestr(name, data)
    return path


def test_wheels_are_unpacked_without_installer_noise_and_scripts_name_the_venv(tmp_path):
    wheel = _wheel(tmp_path)
    lock = Lock("3.11", (("demo", "1.0"),), (("demo", "1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest()),))
    trees = install_wheels(tmp_path, lock, "3.11", tmp_path / "staging")
    site = trees["demo"] / "opt/venv/lib/python3.11/site-packages"
    assert sorted(p.name for p in (site / "demo-1.0.dist-info").iterdir()) == ["METADATA", "RECORD", "WHEEL", "entry_points.txt"]
    assert not list(trees["demo"].rglob("__pycache__"))  # bytecode is compiled later, by the base image's Python
    script = trees["demo"] / "opt/venv/bin/demo"
    assert script.read_text().splitlines()[0] == f"#!{PYTHON}" and script.stat().st_mode & 0o111


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    wheel = _wheel(tmp_path)
    lock = Lock("3.11", (("demo", "1.0"),), (("demo", "1.0", wheel.name, "0" * 64),))
    with pytest.raises(BuilderError, match=r"demo-1.0-py3-none-any.whl is missing or is not the one its lock pins"):
        install_wheels(tmp_path, lock, "3.11", tmp_path / "staging")


@pytest.mark.slow
def test_two_wheelhouses_filled_apart_give_the_same_layers_byte_for_byte(client, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    made = []
    for name in ("first", "second"):
        monkeypatch.setenv("SUBMISSION_BUILDER_CACHE", str(tmp_path / name))
        made.append(env_image(client, BASE, ("pyyaml", "six"), load=False))
        assert list((tmp_path / name / "wheelhouse").iterdir())  # each downloaded its own wheels
    assert made[0].layers == ("system", "packages")
    assert made[0].spec.diff_ids == made[1].spec.diff_ids and made[0].spec.id == made[1].spec.id


@pytest.mark.slow
def test_a_new_environment_image_runs_compiled_and_leaves_nothing_behind(client, docker_cleanup, tmp_path,
                                                                         monkeypatch):
    """Other tests use the engine meanwhile: what this build could leave is looked for by its own marks (containers
    of its base, images with its key, staging folders in its own cache)."""
    monkeypatch.setenv("SUBMISSION_BUILDER_CACHE", str(tmp_path / "cache"))
    container = client.containers.run(BASE, ["sh", "-c", f"echo {time.time_ns()} > /fresh"], detach=True,
                                      network_mode="none")
    container.wait()
    base = docker_cleanup("env-test-base:latest")
    fresh = container.commit(repository=base.split(":")[0], tag="latest")  # a base never seen: its environment is new
    container.remove()
    env = env_image(client, base, ("pyyaml",))
    docker_cleanup(env.tag)
    assert env.built and client.images.get(env.tag).id == env.spec.id
    assert not client.containers.list(all=True, filters={"ancestor": fresh.id})
    assert [i.id for i in client.images.list(filters={"label": f"submission.env.key={env.key}"})] == [env.spec.id]
    assert not list(cache_dir().glob("staging-*"))

    out = client.containers.run(env.tag, ["python", "-v", "-c", "import os, yaml; print('uid', os.getuid())"],
                                network_mode="none", read_only=True, remove=True, stdout=True, stderr=True).decode()
    assert "uid 10001" in out
    assert re.search(r"yaml/__pycache__/__init__\.cpython-\d+\.pyc matches .*yaml/__init__\.py", out)
    labels = client.images.get(env.tag).attrs["Config"]["Labels"]
    assert labels["submission.base.id"] == client.images.get(base).id and labels["submission.env"] == "slim"
