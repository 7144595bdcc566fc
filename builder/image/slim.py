"""Staged packages -> what inference never loads, found from the files themselves, and the libraries none provides.

Three rules, each proven on the files rather than guessed from names:
- A shared library in a library-only distribution (``nvidia-*``: CUDA, cuDNN, NCCL, ...) stays when some other
  package's library reaches it: through ``DT_NEEDED`` (the dynamic loader loads it with its parent) or by naming
  it anywhere in its bytes (a ``dlopen`` candidate: cuDNN's engines, NVRTC's builtins, NVSHMEM's transports).
  The rest (multi-GPU cuSOLVER, NVBLAS, profiler add-ons, the NVRTC variant nothing names) is never loaded.
- Files only a compiler or build system reads: headers, static libraries, CMake files.
- Whole distributions that torch declares but inference never imports: triton (``torch.compile``'s compiler)
  and setuptools (C++ extension builds), unless the user's code needs them.
``unresolved`` then checks the other direction: every library that loads with a package's own library finds
each ``DT_NEEDED`` it has, in the environment, the base image or the GPU driver.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

LIBRARY_DISTS = "nvidia-"  # distributions that only carry shared libraries for other packages to load
UNUSED_DISTS = {
    "triton": "torch.compile's compiler; the runtime runs models eagerly",
    "setuptools": "builds C++ extensions; nothing is built in the image",
}
BUILD_ONLY = (".h", ".hh", ".hpp", ".hxx", ".cuh", ".inl", ".a", ".cmake")
DRIVER = frozenset({"libcuda.so.1", "libnvidia-ml.so.1"})  # mounted from the host by the NVIDIA container toolkit
NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


@dataclass(frozen=True)
class Dropped:
    path: Path
    dist: str  # the distribution it came with
    reason: str
    size: int  # bytes


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed(path: Path) -> tuple[str, ...]:
    """The ELF file's DT_NEEDED: the libraries the dynamic loader loads with it."""
    with open(path, "rb") as f:
        try:
            dynamic = [s for s in ELFFile(f).iter_sections() if isinstance(s, DynamicSection)]
        except ELFError:
            return ()
        return tuple(t.needed for s in dynamic for t in s.iter_tags() if t.entry.d_tag == "DT_NEEDED")


def mentioned(path: Path) -> frozenset[str]:
    """The shared-library file names that the file's bytes mention: what it may dlopen."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return frozenset()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return frozenset(_library_names(data))


def _library_names(data: mmap.mmap) -> Iterable[str]:
    """Every ``name.so[.N...]`` in ``data`` (found from each ``.so`` outwards, which is fast on big files)."""
    at = data.find(b".so")
    while at != -1:
        start = at
        while start > 0 and at - start < 200 and data[start - 1] in NAME_CHARS:
            start -= 1
        end = at + 3
        while end < len(data) and end - at < 40 and (data[end] in b"0123456789" or data[end] == ord(".")):
            end += 1
        name = bytes(data[start:end]).rstrip(b".")
        if len(name) > 3:
            yield name.decode("ascii")
        at = data.find(b".so", at + 3)


def slim(dists: Mapping[str, Sequence[Path]], needed_by_user: Iterable[str] = ()) -> list[Dropped]:
    """What to leave out of the environment: ``dists`` maps each distribution to its files."""
    keep_dists = set(needed_by_user)
    dropped: list[Dropped] = []
    kept: dict[str, list[Path]] = {}
    for dist, files in dists.items():
        if dist in UNUSED_DISTS and dist not in keep_dists:
            dropped += [Dropped(p, dist, UNUSED_DISTS[dist], p.stat().st_size) for p in files]
            continue
        for p in files:
            if p.name.endswith(BUILD_ONLY):
                dropped.append(Dropped(p, dist, "read only when compiling against it", p.stat().st_size))
            else:
                kept.setdefault(dist, []).append(p)

    candidates: dict[str, list[tuple[str, Path]]] = {}  # file name -> library-only files of that name
    roots: list[Path] = []  # every ELF file of the other distributions
    for dist, files in kept.items():
        library_only = dist.startswith(LIBRARY_DISTS)
        for p in files:
            if library_only and ".so" in p.name and is_elf(p):
                candidates.setdefault(p.name, []).append((dist, p))
            elif not library_only and is_elf(p):
                roots.append(p)
    reached: set[Path] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        for name in set(needed(path)) | mentioned(path):
            for _, p in _matching(candidates, name):
                if p not in reached:
                    reached.add(p)
                    todo.append(p)
    for _, found in sorted(candidates.items()):
        dropped += [Dropped(p, dist, "no other package's library needs it or names it", p.stat().st_size)
                    for dist, p in found if p not in reached]
    return dropped


def _matching(candidates: Mapping[str, list[tuple[str, Path]]], name: str) -> list[tuple[str, Path]]:
    """The files a mentioned name may load: that file name, or a versioned one (``libcudnn_ops.so`` ->
    ``libcudnn_ops.so.9``)."""
    found = list(candidates.get(name, ()))
    prefix = name + "."
    found += [f for file_name, fs in candidates.items() if file_name.startswith(prefix) for f in fs]
    return found


def unresolved(files: Iterable[Path], roots: Iterable[Path], system: Iterable[str]) -> list[tuple[Path, str]]:
    """(library, missing name) for each ``DT_NEEDED`` that nothing provides, following ``DT_NEEDED`` from the
    ELF files ``roots`` through ``files`` (the environment), the base image's libraries ``system`` and the driver."""
    by_name: dict[str, Path] = {}
    for p in files:
        by_name.setdefault(p.name, p)
    available = set(by_name) | set(system) | DRIVER
    missing: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in needed(path):
            if name not in available:
                missing.append((path, name))
            elif name in by_name:
                todo.append(by_name[name])
    return sorted(missing)
