"""A bundle -> what a platform that runs code takes (Codabench, DrivenData, Dacon): one zip whose root holds the
platform's entry script and files, and ``model/``: the bundle, the runtime package (``submission/``, the same code
the image runs), the versions it was packed with, and a check of its own (``submission.hosted``).

The check's images are generated here, at the models' input size, and predicted here by the same function the
exported code calls at start; their probabilities go in the export, so that another environment that predicts them
differently fails before it writes a CSV. The zip is written reproducibly (sorted entries, fixed times) and
atomically.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import submission
from builder.environment import bundle_packages, host_version
from builder.errors import ConfigError
from builder.export.archive import Exported
from builder.pack.metadata import generated_metadata
from builder.platforms.base import Platform
from submission import hosted
from submission.atomic import atomic_path
from submission.manifest import Manifest
from submission.runner import Options, probabilities

CHECK_IMAGES = 4
EPOCH = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest time: the same bytes on every machine

SCRIPT = '''"""The packed ensemble, run by {title}: model/ holds the bundle, the runtime (submission/), the versions it was
packed with and a check; see the README of submission-builder."""
import sys
from pathlib import Path

MODEL = Path(__file__).resolve().parent / "model"
sys.path.insert(0, str(MODEL))

from submission.hosted import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(MODEL, sys.argv[1:]))
'''


def pins(manifest: Manifest, bundle: Path) -> dict[str, str]:
    """{distribution: version} of what the bundle's environment installs, as this machine has them."""
    return {name: host_version(name) for name in bundle_packages(manifest, bundle)}


def _check(model: Path, manifest: Manifest, metadata_rows: pd.DataFrame | None) -> None:
    """The check's images at the models' input size (with their metadata rows, for models that take metadata), and
    their probabilities as this environment predicts them."""
    images = model / hosted.CHECK / "images"
    images.mkdir(parents=True)
    height = max(m.preprocess.size[0] for m in manifest.models)
    width = max(m.preprocess.size[1] for m in manifest.models)
    rng = np.random.default_rng(0)
    for i in range(CHECK_IMAGES):  # smooth gradients and noise: what resizing and cropping change, both
        ramp = np.linspace(0, 255, width + 24 * i)[None, :, None] * np.linspace(0.2, 1.0, height + 16 * i)[:, None, None]
        noise = rng.normal(0, 40, (height + 16 * i, width + 24 * i, 3))
        pixels = np.clip(ramp + noise + [60 * i, 0, 120], 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"check_{i}.png")
    metadata = None
    if manifest.metadata is not None:
        metadata = model / hosted.CHECK / hosted.CHECK_METADATA
        generated_metadata(manifest, [f"check_{i}" for i in range(CHECK_IMAGES)], metadata_rows).to_csv(
            metadata, index=False)
    ids, probs = probabilities(images, model / hosted.BUNDLE,
                               Options(ignore_sample=True, quiet=True, workers=0, devices="cpu", metadata=metadata))
    (model / hosted.CHECK / "probabilities.json").write_text(
        json.dumps({"ids": ids, "probabilities": probs.tolist()}) + "\n")


def write_model(bundle: Path, manifest: Manifest, model: Path, say: Callable[[str], None],
                metadata_rows: pd.DataFrame | None = None) -> dict[str, str]:
    """The export's ``model/`` folder: the bundle, the runtime package, the pins and the check; the pins.
    ``metadata_rows``: a few rows of the training metadata, for the check of models that take metadata."""
    meta = manifest.metadata
    if meta is not None and meta.encoder is not None and (metadata_rows is None or not len(metadata_rows)):
        raise ConfigError("the export checks itself on images of its own, and the metadata encoder has no rows to "
                          "run on for them: pack with --train-metadata")
    shutil.copytree(bundle, model / hosted.BUNDLE)
    shutil.copytree(Path(submission.__file__).parent, model / "submission",
                    ignore=lambda folder, names: [n for n in names if n == "__pycache__" or n.endswith(".pyc")])
    pinned = pins(manifest, bundle)
    (model / hosted.PINS).write_text(json.dumps(pinned, indent=2, sort_keys=True) + "\n")
    say(f"checking the export on {CHECK_IMAGES} images of its own")
    _check(model, manifest, metadata_rows)
    return pinned


def _zip(root: Path, out: Path) -> int:
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            name = path.relative_to(root).as_posix() + ("/" if path.is_dir() else "")
            info = zipfile.ZipInfo(name, EPOCH)
            info.external_attr = (0o40755 if path.is_dir() else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, b"" if path.is_dir() else path.read_bytes())
    return out.stat().st_size


def export_code(bundle: Path, manifest: Manifest, platform: Platform, out: Path,
                say: Callable[[str], None] = lambda line: None, metadata_rows: pd.DataFrame | None = None) -> Exported:
    """The platform's zip, written into the folder ``out``."""
    layout = platform.code
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="submission-export-") as tmp:
        root = Path(tmp) / "root"
        pinned = write_model(bundle, manifest, root / "model", say, metadata_rows)
        (root / layout.script).write_text(SCRIPT.format(title=platform.title))
        for name, text in layout.files.items():
            (root / name).write_text(text)
        if layout.requirements:
            (root / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(pinned.items())))
        archive = out / layout.archive
        size = _zip(root, archive)
    return Exported((archive,), {archive.name: size}, (f"{archive.name}: {platform.hand_in}",))
