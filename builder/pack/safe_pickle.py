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
code for them exists here to run.
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
import pickle
import sys
import types
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import numpy as np
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


class Refused(pickle.UnpicklingError):
    """The pickle asks for a call that could run code: ``name`` is what it would call."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


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
    importing foreign code could tell."""
    top = module.split(".")[0]
    if module not in sys.modules and top not in TRUSTED_PACKAGES:
        return ("absent", None) if importlib.util.find_spec(top) is None else ("unknown", None)
    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        return "absent", None
    for part in name.split("."):
        if not hasattr(obj, part):
            return "absent", None  # e.g. a class of the training script's __main__
        obj = getattr(obj, part)
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
            return getattr(importlib.import_module(module), name)
        return _placeholder(module, name)


class _Module(types.ModuleType):
    """What ``torch.load(pickle_module=...)`` needs of a pickle module."""

    Unpickler = Unpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()


PICKLE_MODULE = _Module("safe_pickle")


def load(path: Path) -> Any:
    """The object a ``torch.save`` file holds, read without running code from it (raises ``Refused``)."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=PICKLE_MODULE)


def plain(value: Any) -> Any:
    """Placeholders, namespaces and numpy scalars -> dicts, lists, strings and numbers (tensors stay as they are)."""
    if isinstance(value, Inert):
        return _plain_inert(value)
    if isinstance(value, (argparse.Namespace, types.SimpleNamespace)):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {plain(k) if not isinstance(k, str) else k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 64:
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    return value


def _plain_inert(obj: Inert) -> Any:
    real, args, state = obj.real, obj._args, obj._state
    if (real is not None and issubclass(real, PurePath)) or obj.qualified.startswith("pathlib."):
        return str(PurePosixPath(*[a for a in args if isinstance(a, str)])) if args else ""
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__ values)
    if isinstance(state, dict):
        if "_content" in state:  # omegaconf DictConfig / ListConfig
            return plain(state["_content"])
        if "_val" in state:  # omegaconf value node
            return plain(state["_val"])
        data = {k: v for k, v in state.items() if not (isinstance(k, str) and k.startswith("__"))}
        data.update(obj._items)
        return plain(data)
    if obj._items:
        return plain(obj._items)
    if obj._list:
        return plain(obj._list)
    if state is None and len(args) == 1:  # an Enum member, or a class rebuilt from one value
        return plain(args[0])
    if state is not None:
        return plain(state)
    return plain(list(args)) if args else None


def modules_in(value: Any, depth: int = 0) -> list[str]:
    """The classes of whole pickled modules found in ``value`` (top levels of the checkpoint only)."""
    if isinstance(value, Inert):
        return [value.qualified] if value.is_module else []
    if isinstance(value, Mapping) and depth < 2:
        return [m for v in value.values() for m in modules_in(v, depth + 1)]
    return []
