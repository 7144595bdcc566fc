"""Test folder -> the ordered (id, file) pairs of the submission, and each file decoded once to RGB."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
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
    clashes: dict[str, list[Path]] = {}
    for f in files:
        key = f.name if with_suffix else f.stem
        if key in by_id:
            clashes.setdefault(key, [by_id[key]]).append(f)
        else:
            by_id[key] = f
    if clashes:
        shown = [f"{key!r}: {', '.join(repr(str(p)) for p in paths)}" for key, paths in list(clashes.items())[:10]]
        more = f"; and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        raise InputError(f"{len(clashes)} id(s) are given by several files: {'; '.join(shown)}{more}; remove or "
                         "rename the extra files (an id is the file name without its suffix)")
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


def decode_rgb(path: Path, keep: int | None = None) -> Image.Image:
    """Decode one image file (its first frame) with its EXIF orientation applied, as RGB.

    With ``keep``, a JPEG at least twice as large as ``keep`` on both sides is decoded by libjpeg at the
    smallest of 1/2, 1/4, 1/8 scale that leaves both sides at least ``keep`` pixels (Pillow's draft mode):
    faster than a full decode, and close to it after a resize down to ``keep`` or less."""
    try:
        with Image.open(path) as image:
            if keep is not None and image.format in ("JPEG", "MPO"):  # MPO: a camera's JPEG with extra frames
                image.draft("RGB", (keep, keep))
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except Exception as e:  # PIL raises many types for corrupt data; each becomes one named error
        raise InputError(f"{path}: cannot decode the image: {type(e).__name__}: {e}") from None


@dataclass(frozen=True)
class Decoded:
    image: Image.Image | None  # None when the file cannot be decoded
    error: str  # why it cannot be decoded ("" when it can)
    warnings: tuple[tuple[str, str], ...]  # (library, message) of each warning the image libraries gave on it


class _Stderr:
    """What C libraries (libtiff, libjpeg) print on file descriptor 2 while a file is decoded, captured in an
    unlinked temporary file of this process."""

    def __init__(self) -> None:
        self.sink, name = tempfile.mkstemp(prefix="decode-stderr-")
        os.unlink(name)

    @contextlib.contextmanager
    def captured(self, lines: list[str]) -> Iterator[None]:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(self.sink, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.lseek(self.sink, 0, os.SEEK_END)
            os.lseek(self.sink, 0, os.SEEK_SET)
            text = os.read(self.sink, size).decode(errors="replace") if size else ""
            os.ftruncate(self.sink, 0)
            os.lseek(self.sink, 0, os.SEEK_SET)
            lines.extend(line for line in text.splitlines() if line.strip())


_STDERR: _Stderr | None = None  # one per process


def _library(line: str) -> str:
    return "libtiff" if line.startswith(("TIFF", "_TIFF")) else "libjpeg" if "JPEG" in line else "C library"


def decode(path: Path, keep: int | None = None) -> Decoded:
    """``decode_rgb`` with the image libraries' warnings on this file caught (Pillow's as warnings, libtiff's and
    libjpeg's from stderr) instead of printed, and a decoding failure returned rather than raised."""
    global _STDERR
    if _STDERR is None:
        _STDERR = _Stderr()
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught, _STDERR.captured(lines):
        warnings.simplefilter("always")
        try:
            image, error = decode_rgb(path, keep), ""
        except InputError as e:
            image, error = None, str(e)
    found = [("Pillow", str(w.message)) for w in caught] + [(_library(line), line.strip()) for line in lines]
    return Decoded(image, error, tuple(found))


def warning_kinds(found: Sequence[dict[str, str]]) -> list[str]:
    """One line per kind of warning (library and message, numbers left out): how many, on how many files."""
    kinds: dict[tuple[str, str], list[str]] = {}
    for w in found:
        key = (w["library"], re.sub(r"\d+", "N", w["message"])[:120])
        kinds.setdefault(key, []).append(w["file"])
    return [f"{library}: {len(files)} warning(s) like {message!r} on {len(set(files))} file(s)"
            for (library, message), files in sorted(kinds.items(), key=lambda kv: -len(kv[1]))]


def report_skipped(skipped: Sequence[Path]) -> None:
    if skipped:
        names = [p.name for p in skipped]
        print(
            f"note: {len(names)} image(s) in the test folder are not in the sample submission and are skipped: "
            f"{listing(names)}",
            file=sys.stderr,
        )
