"""Base image + pinned wheelhouse -> the environment image, every layer written by the builder, cached by content.

The environment is four layers on the base, bottom first, in the order they change:
1. ``system``: the venv's links and ``pyvenv.cfg``, the ``submission`` user (changes with the base only);
2. ``CUDA libraries``: the ``nvidia-*`` and ``cuda-*`` wheels, about 3 GB (changes with torch's CUDA build);
3. ``torch``: torch and torchvision, about 1 GB (changes with torch's version);
4. ``packages``: timm, numpy, pandas, Pillow and the rest, tens of MB (changes with any pin or the user's code's
   requirements).
A registry stores layers by digest and an engine by chain, so a new pin re-uploads only the last layer and a new
torch the last two. Being written like the bundle's layers (``builder.image.layers``), the same base image ID
and the same lock give the same environment image ID on any machine, and it is cached as
``submission-env:<key>`` by exactly those inputs. Unless ``full``, what inference never loads is left out
(``builder.image.slim``); the list is in the image at ``/opt/venv/LEFT-OUT``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
from packaging.utils import canonicalize_name

from builder.errors import BuilderError
from builder.image.base import Base, probe
from builder.image.engine import load_image, local_image
from builder.image.layers import ImageSpec, Layer, tree_files, write_layer
from builder.image.lock import Lock, cache_dir, wheelhouse
from builder.image.slim import LIBRARY_DISTS, UNUSED_DISTS, Dropped, is_elf, slim, unresolved
from builder.image.venv import PYTHON, UID, VENV, compile_bytecode, install_wheels, skeleton

ENV_REPOSITORY = "submission-env"
GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (  # layers of packages, bottom first
    ("CUDA libraries", lambda name: name.startswith(("nvidia-", "cuda-"))),
    ("torch", lambda name: name in ("torch", "torchvision", "triton")),
    ("packages", lambda name: True),
)
ENV = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "TORCH_HOME": "/tmp/.cache/torch",
    "HF_HUB_OFFLINE": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
USER = f"{UID}:{UID}"
LEFT_OUT = f"{VENV}/LEFT-OUT"
# The code that writes the environment: a change to it is a change to the environment's recipe.
RECIPE = ("env.py", "layers.py", "slim.py", "venv.py")

Log = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


@dataclass(frozen=True)
class EnvImage:
    tag: str  # submission-env:<key>
    spec: ImageSpec  # its layers and config; spec.id is its image ID
    key: str  # the digest of what it is made from: base image ID, lock, full or slim, the recipe
    lock: Lock
    base: Base
    layers: tuple[str, ...]  # the names of the layers it adds to the base, bottom first
    full: bool  # nothing left out
    left_out: dict[str, int]  # bytes left out, by why
    built: bool  # False when it was found already built
    layer_sizes: tuple[int, ...] = ()  # bytes of each of ``layers``' tars


def env_key(base: Base, lock: Lock, full: bool) -> str:
    recipe = hashlib.sha256(b"".join(Path(__file__).with_name(name).read_bytes() for name in RECIPE)).hexdigest()
    data = json.dumps({"base": base.id, "lock": lock.requirements(), "full": full, "recipe": recipe})
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def env_image(
    client: docker.DockerClient, base_name: str, packages: tuple[str, ...], *, full: bool = False,
    load: bool = True, log: Log = _quiet, say: Log = _quiet,
) -> EnvImage:
    """The environment image for the base ``base_name`` and the host's versions of ``packages``: found in the
    engine, or written and loaded; with ``load`` False, written only to hash (what ``builder verify`` rebuilds)."""
    base = probe(client, base_name)
    wheels, lock = wheelhouse(packages, base.python, log)
    key = env_key(base, lock, full)
    tag = f"{ENV_REPOSITORY}:{key}"
    existing = local_image(client, tag) if load else None
    if existing is not None:
        labels = existing.attrs["Config"].get("Labels") or {}
        return EnvImage(tag, ImageSpec.of(existing.attrs), key, lock, base,
                        tuple(json.loads(labels.get("submission.env.layers", "[]"))), full,
                        json.loads(labels.get("submission.env.left-out", "{}")), built=False,
                        layer_sizes=tuple(json.loads(labels.get("submission.env.layer-sizes", "[]"))))

    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="staging-") as tmp:
        work = Path(tmp)
        say(f"installing {len(lock.wheels)} wheels for Python {base.version} of {base_name}")
        trees = install_wheels(wheels, lock, base.python, work / "trees")
        dropped = [] if full else slim({d: _files(t) for d, t in trees.items()},
                                       [canonicalize_name(p) for p in packages])
        for d in dropped:
            d.path.unlink()
        _check_loadable(trees, base)
        compile_bytecode(client, base, trees, work / "trees")
        layers, spec = _write(base, key, trees, dropped, full, work / "layers" if load else None)
        env = EnvImage(tag, spec, key, lock, base, tuple(layer.name for layer in layers), full, _by_reason(dropped), True,
                       tuple(layer.size for layer in layers))
        if load:
            say(f"environment image {tag}: expecting image ID {spec.id}")
            load_image(client, spec, layers, tag)
    return env


def _files(tree: Path) -> list[Path]:
    return [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()]


def _by_reason(dropped: Iterable[Dropped]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dropped:
        what = d.dist if d.reason in UNUSED_DISTS.values() else d.reason
        out[what] = out.get(what, 0) + d.size
    return dict(sorted(out.items()))


def _check_loadable(trees: dict[str, Path], base: Base) -> None:
    """Every library a package loads finds what it needs: in the environment, the base image, or the driver."""
    files = [p for t in trees.values() for p in _files(t)]
    roots = [p for d, t in trees.items() if not d.startswith(LIBRARY_DISTS) for p in _files(t) if is_elf(p)]
    missing = unresolved(files, roots, base.sonames)
    if missing:
        lines = "\n".join(f"  {str(p).split('site-packages/', 1)[-1]} needs {name}" for p, name in missing[:20])
        raise BuilderError(
            f"some libraries of the environment need libraries that neither it nor the base image {base.name} has:\n"
            f"{lines}\ninstall them in the base image (apt-get install in a Dockerfile FROM it), or choose a "
            "package build that bundles them (for OpenCV: opencv-python-headless)"
        )


def _write(base: Base, key: str, trees: dict[str, Path], dropped: list[Dropped], full: bool,
           out: Path | None) -> tuple[list[Layer], ImageSpec]:
    """The environment's layers (written to ``out``, or only hashed) and its image spec."""
    groups: dict[str, dict] = {name: {} for name, _ in GROUPS}
    for dist, tree in sorted(trees.items()):
        group = next(name for name, belongs in GROUPS if belongs(dist))
        groups[group].update(tree_files(tree))
    groups["packages"][LEFT_OUT] = "".join(
        f"{d.path.relative_to(trees[d.dist]).as_posix()}\t{d.size}\t{d.reason}\n"
        for d in sorted(dropped, key=lambda d: str(d.path.relative_to(trees[d.dist])))
    ).encode()
    if out is not None:
        out.mkdir(parents=True)
    contents = [("system", skeleton(base))] + [(name, files) for name, files in groups.items() if files]
    layers = [write_layer(name, files, None if out is None else out / f"{i}.tar")
              for i, (name, files) in enumerate(contents)]
    env = [e for e in base.spec.config.get("Env", []) if e.split("=", 1)[0] not in ENV]
    labels = {
        **(base.spec.config.get("Labels") or {}),
        "submission.base.id": base.id,
        "submission.env.key": key,
        "submission.env": "full" if full else "slim",
        "submission.env.layers": json.dumps([layer.name for layer in layers]),
        "submission.env.layer-sizes": json.dumps([layer.size for layer in layers]),
        "submission.env.left-out": json.dumps(_by_reason(dropped), sort_keys=True),
    }
    config = {"Env": env + [f"{k}={v}" for k, v in ENV.items()], "Cmd": [PYTHON], "User": USER, "Labels": labels}
    return layers, base.spec.plus(layers, config)
