"""Image layers and configs written by the builder itself, byte for byte reproducible, for ``docker load``.

A layer is an uncompressed tar with sorted entries, a fixed mtime, uid/gid 0 and normalised modes; its
digest (the diff ID) depends only on the files' paths and contents. The image config has a fixed
``created`` time, so its digest (the image ID) depends only on the parent image and the layers.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from submission.manifest import sha256_file

EPOCH = 315532800  # 1980-01-01T00:00:00Z, the reproducible-builds convention
CREATED = "1980-01-01T00:00:00Z"


@dataclass(frozen=True)
class Layer:
    path: Path  # the tar file
    diff_id: str  # "sha256:<hex>" of the tar


def _parents(path: PurePosixPath) -> list[PurePosixPath]:
    return [p for p in reversed(path.parents) if str(p) not in (".", "/", "")]


def write_layer(files: Mapping[str, Path | bytes], out: Path) -> Layer:
    """Write a layer holding ``files`` ({absolute path in the image: source file or bytes}) to ``out``."""
    entries: dict[PurePosixPath, Path | bytes | None] = {}
    for dest, source in files.items():
        path = PurePosixPath(dest.lstrip("/"))
        for parent in _parents(path):
            entries.setdefault(parent, None)  # directories
        entries[path] = source
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries, key=str):
            source = entries[path]
            info = tarfile.TarInfo(str(path))
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
            if source is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(source, bytes):
                info.size, info.mode = len(source), 0o644
                tar.addfile(info, io.BytesIO(source))
            else:
                info.size, info.mode = source.stat().st_size, 0o644
                with open(source, "rb") as f:
                    tar.addfile(info, f)
    return Layer(path=out, diff_id="sha256:" + sha256_file(out))


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def image_config(parent: Mapping[str, Any], layers: Iterable[Layer], config: Mapping[str, Any]) -> bytes:
    """The config of an image made of ``parent`` (its ``docker inspect`` data) plus ``layers``."""
    data = {
        "architecture": parent["Architecture"],
        "os": parent["Os"],
        "created": CREATED,
        "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": list(parent["RootFS"]["Layers"]) + [l.diff_id for l in layers]},
    }
    return canonical_json(data)


def write_load_archive(out: Path, config: bytes, parent_diff_ids: list[str], layers: list[Layer], tag: str) -> str:
    """A ``docker load`` archive of the new layers only; the parent's layers are already in the engine,
    which ``docker load`` finds by their chain ID instead of reading them. Returns the image ID."""
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    hex_id = image_id.split(":", 1)[1]
    layer_paths = [f"{d.split(':', 1)[1]}/layer.tar" for d in parent_diff_ids] + [
        f"{l.diff_id.split(':', 1)[1]}/layer.tar" for l in layers
    ]
    manifest = [{"Config": f"{hex_id}.json", "RepoTags": [tag], "Layers": layer_paths}]
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes | Path) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            if isinstance(data, bytes):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.size = data.stat().st_size
                with open(data, "rb") as f:
                    tar.addfile(info, f)

        add(f"{hex_id}.json", config)
        for layer in layers:
            add(f"{layer.diff_id.split(':', 1)[1]}/layer.tar", layer.path)
        add("manifest.json", canonical_json(manifest))
    return image_id
