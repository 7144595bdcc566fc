"""Bundle -> the submission image: a cached environment image, then layers the builder writes itself.

1. Environment image: the top-level Dockerfile on BASE_IMAGE with the pinned wheelhouse, tagged
   ``submission-env:<content key>`` (base image ID + lock + Dockerfile) and built only when missing.
2. Submission image: two layers on top, written byte for byte reproducibly (``builder.image.layers``): the weights
   (their own layer, reused when only code or settings change), then the runtime code, manifest and sample.
   The config (entrypoint, labels, fixed ``created``) is written here too and the result loaded with
   ``docker load``: the same inputs on the same environment image give the same image ID.
3. A smoke run of the image as a platform runs it (no network, read-only root, a few generated images).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import numpy as np
import pandas as pd
import requests
from docker.errors import APIError, DockerException
from PIL import Image

import submission
from builder import __version__
from builder.environment import RUNTIME_PACKAGES
from builder.errors import DockerError
from builder.image.engine import local_image, run_container
from builder.image.layers import Layer, image_config, write_layer, write_load_archive
from builder.image.lock import LOCK_NAME, Lock, wheelhouse
from submission.manifest import IMAGE_BUNDLE_DIR, MANIFEST_NAME, Manifest, sha256_file

ENV_REPOSITORY = "submission-env"
# The environment's Dockerfile: in the checkout a link to the top-level Dockerfile, in a wheel a copy of it.
DOCKERFILE = Path(__file__).with_name("Dockerfile")
STAGE_LABEL = "submission.build-stage"  # marks the Dockerfile's install stage, removed after each build
CODE_DIR = "/opt/submission/code"
PYTHON = "/opt/venv/bin/python"

Log = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


def base_python(client: docker.DockerClient, base: str) -> str:
    """The ``major.minor`` of the base image's python3."""
    try:
        out = client.containers.run(
            base, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            network_mode="none", remove=True, stdout=True, stderr=True,
        )
    except (APIError, DockerException) as e:
        raise DockerError(f"cannot run python3 in the base image {base}: {e}") from None
    version = out.decode().strip()
    if not re.fullmatch(r"\d+\.\d+", version):
        raise DockerError(f"cannot tell the Python version of the base image {base} (it printed {version!r})")
    return version


@dataclass(frozen=True)
class EnvImage:
    tag: str
    id: str
    key: str  # content key: base image ID + lock + Dockerfile
    lock: Lock
    base: str  # the base image as named
    base_id: str
    built: bool  # False when it was found already built


def ensure_env_image(
    client: docker.DockerClient, base: str, packages: tuple[str, ...], log: Log = _quiet
) -> EnvImage:
    """The environment image for ``base`` and the host's versions of ``packages``, built if missing."""
    base_image = local_image(client, base)
    if base_image is None:
        raise DockerError(
            f"the base image {base!r} is not present locally, and images are never pulled by pack: "
            f"run `docker pull {base}` where a registry is reachable, or make a local base with "
            "`builder base` and pass --base-image submission-base:bookworm"
        )
    python = base_python(client, base)
    wheels, lock = wheelhouse(packages, python, log)
    recipe = DOCKERFILE.read_text(encoding="utf-8")
    key = hashlib.sha256("\n".join([base_image.id, lock.requirements(), recipe]).encode()).hexdigest()[:16]
    tag = f"{ENV_REPOSITORY}:{key}"
    existing = local_image(client, tag)
    if existing is not None:
        return EnvImage(tag, existing.id, key, lock, base, base_image.id, built=False)

    with tempfile.TemporaryDirectory(prefix="submission-env-") as context:
        context_dir = Path(context)
        (context_dir / "Dockerfile").write_text(recipe, encoding="utf-8")
        (context_dir / "wheels").mkdir()
        for name in [w[2] for w in lock.wheels] + [LOCK_NAME]:
            _link_or_copy(wheels / name, context_dir / "wheels" / name)
        lines: list[str] = []
        try:
            for chunk in client.api.build(
                path=str(context_dir), tag=tag, buildargs={"BASE_IMAGE": base}, rm=True, forcerm=True,
                pull=False, decode=True, labels={"submission.env.key": key, "submission.base.id": base_image.id},
            ):
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        lines.append(line)
                        log(line)
                if "error" in chunk:
                    tail = "\n".join(lines[-20:])
                    raise DockerError(f"building the environment image failed: {chunk['error']}\n{tail}")
        except (APIError, requests.RequestException) as e:
            raise DockerError(f"building the environment image failed: {e}") from None
        finally:  # the install stage is left untagged by the build; nothing else refers to it
            client.images.prune(filters={"dangling": True, "label": f"{STAGE_LABEL}=install"})
    image = client.images.get(tag)
    return EnvImage(tag, image.id, key, lock, base, base_image.id, built=True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


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
    id: str
    size: int  # bytes, as the engine reports it
    layers: tuple[Layer, ...]  # the layers written here: weights, then code + manifest + sample
    labels: dict[str, str]


def build_submission_image(
    client: docker.DockerClient, env: EnvImage, bundle: Path, manifest: Manifest, tag: str
) -> SubmissionImage:
    """Add the bundle and the runtime code to the environment image and load the result as ``tag``."""
    tag = full_tag(tag)
    parent = client.images.get(env.id).attrs
    bundle = Path(bundle)
    weights = {f"{IMAGE_BUNDLE_DIR}/{m.weights.path}": bundle / m.weights.path for m in manifest.models}
    rest: dict[str, Path | bytes] = {f"{IMAGE_BUNDLE_DIR}/{MANIFEST_NAME}": bundle / MANIFEST_NAME}
    for ref in manifest.files:  # the sample and the user's frozen code
        if f"{IMAGE_BUNDLE_DIR}/{ref.path}" not in weights:
            rest[f"{IMAGE_BUNDLE_DIR}/{ref.path}"] = bundle / ref.path
    rest.update(runtime_files())

    manifest_sha = sha256_file(bundle / MANIFEST_NAME)
    pins = env.lock.versions(RUNTIME_PACKAGES + ("albumentations",) + tuple(r.split("==")[0] for r in manifest.requirements))
    labels = {
        **(parent["Config"].get("Labels") or {}),
        "submission.manifest.sha256": manifest_sha,
        "submission.builder.version": __version__,
        "submission.pins": json.dumps(pins, sort_keys=True),
        "submission.python": env.lock.python,
    }
    env_vars = [v for v in parent["Config"].get("Env") or [] if not v.startswith("PYTHONPATH=")]
    config = {
        "Env": env_vars + [f"PYTHONPATH={CODE_DIR}"],
        "Entrypoint": [PYTHON, "-m", "submission"],
        "Cmd": ["/data"],
        "User": parent["Config"].get("User") or "10001:10001",
        "WorkingDir": "/opt/submission",
        "Labels": labels,
    }
    with tempfile.TemporaryDirectory(prefix="submission-image-") as tmp:
        work = Path(tmp)
        layers = (write_layer(weights, work / "weights.tar"), write_layer(rest, work / "code.tar"))
        config_bytes = image_config(parent, layers, config)
        archive = work / "image.tar"
        image_id = write_load_archive(archive, config_bytes, parent["RootFS"]["Layers"], list(layers), tag)
        try:
            with open(archive, "rb") as f:
                client.images.load(f)
        except (DockerException, requests.RequestException) as e:
            raise DockerError(f"docker load of the submission image failed: {e}") from None
    image = client.images.get(tag)
    if image.id != image_id:
        raise DockerError(f"the engine tagged {image.id} as {tag}, expected {image_id}")
    return SubmissionImage(tag, image.id, int(image.attrs.get("Size", 0)), layers, labels)


@dataclass(frozen=True)
class SmokeRun:
    seconds: float
    rows: int
    log: str


def _smoke_metadata(manifest: Manifest, ids: list[str], rows: pd.DataFrame | None) -> pd.DataFrame:
    """Metadata rows for the smoke images: the training metadata's first rows, or the declared columns' fills."""
    meta = manifest.metadata
    if rows is not None and len(rows):
        table = pd.concat([rows] * len(ids), ignore_index=True).head(len(ids))
    else:
        table = pd.DataFrame({c.name: [c.categories[0] if c.kind == "categorical" else c.fill if c.kind == "numeric"
                                       else "group"] * len(ids) for c in meta.columns})
    return table.assign(**{meta.id_column: ids})


def smoke_run(client: docker.DockerClient, tag: str, manifest: Manifest, timeout: float = 600,
              metadata_rows: pd.DataFrame | None = None) -> SmokeRun:
    """Run the image on three generated images the way graders run it (``engine.run_container``), with a metadata
    file beside them when the models take one (``metadata_rows``: a few rows of the training metadata)."""
    height = max(m.preprocess.size[0] for m in manifest.models)
    width = max(m.preprocess.size[1] for m in manifest.models)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="submission-smoke-") as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "output"
        data.mkdir()
        out.mkdir()
        for folder in (Path(tmp), data):
            folder.chmod(0o755)
        out.chmod(0o777)  # the image runs as a non-root user
        for i in range(3):
            pixels = rng.integers(0, 256, (height + 16 * i, width + 8 * i, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / f"smoke_{i}.png")
            (data / f"smoke_{i}.png").chmod(0o644)
        if manifest.metadata is not None and manifest.metadata.file:
            path = data / manifest.metadata.file
            path.parent.mkdir(parents=True, exist_ok=True)
            _smoke_metadata(manifest, [f"smoke_{i}" for i in range(3)], metadata_rows).to_csv(path, index=False)
            path.chmod(0o644)
        run = run_container(client, tag, ["/data", "--ignore-sample", "--out", "/output/smoke.csv"], data, out,
                            time_limit=timeout)
        tail = "\n".join(run.log.splitlines()[-40:])[-3000:]
        if run.timed_out:
            raise DockerError(f"the smoke run of {tag} took longer than {timeout:.0f}s and was stopped")
        if run.exit_code != 0:
            raise DockerError(f"the smoke run of {tag} exited with code {run.exit_code}:\n{tail}")
        csv = out / "smoke.csv"
        rows = len(pd.read_csv(csv)) if csv.is_file() else 0
        if rows != 3:
            raise DockerError(f"the smoke run of {tag} wrote {rows} rows for 3 images:\n{tail}")
    return SmokeRun(seconds=run.seconds, rows=rows, log=tail)
