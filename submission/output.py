"""The files a run writes: the submission CSV and JSON reports, atomically, after checking the folder early."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from submission.atomic import atomic_path
from submission.errors import OutputError


def write_csv(table: pd.DataFrame, path: Path, decimals: int) -> None:
    """Write the table as UTF-8 (no BOM) with LF line ends, atomically: a failure leaves ``path`` as it was."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format=f"%.{decimals}f", lineterminator="\n", encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write the submission to {path}: {e}") from None


def write_json(data: object, path: Path) -> None:
    """Write ``data`` as JSON, atomically."""
    try:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from None


def check_writable(path: Path) -> None:
    """Fail before any model is loaded when the output cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise OutputError(
            f"cannot write to {path.parent} ({e.strerror or e}) as uid {os.getuid()}; mount a folder this user may "
            "write there (docker run --user \"$(id -u):$(id -g)\" ..., or chmod a+w on the host), or pass --out"
        ) from None
    if path.is_dir():
        raise OutputError(f"--out {path} is a folder; give the path of the CSV file to write")


def problems_path_for(out: Path) -> Path:
    """``/output/submission.csv`` -> ``/output/submission.problems.json``."""
    return Path(out).with_name(Path(out).stem + ".problems.json")
