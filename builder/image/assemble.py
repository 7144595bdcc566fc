"""Bundle + environment image -> the submission image, its layers written by the builder, then a smoke run.

On the environment image (``builder.image.env``) go two layers, written byte for byte reproducibly
(``builder.image.layers``): the weights (their own layer, reused when only code or settings change; left out where
the platform takes them apart, as a model tarball), then the runtime code, the user's frozen code, the manifest and
the sample. The image runs with no arguments: the manifest's entry says where the platform puts the input and
wants the output. The config (entrypoint, labels, fixed
``created``) is written here too: the same inputs on the same environment give the same image ID, which is known
before ``docker load`` and checked after it. Then a smoke run of the image as a platform runs it (no network,
read-only root, a few generated images).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import numpy as np
import pandas as pd
from PIL import Image

import submission
from builder import __version__
from builder.environment import bundle_packages
from builder.errors import DockerError
from builder.image.engine import Mount, load_image, run_container
from builder.image.env import EnvImage
from builder.image.layers import ImageSpec, Layer, Source, write_layer
from builder.image.venv import PYTHON
from builder.pack.metadata import generated_metadata
from submission.manifest import IMAGE_BUNDLE_DIR, MANIFEST_NAME, Manifest, sha256_file

CODE_DIR = "/opt/submission/code"

Log = Callable[[str], None]


def runtime_files() -> dict[str, Path]:
    """The runtime package's source files, by their path in the image."""
    package = Path(submission.__file__).resolve().parent
    return {f"{CODE_DIR}/submission/{p.relative_to(package).as_posix()}": p for p in sorted(package.rglob("*.py"))}


def full_tag(tag: str) -> str:
    """``name`` -> ``name:latest``; a tag that names its version is kept."""
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


@dataclass(frozen=True)
class SubmissionImage:
    tag: str
    spec: ImageSpec  # spec.id is its image ID
    layers: tuple[Layer, ...]  # the layers written here: weights, then code + manifest + sample
    labels: dict[str, str]
    size: int = 0  # bytes, as the engine reports it once loaded


def submission_image(env: EnvImage, bundle: Path, manifest: Manifest, tag: str, out: Path | None) -> SubmissionImage:
    """The image that adds the bundle and the runtime code to ``env``: its layers written to ``out``, or only
    hashed when ``out`` is None."""
    bundle = Path(bundle)
    weights: dict[str, Source] = {f"{IMAGE_BUNDLE_DIR}/{m.weights.path}": bundle / m.weights.path for m in manifest.models}
    rest: dict[str, Source] = {f"{IMAGE_BUNDLE_DIR}/{MANIFEST_NAME}": bundle / MANIFEST_NAME}
    for ref in manifest.files:  # the sample and the user's frozen code
        if f"{IMAGE_BUNDLE_DIR}/{ref.path}" not in weights:
            rest[f"{IMAGE_BUNDLE_DIR}/{ref.path}"] = bundle / ref.path
    rest.update(runtime_files())

    parent = env.spec.config
    pins = env.lock.versions(bundle_packages(manifest, bundle))
    labels = {
        **(parent.get("Labels") or {}),
        "submission.manifest.sha256": sha256_file(bundle / MANIFEST_NAME),
        "submission.builder.version": __version__,
        "submission.pins": json.dumps(pins, sort_keys=True),
        "submission.python": env.lock.python,
        "submission.platform": manifest.entry.platform,
    }
    config = {
        "Env": [v for v in parent.get("Env") or [] if not v.startswith("PYTHONPATH=")] + [f"PYTHONPATH={CODE_DIR}"],
        "Entrypoint": [PYTHON, "-m", "submission"],
        "Cmd": [],
        "User": parent.get("User") or "10001:10001",
        "WorkingDir": "/opt/submission",
        "Labels": labels,
    }
    layers = (() if manifest.entry.weights else (write_layer("weights", weights, out and out / "weights.tar"),)) + (
        write_layer("code, manifest and sample", rest, out and out / "code.tar"),)
    return SubmissionImage(full_tag(tag), env.spec.plus(layers, config), layers, labels)


def build_submission_image(client: docker.DockerClient, env: EnvImage, bundle: Path, manifest: Manifest, tag: str,
                           say: Log = lambda line: None) -> SubmissionImage:
    """Write the submission image's layers, say its ID, ``docker load`` it as ``tag`` and check the engine agrees."""
    with tempfile.TemporaryDirectory(prefix="submission-image-") as tmp:
        image = submission_image(env, bundle, manifest, tag, Path(tmp))
        say(f"expecting image ID {image.spec.id}")
        load_image(client, image.spec, list(image.layers), image.tag)
    size = int(client.images.get(image.tag).attrs.get("Size", 0))
    return SubmissionImage(image.tag, image.spec, image.layers, image.labels, size)


@dataclass(frozen=True)
class SmokeRun:
    seconds: float
    rows: int
    log: str
    skipped: str = ""  # why it was not run (a metadata encoder with no rows to run on)


def smoke_run(client: docker.DockerClient, tag: str, manifest: Manifest, timeout: float = 600,
              metadata_rows: pd.DataFrame | None = None, bundle: Path | None = None) -> SmokeRun:
    """Run the image on three generated images the way graders run it (``engine.run_container``), in the entry's
    mode (a folder, paths on stdin, one case), with a metadata file where the manifest says (``metadata_rows``: a few
    rows of the training metadata), and the bundle's weights mounted where the platform extracts them when the image
    holds none; a metadata encoder without rows to run on cannot be run, and the smoke run says so instead."""
    meta, entry = manifest.metadata, manifest.entry
    if meta is not None and meta.encoder is not None and (metadata_rows is None or not len(metadata_rows)):
        return SmokeRun(0.0, 0, "", skipped="the metadata encoder has no rows to run on: pack with --train-metadata "
                                            "to smoke-run the image")
    height = max(m.preprocess.size[0] for m in manifest.models)
    width = max(m.preprocess.size[1] for m in manifest.models)
    rng = np.random.default_rng(0)
    cases = 1 if entry.mode == "case" else 3
    # a metadata file beside the test folder (../test.csv) needs the folder one level down in the mount
    depth = len([part for part in Path(meta.file).parts if part == ".."]) if meta is not None and meta.file else 0
    with tempfile.TemporaryDirectory(prefix="submission-smoke-") as tmp:
        mount, out = Path(tmp) / "data", Path(tmp) / "output"
        images = mount.joinpath(*[f"level{i}" for i in range(depth)])
        images.mkdir(parents=True)
        out.mkdir()
        for folder in (Path(tmp), *images.parents[: depth + 1], images):
            folder.chmod(0o755)
        out.chmod(0o777)  # the image runs as a non-root user
        names = []
        for i in range(cases):
            pixels = rng.integers(0, 256, (height + 16 * i, width + 8 * i, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"smoke_{i}.png")
            (images / f"smoke_{i}.png").chmod(0o644)
            names.append(f"smoke_{i}.png")
        folder = "/data/" + "/".join(f"level{i}" for i in range(depth)) if depth else "/data"
        result = "/output/smoke.json" if entry.mode == "case" else "/output/smoke.csv"
        args = [] if entry.mode == "stream" else [folder, "--ignore-sample", "--out", result]
        if meta is not None:
            path = (images / meta.file) if meta.file else mount / "smoke_metadata.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            generated_metadata(manifest, [f"smoke_{i}" for i in range(3)], metadata_rows).to_csv(path, index=False)
            path.chmod(0o644)
            if not meta.file:
                args += ["--metadata", "/data/smoke_metadata.csv"]
        extra = [Mount(Path(bundle), entry.weights, read_only=True)] if entry.weights and bundle else []
        stdin = "".join(f"{folder}/{n}\n" for n in names).encode() if entry.mode == "stream" else None
        run = run_container(client, tag, args, mount, out, time_limit=timeout, extra_mounts=extra, stdin=stdin)
        tail = "\n".join(run.log.splitlines()[-40:])[-3000:]
        if run.timed_out:
            raise DockerError(f"the smoke run of {tag} took longer than {timeout:.0f}s and was stopped")
        if run.exit_code != 0:
            raise DockerError(f"the smoke run of {tag} exited with code {run.exit_code}:\n{tail}")
        rows = _smoke_rows(entry.mode, run.stdout, out)
        if rows != cases:
            raise DockerError(f"the smoke run of {tag} answered {rows} of {cases} images:\n{tail}")
    return SmokeRun(seconds=run.seconds, rows=rows, log=tail)


def _smoke_rows(mode: str, stdout: str, out: Path) -> int:
    """How many images the smoke run answered: lines on stdout, a JSON value, or the CSV's rows."""
    if mode == "stream":
        return len([line for line in stdout.splitlines() if line.strip()])
    if mode == "case":
        return int((out / "smoke.json").is_file() and json.loads((out / "smoke.json").read_text()) is not None)
    return len(pd.read_csv(out / "smoke.csv")) if (out / "smoke.csv").is_file() else 0
