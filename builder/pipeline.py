"""``builder pack`` as one library call across the wings: the checked bundle (pack), the images (image), the smoke run."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.environment import RUNTIME_PACKAGES
from builder.pack.bundle import Bundle, PackRequest, make_bundle
from builder.pack.folds import Fold

if TYPE_CHECKING:
    from builder.image.assemble import EnvImage, SmokeRun, SubmissionImage

Phase = Callable[[str], AbstractContextManager]


def default_base() -> str:
    """The official slim Python image of the host's Python minor version."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim-bookworm"


def _no_phase(name: str) -> AbstractContextManager:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class PackResult:
    bundle: Bundle
    env: EnvImage | None = None  # None with bundle_only
    image: SubmissionImage | None = None
    smoke: SmokeRun | None = None


def pack(
    request: PackRequest,
    *,
    tag: str,
    base_image: str,
    bundle_dir: Path | None = None,
    bundle_only: bool = False,
    phase: Phase = _no_phase,
    log: Callable[[str], None] = lambda line: None,
    on_fold: Callable[[Fold], None] | None = None,
) -> PackResult:
    """Check every fold and write the bundle (to ``bundle_dir``, else a temporary folder); unless
    ``bundle_only``, build the image ``tag`` on ``base_image`` and smoke-run it."""
    if bundle_only:
        if bundle_dir is None:
            raise ValueError("bundle_only needs bundle_dir")
        with phase("checking folds"):
            return PackResult(make_bundle(request, bundle_dir, on_fold))

    from builder.image import assemble as images  # Docker is needed from here on only
    from builder.image.engine import connect

    client = connect()  # before the long checks: fail fast when there is no engine
    with tempfile.TemporaryDirectory(prefix="submission-bundle-") as tmp:
        with phase("checking folds"):
            bundle = make_bundle(request, bundle_dir or Path(tmp) / "bundle", on_fold)
        extras = ("albumentations",) if any(m.preprocess.albumentations for m in bundle.manifest.models) else ()
        extras += tuple(r.split("==")[0] for r in bundle.manifest.requirements)
        with phase(f"environment image on {base_image}"):
            env = images.ensure_env_image(client, base_image, RUNTIME_PACKAGES + extras, log)
        with phase(f"writing the layers of {tag}"):
            image = images.build_submission_image(client, env, bundle.path, bundle.manifest, tag)
        with phase(f"smoke run of {tag}"):
            smoke = images.smoke_run(client, tag, bundle.manifest, metadata_rows=bundle.metadata_rows)
    return PackResult(bundle, env, image, smoke)
