"""Wheelhouse -> the environment's virtual environment, installed by the builder into a staging tree per package.

No pip and no ``python -m venv`` run: each wheel is checked against its sha256 in the lock and unpacked by
``installer`` (no ``INSTALLER``, no ``direct_url.json``; launcher scripts name ``/opt/venv/bin/python``); the venv
itself is three links and a ``pyvenv.cfg``. Bytecode is compiled by the base image's own Python with
``unchecked-hash`` invalidation, which depends on the source alone, never on a file's mtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
from docker.errors import APIError, DockerException
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

from builder.errors import BuilderError, DockerError
from builder.image.base import Base
from builder.image.layers import Link, Source
from builder.image.lock import Lock
from submission.manifest import sha256_file

VENV = "/opt/venv"
PYTHON = f"{VENV}/bin/python"
USER = "submission"
UID = 10001


def site_packages(python: str) -> str:
    return f"{VENV}/lib/python{python}/site-packages"


def skeleton(base: Base) -> dict[str, Source]:
    """The venv around the packages (what ``python -m venv --without-pip`` makes), and the user it runs as."""
    home = base.executable.rsplit("/", 1)[0]
    passwd = base.passwd if f"\n{USER}:" in f"\n{base.passwd}" else (
        base.passwd + ("" if base.passwd.endswith("\n") or not base.passwd else "\n")
        + f"{USER}:x:{UID}:{UID}::/tmp:/usr/sbin/nologin\n")
    group = base.group if f"\n{USER}:" in f"\n{base.group}" else (
        base.group + ("" if base.group.endswith("\n") or not base.group else "\n") + f"{USER}:x:{UID}:\n")
    return {
        f"{VENV}/pyvenv.cfg": f"home = {home}\ninclude-system-site-packages = false\nversion = {base.version}\n".encode(),
        f"{VENV}/bin/python": Link(base.executable),
        f"{VENV}/bin/python3": Link("python"),
        f"{VENV}/bin/python{base.python}": Link("python"),
        f"{VENV}/lib64": Link("lib"),
        "/etc/passwd": passwd.encode(),
        "/etc/group": group.encode(),
    }


def install_wheels(wheels: Path, lock: Lock, python: str, staging: Path) -> dict[str, Path]:
    """Unpack every wheel of ``lock`` into ``staging/<name>`` as if that folder were ``/``; returns the trees."""
    def one(entry: tuple[str, str, str, str]) -> tuple[str, Path]:
        name, _, filename, sha256 = entry
        wheel = wheels / filename
        if not wheel.is_file() or sha256_file(wheel) != sha256:
            raise BuilderError(f"the wheel {wheel} is missing or is not the one its lock pins (sha256 {sha256}); "
                               f"remove the folder {wheels} and pack again to download it anew")
        root = staging / name
        destination = SchemeDictionaryDestination(
            scheme_dict={
                "purelib": site_packages(python), "platlib": site_packages(python), "scripts": f"{VENV}/bin",
                "headers": f"{VENV}/include/site/python{python}/{name}", "data": VENV,
            },
            interpreter=PYTHON, script_kind="posix", bytecode_optimization_levels=(), destdir=str(root),
        )
        with WheelFile.open(wheel) as source:
            install(source, destination, additional_metadata={})
        return name, root

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # unzip and sha256 release the GIL
        return dict(pool.map(one, lock.wheels))


COMPILE = r"""
import compileall, os, py_compile, sys
for root in sys.argv[1:]:
    compileall.compile_dir(root, quiet=2, workers=os.cpu_count(), stripdir=root, prependdir="/",
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def compile_bytecode(client: docker.DockerClient, base: Base, trees: Mapping[str, Path], staging: Path) -> None:
    """Compile every tree's ``.py`` files with the base's Python, as if each tree were ``/`` (a file that does not
    compile for this Python, such as a test module using newer syntax, is left without bytecode, as pip does)."""
    mount = "/staging"
    roots = [f"{mount}/{tree.relative_to(staging).as_posix()}" for tree in trees.values()]
    try:
        client.containers.run(
            base.id, entrypoint=["python3", "-c", COMPILE, *roots], network_mode="none", remove=True,
            user=f"{os.getuid()}:{os.getgid()}", environment={"PYTHONDONTWRITEBYTECODE": "1"},
            volumes={str(staging): {"bind": mount, "mode": "rw"}},
        )
    except (APIError, DockerException) as e:
        raise DockerError(f"compiling the environment's bytecode in {base.name} failed: {e}") from None
