"""A submission image -> the archive a platform takes (``docker save``, gzip), its size checked against the
platform's cap; and, where the platform takes the weights apart (Grand Challenge), the model tarball.

Both are written reproducibly (sorted entries, fixed times, gzip without a timestamp) and atomically: a failure or
a cap exceeded leaves nothing half-written behind.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from docker.errors import DockerException

from builder.errors import BuilderError, DockerError
from builder.platforms.base import Platform
from submission.atomic import atomic_path
from submission.manifest import Manifest

CHUNK = 1 << 20


@dataclass(frozen=True)
class Exported:
    files: tuple[Path, ...]  # what to upload, in order
    sizes: dict[str, int]  # bytes of each file, by name
    notes: tuple[str, ...]  # what to do with each, in the platform's words


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def image_archive(client: docker.DockerClient, tag: str, path: Path, cap: int | None,
                  say: Callable[[str], None] = lambda line: None) -> int:
    """``docker save TAG | gzip`` to ``path``; over ``cap`` bytes it is an error and nothing is left at ``path``."""
    try:
        image = client.images.get(tag)
    except DockerException as e:
        raise DockerError(f"cannot export {tag}: {e}") from None
    say(f"saving {tag} ({_size(int(image.attrs.get('Size', 0)))} unpacked) to {path}")
    def over(written: int) -> BuilderError:
        return BuilderError(f"the archive of {tag} is {_size(written)}{' or more' if written else ''}, over the "
                            f"platform's cap of {_size(cap)}; nothing was written. Shrink the image (fewer folds, a "
                            "smaller backbone, or the weights apart where the platform takes them)")

    # gzip level 1: several times faster than the default on gigabytes of libraries, for a few per cent more bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                                         compresslevel=1) as out:
        try:
            for chunk in image.save(chunk_size=CHUNK, named=True):
                out.write(chunk)
                if cap is not None and raw.tell() > cap:  # stop at once: the rest would only be thrown away
                    raise over(raw.tell())
        except (DockerException, requests.RequestException) as e:
            raise DockerError(f"docker save of {tag} failed: {e}") from None
        out.close()
        written = raw.tell()
        if cap is not None and written > cap:
            raise over(written)
    return written


def model_tarball(bundle: Path, manifest: Manifest, path: Path) -> int:
    """The bundle's weights as a gzipped tarball whose ``weights/`` lands where the platform extracts it."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for ref in sorted(manifest.models, key=lambda m: m.weights.path):
                info = tarfile.TarInfo(ref.weights.path)
                data = (bundle / ref.weights.path).read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        size = tmp.stat().st_size
    return size


def export_image(client: docker.DockerClient, tag: str, platform: Platform, bundle: Path, manifest: Manifest,
                 out: Path, say: Callable[[str], None] = lambda line: None) -> Exported:
    """What an image platform takes, written to the folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    name = tag.rsplit("/", 1)[-1].replace(":", "-")
    archive = out / f"{name}.tar.gz"
    sizes = {archive.name: image_archive(client, tag, archive, platform.limits.archive_bytes, say)}
    files, notes = [archive], [f"{archive.name}: {platform.hand_in}"]
    if platform.weights_apart:
        tarball = out / "model.tar.gz"
        sizes[tarball.name] = model_tarball(bundle, manifest, tarball)
        files.append(tarball)
        notes.append(f"{tarball.name}: the weights, extracted by the platform at {manifest.entry.weights}")
    return Exported(tuple(files), sizes, tuple(notes))
