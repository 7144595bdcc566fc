"""The base image: ``builder base`` makes a local one with debootstrap (for machines that cannot pull one), and
``probe`` reads from any base what the environment layers are written against."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, DockerException

from builder.errors import BuilderError, DockerError
from builder.image.engine import local_image
from builder.image.layers import ImageSpec

DEFAULT_BASE_TAG = "submission-base:bookworm"


def default_base() -> str:
    """The base an image is packed on when none is named: the official slim Python image of the host's Python minor
    version."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim-bookworm"
PACKAGES = "python3,python3-venv,ca-certificates"
CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]


def make_base(client: docker.DockerClient, tag: str = DEFAULT_BASE_TAG, suite: str = "bookworm",
              mirror: str | None = None) -> str:
    """Debootstrap a minimal Debian with python3 and python3-venv, import it as ``tag``; returns the image ID."""
    if shutil.which("debootstrap") is None:
        raise BuilderError("debootstrap is not installed; install it (apt-get install debootstrap) and run again")
    if os.geteuid() != 0:
        raise BuilderError("debootstrap needs root; run `builder base` as root (for example with sudo)")
    with tempfile.TemporaryDirectory(prefix="submission-base-") as tmp:
        rootfs, archive = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        command = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(rootfs)]
        proc = subprocess.run(command + ([mirror] if mirror else []), capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuilderError(f"debootstrap failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        repository, _, name = tag.rpartition(":") if ":" in tag else (tag, "", "latest")
        try:
            client.api.import_image(src=str(archive), repository=repository, tag=name, changes=CHANGES)
        except docker.errors.APIError as e:
            raise DockerError(f"docker import of the base image failed: {e}") from None
    return client.images.get(tag).id


# Run in the base image by ``probe``: what the environment layers are written against.
PROBE = r"""
import json, os, subprocess, sys
sonames = set()
try:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    sonames.update(line.split()[0] for line in out.splitlines()[1:] if " => " in line)
except OSError:
    pass
for folder in ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"):
    for root, _, names in os.walk(folder):
        sonames.update(n for n in names if ".so" in n)
def text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
print(json.dumps({
    "python": "%d.%d" % sys.version_info[:2], "version": "%d.%d.%d" % sys.version_info[:3],
    "executable": os.path.realpath(sys.executable), "sonames": sorted(sonames),
    "passwd": text("/etc/passwd"), "group": text("/etc/group"),
}))
"""


@dataclass(frozen=True)
class Base:
    name: str  # as the user named it
    id: str  # "sha256:...": the image ID, the digest of its config
    spec: ImageSpec  # its layers and the parts of its config that the environment keeps
    python: str  # "3.11": the minor version wheels are chosen for
    version: str  # "3.11.2"
    executable: str  # the real path of its python3, which the environment's venv points at
    sonames: frozenset[str]  # the shared libraries it has, by file name
    passwd: str  # /etc/passwd and /etc/group, to which the environment adds its user
    group: str


def probe(client: docker.DockerClient, name: str) -> Base:
    """What the environment needs to know of the local base image ``name`` (never pulled)."""
    image = local_image(client, name)
    if image is None:
        raise DockerError(
            f"the base image {name!r} is not present locally, and images are never pulled by pack: "
            f"run `docker pull {name}` where a registry is reachable, or make a local base with "
            "`builder base` and pass --base-image submission-base:bookworm"
        )
    try:
        out = client.containers.run(image.id, entrypoint=["python3", "-c", PROBE], network_mode="none", remove=True,
                                    stdout=True, stderr=False)
        data = json.loads(out.decode())
    except (APIError, DockerException, ValueError) as e:
        raise DockerError(f"cannot run python3 in the base image {name}: {e}; the base needs python3 on its PATH") from None
    return Base(name, image.id, ImageSpec.of(image.attrs), data["python"], data["version"], data["executable"],
                frozenset(data["sonames"]), data["passwd"], data["group"])
