"""The host's Python environment: the runtime's packages, and the installed versions of any package and of all
it depends on. The image pins exactly these (``image.lock``); pack tells the user's code's needs from them.

torch (with timm and safetensors) is there for the eager models only: a bundle whose models all run on an engine,
whose albumentations transforms do not end in a torch tensor and whose preprocessing functions import none of it,
gets an environment without torch (``torch_reasons`` says why not, otherwise).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from builder.errors import BuilderError
from submission.manifest import ENGINES, Code, Manifest, resolve_path

EAGER_PACKAGES = ("torch", "timm", "safetensors")  # what only eager models need (``submission.models.eager``)
RUNTIME_PACKAGES = (*EAGER_PACKAGES, "numpy", "pillow", "pandas")  # what `submission` imports


def _imports(path: Path, module: str) -> set[str]:
    """The absolute names of the modules a Python file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the module's package (to the package itself, in its __init__.py)
                package = module.split(".")[: -node.level + (path.name == "__init__.py") or None]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _code_imports_torch(code: Code, bundle: Path) -> str:
    """The first of the code's own modules, from its entry module through what they import of each other, that
    imports torch, timm or safetensors ("" when none does)."""
    root = resolve_path(bundle, code.root)
    own = {}
    for ref in code.files:
        relative = Path(ref.path).relative_to(code.root)
        if relative.suffix == ".py":
            parts = relative.with_suffix("").parts
            own[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = root / relative
    todo, seen = [code.module], set()
    while todo:
        module = todo.pop()
        if module in seen or module not in own:
            continue
        seen.add(module)
        for name in _imports(own[module], module):
            if name.split(".")[0] in EAGER_PACKAGES:
                return str(Path(code.root) / own[module].relative_to(root))
            todo.extend(n for n in (name, name.rpartition(".")[0]) if n in own)
    return ""


def torch_reasons(manifest: Manifest, bundle: Path) -> list[str]:
    """Why the bundle's environment needs torch; none when every model runs on an engine and its preprocessing
    runs without torch."""
    reasons = [f"model {m.name!r} runs on torch" for m in manifest.models if m.engine == "torch"]
    for m in manifest.models:
        pre = m.preprocess
        if pre.albumentations is not None and "ToTensor" in json.dumps(pre.albumentations):
            reasons.append(f"the albumentations transform of {m.name!r} ends in a torch tensor (ToTensorV2)")
        where = _code_imports_torch(pre.function, bundle) if pre.function is not None else ""
        if where:
            reasons.append(f"the preprocessing function of {m.name!r} imports torch, timm or safetensors ({where})")
    return list(dict.fromkeys(reasons))


def bundle_packages(manifest: Manifest, bundle: Path) -> tuple[str, ...]:
    """What a bundle's environment installs: the runtime's packages (torch, timm and safetensors only where
    ``torch_reasons`` gives a reason), albumentations when a model uses it, the engines its models run on, and what
    the user's code needs."""
    models = manifest.models
    runtime = RUNTIME_PACKAGES if torch_reasons(manifest, bundle) else \
        tuple(p for p in RUNTIME_PACKAGES if p not in EAGER_PACKAGES)
    extras = ("albumentations",) if any(m.preprocess.albumentations for m in models) else ()
    extras += tuple(dict.fromkeys(ENGINES[m.engine] for m in models if m.engine != "torch"))
    return runtime + extras + tuple(r.split("==")[0] for r in manifest.requirements)


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
