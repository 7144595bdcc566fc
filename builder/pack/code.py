"""The user's code (a model factory, a metadata encoder) -> frozen into the bundle, then replayed in a fresh
interpreter to learn what it imports.

``freeze`` copies every file of the module (a ``.py`` file) or the package or source folder into
``code/<digest>/`` of the bundle, each with its sha256. ``imports`` builds the model (or imports the encoder)
from that frozen copy in a new Python process that has imported only the runtime, so every module the code
needs beyond the runtime shows: the distributions that provide them are pinned into the image's environment.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

import submission
from builder.environment import RUNTIME_PACKAGES, host_pins
from builder.errors import CodeError
from submission.manifest import Code, FileRef, ModelSpec, sha256_file

SKIPPED_SUFFIXES = (".pyc", ".pth", ".pt", ".ckpt", ".safetensors", ".bin", ".onnx", ".npy", ".npz")
MAX_BYTES = 50 * 1024 * 1024  # frozen code beyond this is data or weights that do not belong in the code


@dataclass(frozen=True)
class Replay:
    """What the code did in a fresh interpreter."""

    distributions: dict[str, str] = field(default_factory=dict)  # name -> version, beyond the runtime's
    asked: list[str] = field(default_factory=list)  # pretrained weights its constructor asked for (none fetched)


def parse(value: str, source: str) -> tuple[Path, str]:
    """"path/to/model.py:build" or "folder:module.build" -> (path, factory)."""
    path, sep, factory = str(value).rpartition(":")
    if not sep or not path or not factory:
        raise CodeError(f"{source} is {value!r}; write FILE.py:FUNCTION or FOLDER:module.FUNCTION (a function or class)")
    if not Path(path).exists():
        raise CodeError(f"{source}: {path} does not exist")
    return Path(path), factory


def display(value: str) -> str:
    """How a frozen factory is named in the manifest: its file or folder's name and the attribute
    ("models.py:Net", "src:models.net.MaskNet"), never the path typed, so that the bundle does not depend on where
    the code lay."""
    path, _, attribute = str(value).rpartition(":")
    return f"{Path(path).name}:{attribute}"


def _files(path: Path) -> dict[str, Path]:
    """The files to freeze, by their path under the code's root."""
    if path.is_file():
        if path.suffix != ".py":
            raise CodeError(f"{path} is not a Python file; give a .py file or a folder")
        return {path.name: path}
    package = (path / "__init__.py").is_file()
    found = {}
    for f in sorted(path.rglob("*")):
        relative = f.relative_to(path)
        if not f.is_file() or any(p.startswith(".") or p == "__pycache__" for p in relative.parts):
            continue
        if f.name.lower().endswith(SKIPPED_SUFFIXES):
            continue
        found[(f"{path.name}/{relative.as_posix()}" if package else relative.as_posix())] = f
    size = sum(f.stat().st_size for f in found.values())
    if size > MAX_BYTES:
        largest = sorted(found.values(), key=lambda f: -f.stat().st_size)[:3]
        raise CodeError(f"the code folder {path} holds {size / 2**20:.0f} MB (largest: "
                        f"{', '.join(str(f) for f in largest)}); keep data and weights out of the code folder")
    return found


def _module_and_attribute(root: Path, factory: str, prefix: str) -> tuple[str, str]:
    """Split a dotted factory into the longest module prefix that exists under ``root``, and the attribute."""
    parts = [*prefix.split("."), *factory.split(".")] if prefix else factory.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        candidate = root.joinpath(*parts[:cut])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:cut]), ".".join(parts[cut:])
    raise CodeError(f"{factory!r} names no module under {root}; write module.FUNCTION (e.g. models.net.build)")


def freeze(value: str, source: str, bundle: Path) -> Code:
    """Copy the code of ``value`` ("FILE.py:ATTR" or "FOLDER:module.ATTR") into ``bundle/code/<digest>``."""
    path, factory = parse(value, source)
    files = _files(path)
    digest = hashlib.sha256()
    for relative, f in sorted(files.items()):
        digest.update(f"{relative}\n{sha256_file(f)}\n".encode())
    root = f"code/{digest.hexdigest()[:16]}"
    for relative, f in files.items():
        target = bundle / root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        target.chmod(0o644)
    if path.is_file():
        module, attribute = path.stem, factory
    else:
        prefix = path.name if (path / "__init__.py").is_file() else ""
        module, attribute = _module_and_attribute(bundle / root, factory, prefix)
    refs = tuple(FileRef(f"{root}/{relative}", sha256_file(bundle / root / relative)) for relative in sorted(files))
    return Code(files=refs, root=root, module=module, attribute=attribute)


_REPLAY = """
import json, sys
from pathlib import Path
request = json.loads(sys.argv[1])
import submission.runner, submission.models.eager as models
from submission.errors import BundleError
from submission.manifest import ModelSpec, Code, parse_json
import submission.code as user_code
import torch
before = set(sys.modules)
result = {"asked": []}
try:
    if request["spec"] is not None:
        spec = parse_json(ModelSpec, request["spec"], "spec")
        model = models.build(spec, Path(request["bundle"]), result["asked"]).eval()
        shape = request["input_size"]
        if shape:
            inputs = [torch.rand(2, *shape)]
            if request["meta_width"]:
                inputs.append(torch.zeros(2, request["meta_width"]))
            with torch.inference_mode():
                model(*inputs)
    else:
        code = parse_json(Code, request["code"], "code")
        with user_code.imported(code, Path(request["bundle"])) as module:
            user_code.attribute(module, code)
except Exception as e:
    result["error"] = f"{type(e).__name__}: {e}"
result["imported"] = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print("REPLAY " + json.dumps(result))
"""


def _distributions(modules: list[str], own: set[str]) -> dict[str, str]:
    """The installed distributions that provide ``modules``, leaving out the stdlib, the code's own modules and
    what the runtime's environment holds anyway."""
    providers = metadata.packages_distributions()
    runtime = host_pins(RUNTIME_PACKAGES)
    found: dict[str, str] = {}
    for module in modules:
        if module in sys.stdlib_module_names or module in own or module.startswith("_"):
            continue
        for dist in providers.get(module, []):
            name = str(canonicalize_name(dist))
            if name not in runtime:
                found[name] = metadata.version(dist)
    # a distribution that another one found declares as a dependency comes with it; an undeclared one (a 2018
    # package importing six without requiring it) stays
    return {name: version for name, version in found.items()
            if name not in host_pins([other for other in found if other != name])}


def replay(bundle: Path, code: Code, spec: ModelSpec | None = None, input_size: tuple[int, int, int] | None = None,
           meta_width: int = 0) -> Replay:
    """Build ``spec`` from ``code`` and run it on a batch of ``input_size`` (or, without a spec, import ``code``) in
    a fresh interpreter that has imported only the runtime; report the distributions it needed besides and the
    weights it asked for."""
    bundle = Path(bundle).resolve()
    request = {"bundle": str(bundle), "spec": asdict(spec) if spec else None, "code": asdict(code),
               "input_size": list(input_size) if input_size else None, "meta_width": meta_width}
    runtime = str(Path(submission.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-P", "-c", _REPLAY, json.dumps(request)], capture_output=True, text=True,
                          cwd=bundle, env={**_env(), "PYTHONPATH": runtime})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPLAY ")]
    if not lines:
        raise CodeError(f"replaying the code in a fresh interpreter failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("REPLAY "):])
    what = spec.arch if spec else f"{code.module}.{code.attribute}"
    if "error" in result:
        raise CodeError(f"{what} works in this process but not in a fresh interpreter with only the runtime imported: "
                        f"{result['error']}")
    own = {Path(f.path).relative_to(code.root).parts[0].removesuffix(".py") for f in code.files}
    return Replay(_distributions(result["imported"], own), result["asked"])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def requirement(name: str, source: str) -> tuple[str, str]:
    """A distribution the user names (``--requirements``), with the version installed here."""
    try:
        return str(canonicalize_name(name)), metadata.version(name)
    except metadata.PackageNotFoundError:
        raise CodeError(f"{name} (from {source}) is not installed here; install the version your code was trained "
                        f"with (pip install {name}), so that the image can pin it") from None
