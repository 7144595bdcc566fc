"""``builder base``: a local Python base image made with debootstrap, for machines that cannot pull one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

from builder.errors import BuilderError, DockerError

DEFAULT_BASE_TAG = "submission-base:bookworm"
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
