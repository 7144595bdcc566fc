"""Host environment -> the pinned runtime dependencies and a wheelhouse of them, each wheel pinned by sha256.

The image gets the exact versions found on the host (where the models were trained and checked): torch,
timm, numpy, pillow, safetensors, pandas (and albumentations when a fold uses it), with every dependency
of theirs that the host has installed pinned too. ``pip download`` fetches wheels for the image's Python
and platform once; the wheelhouse is cached by what it was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging import tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from builder.environment import host_pins
from builder.errors import BuilderError
from submission.manifest import sha256_file

LOCK_NAME = "requirements.lock"


def cache_dir() -> Path:
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    root = os.environ.get("SUBMISSION_BUILDER_CACHE") or xdg / "submission-builder"
    return Path(root)


@dataclass(frozen=True)
class Lock:
    python: str  # "3.11": the image's Python
    pins: tuple[tuple[str, str], ...]  # (name, version) asked for: the runtime packages and their host deps
    wheels: tuple[tuple[str, str, str, str], ...]  # (name, version, file name, sha256) of every wheel to install

    def requirements(self) -> str:
        """pip's hash-checking requirements file: one ``name==version --hash=sha256:...`` line per wheel."""
        return "".join(f"{n}=={v} --hash=sha256:{h}\n" for n, v, _, h in self.wheels)

    def versions(self, names: Iterable[str]) -> dict[str, str]:
        installed = {n: v for n, v, _, _ in self.wheels}
        return {n: installed[canonicalize_name(n)] for n in names if canonicalize_name(n) in installed}


def _platforms() -> list[str]:
    """This machine's manylinux/linux platform tags, most specific first (the image runs on such a host)."""
    return list(dict.fromkeys(tags.platform_tags()))


def wheelhouse(
    packages: tuple[str, ...], python: str, log: Callable[[str], None] = lambda line: None
) -> tuple[Path, Lock]:
    """Download (once) the wheels of ``packages`` pinned to the host's versions, for ``python`` on Linux."""
    pins = host_pins(packages)
    platforms = _platforms()
    key_data = json.dumps({"pins": pins, "python": python, "platforms": platforms, "top": sorted(packages)})
    key = hashlib.sha256(key_data.encode()).hexdigest()[:16]
    folder = cache_dir() / "wheelhouse" / key
    lock_file = folder / "lock.json"
    if lock_file.is_file():
        data = json.loads(lock_file.read_text())
        return folder, Lock(data["python"], tuple(map(tuple, data["pins"])), tuple(map(tuple, data["wheels"])))

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}."))
    try:
        constraints = staging / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
        top = [f"{canonicalize_name(p)}=={pins[canonicalize_name(p)]}" for p in packages]
        command = [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
            "--dest", str(staging), "--constraint", str(constraints),
            "--python-version", python, "--implementation", "cp",
            *[arg for p in platforms for arg in ("--platform", p)],
            *top,
        ]
        log("$ " + " ".join(command))
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = []
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            log(line.rstrip())
        if proc.wait() != 0:
            tail = "".join(output[-15:])
            raise BuilderError(
                f"pip could not download the runtime dependencies for Python {python} on Linux:\n{tail}\n"
                "A package index must be reachable for the first pack; later packs reuse the wheelhouse in "
                f"{cache_dir()}"
            )
        constraints.unlink()
        wheels = []
        for path in sorted(staging.glob("*.whl")):
            name, version, _, _ = parse_wheel_filename(path.name)
            wheels.append((str(name), str(version), path.name, sha256_file(path)))
        lock = Lock(python, tuple(pins.items()), tuple(sorted(wheels)))
        (staging / LOCK_NAME).write_text(lock.requirements())
        data = {"python": lock.python, "pins": lock.pins, "wheels": lock.wheels}
        (staging / "lock.json").write_text(json.dumps(data, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder, lock
