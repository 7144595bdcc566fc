"""Test folder -> the ordered (id, file) pairs of the submission, and each file decoded once to RGB."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from submission.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_SHOW = 5  # how many ids an error lists before "and N more"


def natural_key(name: str) -> tuple:
    """Sort key that puts "img2" before "img10"."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)


def has_image_suffix(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (any case of a known suffix; sub-folders too when ``recursive``), in natural
    order. Hidden and system files (``.DS_Store``, ``._x.jpg``, ``Thumbs.db``) are left out; symlinks are
    kept, broken ones too, so that an unreadable file is reported rather than silently missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"test folder {folder} does not exist or is not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = [
        p for p in candidates
        if has_image_suffix(p.name)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (p.is_file() or (p.is_symlink() and not p.is_dir()))
    ]
    return sorted(files, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def listing(items: Sequence[str]) -> str:
    shown = ", ".join(repr(x) for x in items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


@dataclass(frozen=True)
class TestSet:
    ids: tuple[str, ...]  # submission ids, in output row order
    paths: tuple[Path, ...]  # the file of each id
    skipped: tuple[Path, ...]  # image files in the folder that the sample submission does not list


def match_ids(files: Sequence[Path], sample_ids: Sequence[str] | None) -> TestSet:
    """Pair ids with files: ids are file stems, or full file names when the sample's ids carry the suffix.

    Without a sample, every file is a row, in natural order. With one, rows follow the sample; an id without
    a file is an error, and a file without an id is skipped (the caller reports it).
    """
    with_suffix = bool(sample_ids) and all(has_image_suffix(i) for i in sample_ids)
    if sample_ids and not with_suffix and any(has_image_suffix(i) for i in sample_ids):
        odd = [i for i in sample_ids if has_image_suffix(i)]
        raise InputError(
            f"some sample submission ids carry an image suffix ({listing(odd)}) and others do not; "
            "ids must be all file names or all file stems"
        )
    by_id: dict[str, Path] = {}
    for f in files:
        key = f.name if with_suffix else f.stem
        if key in by_id:
            raise InputError(
                f"files {str(by_id[key])!r} and {str(f)!r} both give the id {key!r}; remove or rename one of them"
            )
        by_id[key] = f
    if sample_ids is None:
        return TestSet(ids=tuple(by_id), paths=tuple(by_id.values()), skipped=())
    repeated = [i for i, n in Counter(sample_ids).items() if n > 1]
    if repeated:
        raise InputError(f"the sample submission repeats ids: {listing(repeated)}")
    missing = [i for i in sample_ids if i not in by_id]
    if missing:
        folder = files[0].parent if files else "the test folder"
        raise InputError(
            f"{len(missing)} of {len(sample_ids)} ids of the sample submission have no image in {folder}: "
            f"{listing(missing)}; check that --data is the right folder"
        )
    wanted = set(sample_ids)
    skipped = tuple(f for key, f in by_id.items() if key not in wanted)
    return TestSet(ids=tuple(sample_ids), paths=tuple(by_id[i] for i in sample_ids), skipped=skipped)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit greyscale is scaled down, alpha dropped (as timm's loader does)."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image).astype(np.float64)
        pixels = np.clip(np.rint(pixels / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def decode_rgb(path: Path) -> Image.Image:
    """Decode one image file (its first frame) with its EXIF orientation applied, as RGB."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except Exception as e:  # PIL raises many types for corrupt data; each becomes one named error
        raise InputError(f"cannot decode image {path}: {type(e).__name__}: {e}") from None


def report_skipped(skipped: Sequence[Path]) -> None:
    if skipped:
        names = [p.name for p in skipped]
        print(
            f"note: {len(names)} image(s) in the test folder are not in the sample submission and are skipped: "
            f"{listing(names)}",
            file=sys.stderr,
        )
