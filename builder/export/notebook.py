"""A bundle -> what a platform that reruns a notebook takes (Kaggle): two datasets and the notebook.

- ``bundle-dataset/``: ``model/`` (the bundle, the runtime package, the pins and the check, as in the code exports)
  and ``dataset-metadata.json``; a new version of it with each new pack.
- ``wheels-dataset/``: the pinned wheels for the kernel's Python with ``dataset-metadata.json``, named after the
  pins, so that it is uploaded once for every export with the same versions (3 GB with torch's CUDA libraries).
- ``notebook/``: the notebook and its ``kernel-metadata.json`` (internet off, both datasets and the competition as
  its sources, the GPU unless ``--devices cpu``). Its cells find the datasets under the input folder by their
  marker files, install offline only the pinned versions the kernel lacks, run the export in a child process
  (``submission.notebook``) and show the CSV written.

Every folder is written whole or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from builder import __version__
from builder.environment import bundle_packages
from builder.errors import ConfigError
from builder.export.archive import Exported
from builder.export.code import write_model
from builder.image.lock import wheelhouse
from builder.pack.resolve import PackSettings
from builder.platforms.base import Platform
from submission import notebook
from submission.manifest import Manifest

LICENSE = [{"name": "CC0-1.0"}]
FOLDERS = ("wheels-dataset", "bundle-dataset", "notebook")  # in the order they are uploaded


def slug(text: str) -> str:
    """A Kaggle slug: lower case letters, digits and single hyphens, 50 characters at most."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:50].strip("-")


def kaggle_owner(settings: PackSettings) -> str:
    """--owner, else $KAGGLE_USERNAME, else the user name of the Kaggle API's credentials file."""
    if settings.owner is not None:
        return settings.owner.value
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    try:
        return json.loads((folder / "kaggle.json").read_text())["username"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError("Kaggle names datasets and notebooks USER/NAME: pass --owner USER (or set "
                          f"KAGGLE_USERNAME, or keep the API's credentials in {folder / 'kaggle.json'})") from None


def _digest(folder: Path) -> str:
    """The export's id: a digest of every file of ``folder``, by path and content."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _whole(path: Path) -> Iterator[Path]:
    """A folder written beside ``path`` and put in its place on success; on failure removed, ``path`` left."""
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        tmp.chmod(0o755)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # the wheelhouse's file itself, where it is on the same filesystem
    except OSError:
        shutil.copy2(source, target)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _code(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


def _markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


FIND = '''import json
import os
import sys
from pathlib import Path

EXPORT = {export!r}  # the bundle dataset's export this notebook runs
WHEELS = {wheels!r}  # the pinned wheels it installs from
INPUT = Path({input!r})
TEST = Path({test!r})
OUT = Path({out!r})


def attached(marker, key, value, depth=4):
    """The folder under INPUT (at most depth deep, the competition's data left out) whose marker says key: value."""
    for folder, dirs, files in os.walk(INPUT):
        here = Path(folder)
        if marker in files and json.loads((here / marker).read_text()).get(key) == value:
            return here
        if here == INPUT:
            dirs[:] = [d for d in dirs if d != {competition!r}]
        if len(here.relative_to(INPUT).parts) >= depth:
            dirs.clear()
    return None


MODEL = attached({model_marker!r}, "export", EXPORT)
if MODEL is None:
    raise FileNotFoundError("no attached dataset holds export " + EXPORT + ": add the dataset {bundle} (its latest "
                            "version) to this notebook's input")
WHEEL_DIR = attached({wheels_marker!r}, "wheels", WHEELS)
if WHEEL_DIR is None:
    raise FileNotFoundError("no attached dataset holds the wheels " + WHEELS + ": add the dataset {wheel_set} to this "
                            "notebook's input")
sys.path.insert(0, str(MODEL))
print(f"bundle: {{MODEL}}")
print(f"wheels: {{WHEEL_DIR}}")
'''

INSTALL = '''from submission import notebook

SITE = notebook.install(WHEEL_DIR, Path("/tmp/pinned-packages"))
'''

RUN = '''notebook.run(MODEL, [str(TEST), "--out", str(OUT)], SITE)
'''

SHOW = '''import csv

with OUT.open(newline="") as f:
    rows = list(csv.reader(f))
print(f"{OUT}: {len(rows) - 1} rows, columns {rows[0]}")
for row in rows[1:6]:
    print(row)
'''


def notebook_json(manifest: Manifest, platform: Platform, *, export: str, wheels: str, bundle_id: str,
                  wheels_id: str, competition: str) -> dict[str, Any]:
    """The notebook (nbformat 4): what it does, in words, then its four code cells."""
    layout = platform.notebook
    entry = manifest.entry
    archs = ", ".join(sorted({m.arch for m in manifest.models}))
    about = (f"# {competition}: the packed ensemble\n\n{len(manifest.models)} model(s) ({archs}), TTA "
             f"'{manifest.tta}', packed by submission-builder {__version__}. Run all: it finds the attached datasets "
             f"`{bundle_id}` (the bundle and the runtime) and `{wheels_id}` (the pinned wheels), installs offline the "
             f"pinned versions this kernel lacks, checks the bundle on its own images, runs the ensemble on "
             f"`{entry.input}` and writes `{entry.output}`.")
    find = FIND.format(export=export, wheels=wheels, input=layout.input_root, test=entry.input, out=entry.output,
                       competition=competition, model_marker=notebook.MODEL_MARKER,
                       wheels_marker=notebook.WHEELS_MARKER, bundle=bundle_id, wheel_set=wheels_id)
    cells = [_markdown(about), _code(find), _code(INSTALL), _code(RUN), _code(SHOW)]
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                        "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def export_notebook(bundle: Path, manifest: Manifest, platform: Platform, settings: PackSettings, tag: str,
                    out: Path, say: Callable[[str], None] = lambda line: None,
                    log: Callable[[str], None] = lambda line: None,
                    metadata_rows: pd.DataFrame | None = None) -> Exported:
    """The two datasets and the notebook, written into the folder ``out``."""
    layout = platform.notebook
    if settings.competition is None:
        raise ConfigError(f"{platform.name} attaches the competition's data to the notebook by its name: pass "
                          "--competition NAME (the last part of the competition's address)")
    competition, owner = settings.competition.value, kaggle_owner(settings)
    out.mkdir(parents=True, exist_ok=True)
    with _whole(out / FOLDERS[0]) as wheels_dir:
        say(f"the pinned wheels for Python {layout.python}")
        source, lock = wheelhouse(bundle_packages(manifest, bundle), layout.python, log)
        wheels_key = source.name
        wheels_id = f"{owner}/{slug(f'submission-wheels-py{layout.python}-{wheels_key}')}"
        for _, _, file, _ in lock.wheels:
            _link(source / file, wheels_dir / file)
        _write_json(wheels_dir / notebook.WHEELS_MARKER, {
            "wheels": wheels_key, "python": layout.python,
            "files": [[name, version, file] for name, version, file, _ in lock.wheels]})
        _write_json(wheels_dir / "dataset-metadata.json", {
            "title": f"submission wheels py{layout.python} {wheels_key}", "id": wheels_id, "licenses": LICENSE})
    with _whole(out / FOLDERS[1]) as bundle_dir:
        model = bundle_dir / "model"
        write_model(bundle, manifest, model, say, metadata_rows)
        export = _digest(model)
        _write_json(model / notebook.MODEL_MARKER, {"export": export, "wheels": wheels_key})
        bundle_id = f"{owner}/{slug(f'{competition}-{tag}-bundle')}"
        _write_json(bundle_dir / "dataset-metadata.json", {
            "title": f"{competition} {tag} bundle"[:50], "id": bundle_id, "licenses": LICENSE})
    with _whole(out / FOLDERS[2]) as notebook_dir:
        name = slug(f"{competition}-{tag}")
        _write_json(notebook_dir / f"{name}.ipynb", notebook_json(
            manifest, platform, export=export, wheels=wheels_key, bundle_id=bundle_id, wheels_id=wheels_id,
            competition=competition))
        _write_json(notebook_dir / "kernel-metadata.json", {
            "id": f"{owner}/{name}", "title": name, "code_file": f"{name}.ipynb", "language": "python",
            "kernel_type": "notebook", "is_private": True, "enable_gpu": settings.devices.value != "cpu",
            "enable_tpu": False, "enable_internet": False, "dataset_sources": [bundle_id, wheels_id],
            "competition_sources": [competition], "kernel_sources": [], "model_sources": []})
    files = tuple(out / name for name in FOLDERS)
    notes = (
        f"{FOLDERS[0]}/ once for these pins: `kaggle datasets create -p {files[0]}` (every export with the same "
        f"versions uses it; `kaggle datasets status {wheels_id}` says whether it is there)",
        f"{FOLDERS[1]}/: `kaggle datasets create -p {files[1]} --dir-mode zip` the first time, then `kaggle datasets "
        f"version -p {files[1]} --dir-mode zip -m 'new folds'`",
        f"{FOLDERS[2]}/: `kaggle kernels push -p {files[2]}`, then, once it has run, 'Submit to Competition' on its "
        "page",
    )
    return Exported(files, {f.name: _size(f) for f in files}, notes)
