"""``builder pack``, ``builder export`` and ``builder verify`` as library calls across the wings: the checked bundle
(pack), the images (image), the smoke run, what the platform takes (export), or the comparison of an image with the
one its inputs make."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder import platforms
from builder.environment import bundle_packages, torch_reasons
from builder.errors import DockerError
from builder.pack.bundle import Bundle, PackRequest, make_bundle
from builder.pack.folds import Fold
from submission.manifest import Manifest

if TYPE_CHECKING:
    from builder.export.archive import Exported
    from builder.image.assemble import SmokeRun, SubmissionImage
    from builder.image.env import EnvImage
    from builder.image.verify import Verdict

Phase = Callable[[str], AbstractContextManager]


def _no_phase(name: str) -> AbstractContextManager:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class PackResult:
    bundle: Bundle
    env: EnvImage | None = None  # None with bundle_only
    image: SubmissionImage | None = None
    smoke: SmokeRun | None = None
    exported: Exported | None = None  # what the platform takes (builder export)


def engine_lines(manifest: Manifest, bundle: Path) -> list[str]:
    """What pack says of a bundle with models on an engine: whether the environment leaves torch out (and why
    not), and, for a platform with a GPU, that the engines run on its CPU."""
    engines = list(dict.fromkeys(m.engine for m in manifest.models if m.engine != "torch"))
    if not engines:
        return []
    reasons = torch_reasons(manifest, bundle)
    lines = [f"torch stays in the environment: {'; '.join(reasons)}" if reasons else
             "every model runs on an engine: the environment leaves torch, timm and safetensors out"]
    gpus, platform = platforms.get(manifest.entry.platform).limits.gpus, manifest.entry.platform
    if gpus and manifest.entry.devices != "cpu":
        run = f"{' and '.join(engines)} run{'s' if len(engines) == 1 else ''}"
        lines.append(f"warning: the {platform} platform gives a GPU ({', '.join(gpus)}), but {run} on its CPU: the "
                     "image installs the engines' CPU builds (ONNX Runtime's CUDA provider is onnxruntime-gpu's); "
                     "pack with --engine torch to use the GPU, or --devices cpu to say the CPU is meant")
    return lines


def pack(
    request: PackRequest,
    *,
    tag: str,
    base_image: str,
    full_env: bool = False,
    bundle_dir: Path | None = None,
    bundle_only: bool = False,
    phase: Phase = _no_phase,
    log: Callable[[str], None] = lambda line: None,
    say: Callable[[str], None] = lambda line: None,
    on_fold: Callable[[Fold], None] | None = None,
    export_to: Path | None = None,
) -> PackResult:
    """Check every fold and write the bundle (to ``bundle_dir``, else a temporary folder); unless
    ``bundle_only``, build the image ``tag`` on ``base_image`` (with every file of the environment when
    ``full_env``) and smoke-run it; with ``export_to``, write there what the platform takes (for a platform that
    runs code, its zip, and no image). ``log`` gets tools' output, ``say`` what a person should see."""
    if bundle_only:
        if bundle_dir is None:
            raise ValueError("bundle_only needs bundle_dir")
        with phase("checking folds"):
            return PackResult(make_bundle(request, bundle_dir, on_fold))

    from builder.pack.resolve import said

    settings = said(request)
    platform = platforms.get(settings.platform.value)
    if export_to is not None and platform.runs_code:  # the platform runs the export's code: no image
        from builder.export.code import export_code
        from builder.export.notebook import export_notebook

        with tempfile.TemporaryDirectory(prefix="submission-bundle-") as tmp:
            with phase("checking folds"):
                bundle = make_bundle(request, bundle_dir or Path(tmp) / "bundle", on_fold, settings)
            with phase(f"writing the {platform.name} export"):
                if platform.notebook is not None:
                    exported = export_notebook(bundle.path, bundle.manifest, platform, settings, tag, export_to,
                                               say, log, bundle.metadata_rows)
                else:
                    exported = export_code(bundle.path, bundle.manifest, platform, export_to, say,
                                           bundle.metadata_rows)
        return PackResult(bundle, exported=exported)

    from builder.image import assemble as images  # Docker is needed from here on only
    from builder.image.engine import connect
    from builder.image.env import env_image

    client = connect()  # before the long checks: fail fast when there is no engine
    with tempfile.TemporaryDirectory(prefix="submission-bundle-") as tmp:
        with phase("checking folds"):
            bundle = make_bundle(request, bundle_dir or Path(tmp) / "bundle", on_fold, settings)
        with phase(f"environment image on {base_image}"):
            for line in engine_lines(bundle.manifest, bundle.path):
                say(line)
            env = env_image(client, base_image, bundle_packages(bundle.manifest, bundle.path), full=full_env, log=log,
                            say=say)
        with phase(f"writing the layers of {tag}"):
            image = images.build_submission_image(client, env, bundle.path, bundle.manifest, tag, say)
        with phase(f"smoke run of {tag}"):
            smoke = images.smoke_run(client, image.tag, bundle.manifest, metadata_rows=bundle.metadata_rows,
                                     bundle=bundle.path)
        exported = None
        if export_to is not None:
            from builder.export.archive import export_image

            with phase(f"exporting {tag} for {platform.name}"):
                exported = export_image(client, image.tag, platform, bundle.path, bundle.manifest, export_to, say)
    return PackResult(bundle, env, image, smoke, exported)


def verify(
    request: PackRequest,
    image: str,
    *,
    base_image: str | None = None,
    full_env: bool = False,
    phase: Phase = _no_phase,
    log: Callable[[str], None] = lambda line: None,
    say: Callable[[str], None] = lambda line: None,
) -> Verdict:
    """Rebuild, loading nothing, the image that ``request`` makes on ``base_image`` (by default the base that
    ``image``'s labels name by ID) and compare it with ``image`` layer by layer."""
    from builder.image.assemble import submission_image
    from builder.image.engine import connect, local_image
    from builder.image.env import env_image
    from builder.image.verify import compare

    client = connect()
    found = local_image(client, image)
    if found is None:
        raise DockerError(f"no image {image} in this engine; `docker load` it first (images are never pulled)")
    base = base_image or (found.attrs["Config"].get("Labels") or {}).get("submission.base.id")
    if not base:
        raise DockerError(f"{image} names no base image (it has no submission.base.id label): pass --base-image")
    with tempfile.TemporaryDirectory(prefix="submission-bundle-") as tmp:
        with phase("checking folds"):
            bundle = make_bundle(request, Path(tmp) / "bundle")
        with phase(f"rebuilding the environment on {base}"):
            env = env_image(client, base, bundle_packages(bundle.manifest, bundle.path), full=full_env, load=False,
                            log=log, say=say)
        with phase("rebuilding the submission layers"):
            expected = submission_image(env, bundle.path, bundle.manifest, image, None)
    names = [f"base image layer {i + 1}" for i in range(len(env.base.spec.diff_ids))]
    names += [f"environment: {n}" for n in env.layers] + [layer.name for layer in expected.layers]
    return compare(image, found.attrs, expected.spec, names)
