"""Checkpoint pickles read without running code from the file: tensors are rebuilt as torch rebuilds them, every
other object becomes an inert placeholder that holds what the pickle gave it, as plain data.

A training run stores its settings in whatever it had at hand: an ``argparse.Namespace``, a
``types.SimpleNamespace``, an omegaconf ``DictConfig`` (Hydra), numpy scalars, a ``pathlib.Path``, an ``Enum``
of its own. None of these needs code to read: the placeholder records the constructor arguments, the state and
the items the pickle hands over, and ``plain`` turns it back into dicts, lists, strings and numbers. Nothing the
file names is ever called, except torch's tensor rebuilds, numpy's scalar and array rebuilds and builtin
containers (torch's own ``weights_only`` allowlist plus those).

A pickle that asks for a call to anything that is not the constructor of a plain-data class (``os.system``,
``subprocess.Popen``, ``builtins.eval``, a function of an installed package) is refused before the call, with
its name. Classes of modules this machine does not have (the training project's own ``Config``) stay inert: no
code for them exists here to run. A name is only ever looked up among the modules already imported, statically
(no module ``__getattr__`` runs): resolving a global never imports a module, since a module's top level is code
(``numpy.f2py.__main__`` runs f2py when imported).

Before anything is unpickled the file itself is looked at (``inspect``): it must be a regular file within
``MAX_BYTES``; a zip (torch's format) whose records hold a TorchScript program (``constants.pkl``, ``code/``) is
refused, since loading one runs its code; a tar (torch's legacy format) may hold only regular files, so a FIFO
that would block the reader for good, a device or a link that points elsewhere is refused by name, unopened.
Every read is bounded in time (``MAX_SECONDS``), and ``plain`` turns a cycle into a marker and refuses data
nested deeper than ``MAX_DEPTH`` or larger than ``MAX_NODES`` (an alias bomb).
"""

from __future__ import annotations

import _compat_pickle
import argparse
import copyreg
import datetime
import decimal
import enum
import fractions
import importlib
import importlib.util
import inspect as pyinspect
import os
import pickle
import signal
import stat
import sys
import tarfile
import threading
import time
import types
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import numpy as np
import numpy.dtypes  # noqa: F401  (numpy 2's dtype classes are looked up here, never imported on a file's say)
import torch
from torch._weights_only_unpickler import _get_allowed_globals

# Packages whose classes are plain data, imported (when installed) to tell a class from a function.
TRUSTED_PACKAGES = frozenset({
    "argparse", "collections", "datetime", "decimal", "enum", "fractions", "pathlib", "types", "typing", "uuid",
    "numpy", "omegaconf", "yaml", "torch", "timm", "lightning", "lightning_fabric", "pytorch_lightning",
})
# Classes whose rebuilding by a call (``cls(*args)``) only makes plain data.
PLAIN_CLASSES = (enum.Enum, tuple, PurePath, types.SimpleNamespace, argparse.Namespace, datetime.date,
                 datetime.time, datetime.timedelta, datetime.tzinfo, decimal.Decimal, fractions.Fraction, uuid.UUID,
                 dict, list, set, frozenset, str, int, float, bytes, complex)
_NUMPY = ("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy._core.multiarray._reconstruct",
          "numpy.core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray")
_BUILTINS = ("frozenset", "slice", "range", "dict", "list", "tuple", "int", "float", "str", "bytes", "bool")
MAX_BYTES = 32 * 2**30  # a checkpoint file, or the members of its archive together, larger than this is refused
MAX_SECONDS = 900.0  # a read of one checkpoint that takes longer is stopped
MAX_DEPTH = 100  # metadata nested deeper than this is refused
MAX_NODES = 1_000_000  # metadata of more items than this (YAML aliases can multiply them) is refused
CYCLE = "<cycle>"  # what ``plain`` makes of a value that contains itself


class Refused(pickle.UnpicklingError):
    """The pickle asks for a call that could run code: ``name`` is what it would call."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class Rejected(Exception):
    """The file cannot be read safely, whatever it holds: the message says why (a TorchScript program, an archive
    member that is not a regular file, a size or time bound)."""


class _InertType(type):
    """The type of the placeholders; ``cls(*args)`` is how a pickle's REDUCE rebuilds an object."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls.refused:
            raise Refused(cls.qualified)
        return cls.__new__(cls, *args)


class Inert(metaclass=_InertType):
    """Stands in for an object of a class the reader does not import; keeps what the pickle gave it."""

    qualified: str = ""  # "module.Class" as the pickle names it
    refused: bool = False  # a call to it is refused (not a plain-data class)
    real: type | None = None  # the class itself, when it could be looked up without importing foreign code

    def __new__(cls, *args: Any) -> Inert:
        obj = object.__new__(cls)
        obj.__dict__.update(_args=args, _state=None, _items={}, _list=[])
        return obj

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._items[key] = value

    def append(self, value: Any) -> None:
        self._list.append(value)

    def extend(self, values: Any) -> None:
        self._list.extend(values)

    @property
    def is_module(self) -> bool:
        """Whether this stands for a pickled ``torch.nn.Module`` (a whole model, not data)."""
        if self.real is not None and issubclass(self.real, torch.nn.Module):
            return True
        state = self._state if isinstance(self._state, dict) else {}
        return "_modules" in state and "_parameters" in state

    def __repr__(self) -> str:
        return f"<{self.qualified}>"


def _look_up(module: str, name: str) -> tuple[str, Any]:
    """("found", object), ("absent", None) when this machine has no such thing, or ("unknown", None) when only
    importing code could tell (the module exists here but is not imported: it is never imported on a file's say)."""
    loaded = sys.modules.get(module)
    if loaded is None:
        top = module.split(".")[0]
        # find_spec of a top-level name only looks at sys.path's folders: nothing is imported or run
        known = top in sys.modules or importlib.util.find_spec(top) is not None
        return ("unknown", None) if known else ("absent", None)
    obj: Any = loaded
    for part in name.split("."):
        try:
            obj = pyinspect.getattr_static(obj, part)  # no module __getattr__, no descriptor runs
        except AttributeError:
            return "absent", None  # e.g. a class of the training script's __main__
    return "found", obj


_PLACEHOLDERS: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    if (module, name) not in _PLACEHOLDERS:
        status, obj = _look_up(module, name)
        real = obj if isinstance(obj, type) else None
        if status == "absent":
            refused = False
        elif real is not None:
            refused = not (issubclass(real, PLAIN_CLASSES) or module.split(".")[0] in TRUSTED_PACKAGES)
        else:
            refused = True  # a function, or something only foreign code could tell
        _PLACEHOLDERS[module, name] = _InertType(name.split(".")[-1], (Inert,),
                                                 {"qualified": f"{module}.{name}", "refused": refused, "real": real})
    return _PLACEHOLDERS[module, name]


def _reconstructor(cls: Any, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0 and 1 objects) without calling a foreign ``__init__``."""
    if isinstance(cls, _InertType):
        return cls.__new__(cls)
    return copyreg._reconstructor(cls, base, state)


def _allowed() -> dict[str, Any]:
    allowed = dict(_get_allowed_globals())
    for qualified in _NUMPY:
        module, _, name = qualified.rpartition(".")
        try:
            allowed[qualified] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            pass
    allowed.update({f"builtins.{name}": getattr(__import__("builtins"), name) for name in _BUILTINS})
    allowed["copyreg._reconstructor"] = _reconstructor
    allowed["argparse.Namespace"] = argparse.Namespace
    return allowed


_ALLOWED = _allowed()


class Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 2 names Python 2's modules (__builtin__)
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        if qualified in _ALLOWED:
            return _ALLOWED[qualified]
        if module in ("numpy.dtypes", "numpy") and name.endswith("DType"):  # numpy 2's dtype classes
            found = vars(sys.modules[module]).get(name)
            if isinstance(found, type) and issubclass(found, np.dtype):
                return found
        _check_deadline()
        return _placeholder(module, name)


class _Module(types.ModuleType):
    """What ``torch.load(pickle_module=...)`` needs of a pickle module."""

    Unpickler = Unpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()


PICKLE_MODULE = _Module("safe_pickle")


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return f"a link to {member.linkname!r}"
    return {tarfile.FIFOTYPE: "a FIFO", tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
            tarfile.DIRTYPE: "a folder"}.get(member.type, f"of tar type {member.type!r}")


def inspect(path: Path) -> str:
    """What the file is: "torchscript" (a zip whose loading runs the program it carries), "zip", "tar" or "pickle";
    refused (``Rejected``) when it cannot be read without blocking or without bound: not a regular file, over
    ``MAX_BYTES``, or an archive with a member that is not a regular file."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise Rejected("it is not a regular file")
    if info.st_size > MAX_BYTES:
        raise Rejected(f"it holds {info.st_size / 2**30:.1f} GiB, over the {MAX_BYTES / 2**30:.0f} GiB a checkpoint may")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
        links = [r.filename for r in records if stat.S_ISLNK(r.external_attr >> 16)]
        if links:
            raise Rejected(f"its record {links[0]!r} is a link")
        _check_total(sum(r.file_size for r in records))
        names = [r.filename for r in records]
        return "torchscript" if any(n.rsplit("/", 1)[-1] == "constants.pkl" or "/code/" in f"/{n}" for n in names) else "zip"
    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r:") as archive:
            members = archive.getmembers()
        odd = [m for m in members if not m.isreg()]
        if odd:
            raise Rejected(f"its member {odd[0].name!r} is {_kind(odd[0])}, not a regular file; nothing of it was opened")
        _check_total(sum(m.size for m in members))
        return "tar"
    return "pickle"


def _check_total(size: int) -> None:
    if size > MAX_BYTES:
        raise Rejected(f"its members hold {size / 2**30:.1f} GiB unpacked, over the {MAX_BYTES / 2**30:.0f} GiB a "
                       "checkpoint may")


_deadline = threading.local()


def _check_deadline() -> None:
    limit = getattr(_deadline, "at", None)
    if limit is not None and time.monotonic() > limit:
        raise Rejected(f"reading it took longer than {MAX_SECONDS:g} s")


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Stop a read after ``seconds``: by an alarm in the main thread (it interrupts a blocking read too), and by the
    unpickler's own checks of the clock in any thread. Within a bounded read, another bound adds nothing."""
    if getattr(_deadline, "at", None) is not None:
        yield
        return
    _deadline.at = time.monotonic() + seconds
    alarm = threading.current_thread() is threading.main_thread()
    if alarm:
        def expired(signum: int, frame: object) -> None:
            raise Rejected(f"reading it took longer than {seconds:g} s")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _deadline.at = None
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def load(path: Path) -> Any:
    """The object a ``torch.save`` file holds, read without running code from it (raises ``Refused`` or
    ``Rejected``)."""
    with bounded(MAX_SECONDS):
        if inspect(path) == "torchscript":
            raise Rejected("it is a TorchScript archive (torch.jit.save), and loading one runs the program it carries")
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=PICKLE_MODULE)


class _Budget:
    """What ``plain`` may still visit: the items left, and the ids of the containers on the current path."""

    def __init__(self) -> None:
        self.left = MAX_NODES
        self.path: set[int] = set()


def plain(value: Any, _budget: _Budget | None = None, _depth: int = 0) -> Any:
    """Placeholders, namespaces and numpy scalars -> dicts, lists, strings and numbers (tensors stay as they are).

    A value that contains itself becomes ``CYCLE`` where it recurs; deeper than ``MAX_DEPTH`` or more than
    ``MAX_NODES`` items raises ``Rejected``."""
    budget = _budget or _Budget()
    budget.left -= 1
    if budget.left < 0:
        raise Rejected(f"its metadata holds more than {MAX_NODES} items")
    if _depth > MAX_DEPTH:
        raise Rejected(f"its metadata is nested more than {MAX_DEPTH} levels deep")
    container = isinstance(value, (Inert, argparse.Namespace, types.SimpleNamespace, Mapping, list, tuple))
    if container and id(value) in budget.path:
        return CYCLE
    if container:
        budget.path.add(id(value))
    try:
        return _plain_one(value, budget, _depth + 1)
    finally:
        if container:
            budget.path.discard(id(value))


def _plain_one(value: Any, budget: _Budget, depth: int) -> Any:
    def inner(v: Any) -> Any:
        return plain(v, budget, depth)

    if isinstance(value, Inert):
        return _plain_inert(value, inner)
    if isinstance(value, (argparse.Namespace, types.SimpleNamespace)):
        return {k: inner(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {inner(k) if not isinstance(k, str) else k: inner(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inner(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 64:
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    return value


def _plain_inert(obj: Inert, inner: Any) -> Any:
    real, args, state = obj.real, obj._args, obj._state
    if (real is not None and issubclass(real, PurePath)) or obj.qualified.startswith("pathlib."):
        return str(PurePosixPath(*[a for a in args if isinstance(a, str)])) if args else ""
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__ values)
    if isinstance(state, dict):
        if "_content" in state:  # omegaconf DictConfig / ListConfig
            return inner(state["_content"])
        if "_val" in state:  # omegaconf value node
            return inner(state["_val"])
        data = {k: v for k, v in state.items() if not (isinstance(k, str) and k.startswith("__"))}
        data.update(obj._items)
        return inner(data)
    if obj._items:
        return inner(obj._items)
    if obj._list:
        return inner(obj._list)
    if state is None and len(args) == 1:  # an Enum member, or a class rebuilt from one value
        return inner(args[0])
    if state is not None:
        return inner(state)
    return inner(list(args)) if args else None


def modules_in(value: Any, depth: int = 0) -> list[str]:
    """The classes of whole pickled modules found in ``value`` (top levels of the checkpoint only)."""
    if isinstance(value, Inert):
        return [value.qualified] if value.is_module else []
    if isinstance(value, Mapping) and depth < 2:
        return [m for v in value.values() for m in modules_in(v, depth + 1)]
    return []
