"""The user's code frozen in the bundle (a model factory, a metadata encoder) -> the function or class it names,
imported from the bundle only.

Each frozen code is imported as the package ``_submission_code_<digest>`` (the digest of its files), so two
versions of a ``model.py`` in one ensemble never collide, and nothing is taken from the host's ``sys.path``.
Competition code imports its own files by plain names (``from utils import GeM``, ``import layers``): while the
code is imported and its factory runs, such names resolve to the frozen files of that code, then the aliases are
removed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.util
import sys
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from submission.errors import BundleError
from submission.manifest import Code, resolve_path

PREFIX = "_submission_code_"


def package_name(code: Code) -> str:
    digest = hashlib.sha256("\n".join(f"{f.path} {f.sha256}" for f in code.files).encode()).hexdigest()[:16]
    return PREFIX + digest


def _top_level_names(root: Path) -> set[str]:
    """The module and package names directly in ``root``."""
    names = {p.stem for p in root.glob("*.py")}
    names |= {p.name for p in root.iterdir() if p.is_dir() and any(p.rglob("*.py"))}
    return names


class _Existing(importlib.abc.Loader):
    """Hands out an already imported module under another name."""

    def __init__(self, module: types.ModuleType):
        self.module = module

    def create_module(self, spec: Any) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _Aliases(importlib.abc.MetaPathFinder):
    """``import utils`` -> the frozen code's ``utils``, imported as ``<package>.utils``."""

    def __init__(self, package: str, names: set[str]):
        self.package, self.names = package, names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] not in self.names:
            return None
        module = importlib.import_module(f"{self.package}.{fullname}")
        return importlib.util.spec_from_loader(fullname, _Existing(module), is_package=hasattr(module, "__path__"))


def where_in(error: BaseException, root: Path) -> str:
    """The last place in the frozen code that a traceback passes through: "model.py line 12"."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).is_relative_to(root)]
    if not frames:
        return ""
    last = frames[-1]
    return f"{Path(last.filename).relative_to(root)} line {last.lineno}"


@contextlib.contextmanager
def imported(code: Code, bundle: Path) -> Iterator[types.ModuleType]:
    """The code's module; within the context its files' plain names resolve to its own files."""
    root = resolve_path(bundle, code.root)
    package = package_name(code)
    if package not in sys.modules:
        module = types.ModuleType(package)
        module.__path__ = [str(root)]
        module.__file__ = None
        sys.modules[package] = module
    names = _top_level_names(root)
    shadowed = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] in names}  # host modules
    finder = _Aliases(package, names)
    sys.meta_path.insert(0, finder)
    before = set(sys.modules)
    try:
        try:
            module = importlib.import_module(f"{package}.{code.module}")
        except ModuleNotFoundError as e:
            raise BundleError(f"importing {code.module} from the frozen code fails at {where_in(e, root) or 'import'}: "
                              f"{e}") from e
        except Exception as e:
            raise BundleError(f"importing {code.module} from the frozen code fails at {where_in(e, root) or 'import'}: "
                              f"{type(e).__name__}: {e}") from e
        yield module
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in names:
                del sys.modules[name]
        sys.modules.update(shadowed)


def attribute(module: types.ModuleType, code: Code) -> Any:
    """``code.attribute`` of ``module`` (dotted for nested attributes), or an error listing what it holds."""
    value: Any = module
    for part in code.attribute.split("."):
        if not hasattr(value, part):
            callables = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                               and getattr(v, "__module__", None) == module.__name__)
            defined = ", ".join(callables) or "nothing callable"
            raise BundleError(f"{code.module} has no {code.attribute!r}; it defines: {defined}")
        value = getattr(value, part)
    if not callable(value):
        raise BundleError(f"{code.module}.{code.attribute} is a {type(value).__name__}, not a function or class")
    return value
