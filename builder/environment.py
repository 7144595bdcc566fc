"""The host's Python environment: the runtime's packages, and the installed versions of any package and of all
it depends on. The image pins exactly these (``image.lock``); pack tells the user's code's needs from them."""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from builder.errors import BuilderError
from submission.manifest import ENGINES, Manifest

RUNTIME_PACKAGES = ("torch", "timm", "numpy", "pillow", "safetensors", "pandas")  # what `submission` imports


def bundle_packages(manifest: Manifest) -> tuple[str, ...]:
    """What a bundle's environment installs: the runtime's packages, albumentations when a model uses it, the
    engines its models run on, and what the user's code needs."""
    models = manifest.models
    extras = ("albumentations",) if any(m.preprocess.albumentations for m in models) else ()
    extras += tuple(dict.fromkeys(ENGINES[m.engine] for m in models if m.engine != "torch"))
    return RUNTIME_PACKAGES + extras + tuple(r.split("==")[0] for r in manifest.requirements)


def host_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise BuilderError(
            f"{name} is not installed on this machine; install the version you trained with, so that the image "
            "can pin it"
        ) from None


def host_pins(packages: Iterable[str]) -> dict[str, str]:
    """``packages`` and everything they depend on that is installed here, as {canonical name: version}.

    A dependency whose installed version does not meet what a package here requires of it (an environment
    that ``pip check`` would fault, e.g. a venv's own old setuptools under torch) is left to pip to resolve
    within those requirements: pinning it would make the lock unsolvable."""
    pins: dict[str, str] = {}
    wanted: dict[str, list[Requirement]] = {}
    todo = [canonicalize_name(p) for p in packages]
    for name in todo:
        host_version(name)
    while todo:
        name = todo.pop()
        if name in pins:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this host does not have: pip resolves it
        pins[name] = dist.version
        for text in dist.requires or ():
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
                wanted.setdefault(canonicalize_name(req.name), []).append(req)
    unmet = {name for name, version in pins.items()
             if any(not req.specifier.contains(version, prereleases=True) for req in wanted.get(name, ()))}
    return {name: version for name, version in sorted(pins.items()) if name not in unmet}
