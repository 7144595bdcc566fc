"""What a Kaggle notebook of an export does in its kernel, around the run: put the pinned wheels first on the run's
path where the kernel's own versions differ, then run the export in a child process (which imports the versions
installed for it, not those the kernel may hold already) with its lines shown as they come.

Only the standard library: this runs before anything is installed. The notebook finds the attached datasets
itself (by their marker files, ``MODEL_MARKER`` and ``WHEELS_MARKER``) and then imports this module from them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

MODEL_MARKER = "export.json"  # in the bundle dataset's model/ folder: {"export": id, "wheels": id}
WHEELS_MARKER = "wheels.json"  # in the wheels dataset's folder: {"wheels": id, "python": "3.11", "files": [...]}


def installed_version(name: str) -> str | None:
    """The version of the distribution ``name`` this interpreter imports, or None where it has none."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def differing(wheels: Path) -> list[tuple[str, str, str, str | None]]:
    """(name, version, wheel file, the version here or None) of each pinned wheel this kernel lacks at its version."""
    listed = json.loads((wheels / WHEELS_MARKER).read_text())
    found = [(name, version, file, installed_version(name)) for name, version, file in listed["files"]]
    return [row for row in found if row[3] != row[1]]


def _pip(files: list[Path], target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
                           "--disable-pip-version-check", "--quiet", "--target", str(target), *map(str, files)],
                          capture_output=True, text=True)


def install(wheels: Path, target: Path, say: Callable[[str], None] = print) -> Path | None:
    """Install offline, each without its dependencies (the wheels are the whole pinned set), the pinned wheels
    whose versions differ here into ``target``: the folder to put first on the run's path, or None where every
    pinned version is the kernel's own. A wheel that cannot be installed here (another Python) is said and left:
    the export's check then decides whether the kernel's own version predicts alike."""
    todo = differing(wheels)
    if not todo:
        say("every pinned version is this kernel's own: nothing to install")
        return None
    python = json.loads((wheels / WHEELS_MARKER).read_text())["python"]
    kernel = f"{sys.version_info.major}.{sys.version_info.minor}"
    if kernel != python:
        say(f"warning: the wheels are for Python {python}, this kernel runs {kernel}: its compiled ones will not install")
    if importlib.util.find_spec("pip") is None:
        say(f"warning: no pip here to install {len(todo)} pinned wheel(s): the kernel's own versions are used")
        return None
    for name, version, _, here in todo:
        say(f"installing {name} {version} (here {here or 'not installed'})")
    if target.exists():
        shutil.rmtree(target)
    files = [wheels / file for _, _, file, _ in todo]
    if _pip(files, target).returncode != 0:  # one at a time, to install what can be
        for path in files:
            proc = _pip([path], target)
            if proc.returncode != 0:
                why = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
                say(f"warning: {path.name} was not installed ({why}); the kernel's own version is used")
    return target


def run(model: Path, args: list[str], site: Path | None, say: Callable[[str], None] = print) -> None:
    """``python -m submission.hosted`` of the export's ``model`` folder with ``args`` (absolute paths), in a child
    process with ``site`` (the installed pinned wheels) first on its path, started in ``model`` (``-m`` puts the
    working folder first: any other ``submission`` folder there would be imported instead); a failed run raises,
    so that the notebook fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*([str(site)] if site else []), str(model),
                                         *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    proc = subprocess.Popen([sys.executable, "-m", "submission.hosted", *args], cwd=model, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        say(line.rstrip("\n"))
    code = proc.wait()
    if code != 0:
        raise RuntimeError(f"the run ended with exit code {code}: its lines above say why; no submission was written")
