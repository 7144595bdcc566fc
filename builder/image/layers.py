"""Files -> image layers and configs written by the builder itself, byte for byte reproducible, for ``docker load``.

A layer is an uncompressed tar with sorted entries, a fixed mtime, uid/gid 0 and normalised modes (0644, 0755 for
executables and directories); its digest (the diff ID) depends only on the files' paths, contents and executable
bits. An image config has a fixed ``created`` time, so its digest (the image ID) depends only on the layers and
the config. Every image the builder makes (the environment, the submission) is an ``ImageSpec`` on its parent's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

EPOCH = 315532800  # 1980-01-01T00:00:00Z, the reproducible-builds convention
CREATED = "1980-01-01T00:00:00Z"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Link:
    target: str  # a symbolic link's target, as ``ln -s`` is given it


@dataclass(frozen=True)
class Executable:
    source: Path  # a file written with mode 0755


Source = Path | bytes | Link | Executable  # a layer entry: a file (0644), its bytes, a link, an executable


@dataclass(frozen=True)
class Layer:
    name: str  # what it holds, for people: "torch", "weights", ...
    diff_id: str  # "sha256:<hex>" of the tar
    size: int  # bytes of the tar
    path: Path | None = None  # the tar file; None when only its digest was wanted


class _Digest(io.RawIOBase):
    """A write-only stream that hashes what it is given and passes it on to ``sink`` (or nowhere)."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _parents(path: PurePosixPath) -> list[PurePosixPath]:
    return [p for p in reversed(path.parents) if str(p) not in (".", "/", "")]


def write_layer(name: str, files: Mapping[str, Source], out: Path | None) -> Layer:
    """A layer holding ``files`` ({absolute path in the image: source}), written to ``out``, or only hashed when
    ``out`` is None (to tell which image some inputs make, without the disk space)."""
    entries: dict[PurePosixPath, Source | None] = {}
    for dest, source in files.items():
        path = PurePosixPath(dest.lstrip("/"))
        for parent in _parents(path):
            entries.setdefault(parent, None)  # directories
        entries[path] = source
    with open(out, "wb") if out is not None else contextlib.nullcontext() as sink:
        digest = _Digest(sink)
        with tarfile.open(fileobj=digest, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
            for path in sorted(entries, key=str):
                info, content = _entry(str(path), entries[path])
                if isinstance(content, Path):
                    with open(content, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info, content)
    return Layer(name, "sha256:" + digest.sha.hexdigest(), digest.size, out)


def _entry(name: str, source: Source | None) -> tuple[tarfile.TarInfo, Path | BinaryIO | None]:
    """The tar header of one entry and where its content comes from."""
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
    if source is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, None
    if isinstance(source, Link):
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, source.target
        return info, None
    if isinstance(source, bytes):
        info.size, info.mode = len(source), 0o644
        return info, io.BytesIO(source)
    path, info.mode = (source.source, 0o755) if isinstance(source, Executable) else (source, 0o644)
    info.size = path.stat().st_size
    return info, path


def tree_files(root: Path, prefix: str = "/") -> dict[str, Source]:
    """Every file and link under ``root`` by its path in the image (``prefix`` + its path under ``root``);
    a file with any executable bit becomes an ``Executable``."""
    files: dict[str, Source] = {}
    for folder, dirs, names in os.walk(root):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = Path(folder) / name
            dest = prefix.rstrip("/") + "/" + path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                files[dest] = Link(os.readlink(path))
            elif stat.S_ISREG(mode):
                files[dest] = Executable(path) if mode & 0o111 else path
    return files


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class ImageSpec:
    """An image as its config describes it: the content that its ID is the digest of."""

    architecture: str  # "amd64"
    os_name: str  # "linux"
    diff_ids: tuple[str, ...]  # every layer's diff ID, the base's first
    config: Mapping[str, Any] = field(default_factory=dict)  # Env, Entrypoint, Cmd, User, WorkingDir, Labels

    @classmethod
    def of(cls, attrs: Mapping[str, Any]) -> ImageSpec:
        """The spec of an image in the engine, from its ``docker inspect`` data."""
        config = attrs.get("Config") or {}
        kept = {k: config[k] for k in ("Env", "Entrypoint", "Cmd", "User", "WorkingDir", "Labels") if config.get(k)}
        return cls(attrs["Architecture"], attrs["Os"], tuple(attrs["RootFS"]["Layers"]), kept)

    def plus(self, layers: Sequence[Layer], config: Mapping[str, Any]) -> ImageSpec:
        """This image with ``layers`` on top and ``config`` as its runtime config."""
        return ImageSpec(self.architecture, self.os_name, self.diff_ids + tuple(layer.diff_id for layer in layers), config)

    def json(self) -> bytes:
        return canonical_json({
            "architecture": self.architecture,
            "os": self.os_name,
            "created": CREATED,
            "config": dict(self.config),
            "rootfs": {"type": "layers", "diff_ids": list(self.diff_ids)},
        })

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(self.json()).hexdigest()


def load_archive(image: ImageSpec, layers: Sequence[Layer], tag: str) -> Iterator[bytes]:
    """The ``docker load`` archive of ``image``, streamed, holding only its new ``layers`` (the last ones): the
    engine already has the parent's, which it finds by their chain ID instead of reading them."""
    assert all(layer.path is not None for layer in layers)
    assert tuple(layer.diff_id for layer in layers) == image.diff_ids[-len(layers):]
    hex_id = image.id.split(":", 1)[1]
    manifest = [{"Config": f"{hex_id}.json", "RepoTags": [tag],
                 "Layers": [f"{d.split(':', 1)[1]}/layer.tar" for d in image.diff_ids]}]
    yield from _member(f"{hex_id}.json", image.json())
    for layer in layers:
        yield from _member(f"{layer.diff_id.split(':', 1)[1]}/layer.tar", layer.path)  # type: ignore[arg-type]
    yield from _member("manifest.json", canonical_json(manifest))
    yield bytes(2 * tarfile.BLOCKSIZE)  # the end of the archive


def _member(name: str, data: bytes | Path) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.mtime = EPOCH
    info.size = len(data) if isinstance(data, bytes) else data.stat().st_size
    yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if isinstance(data, bytes):
        yield data
    else:
        with open(data, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    yield bytes(-info.size % tarfile.BLOCKSIZE)
