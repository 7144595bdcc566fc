"""Failure reports a person can read: one line naming the file first, whatever process raised it; the image
libraries' warnings caught per file, counted, and summed up; every clash of ids at once."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from submission.errors import InputError
from submission.inputs.images import _Stderr, decode
from tests.bundles import manifest, preprocess, save_model, write_bundle

ROOT = Path(__file__).resolve().parents[2]


def tiff_with_a_tag_past_the_end(path: Path) -> Path:
    """A TIFF whose ImageDescription tag claims more bytes than the file holds: Pillow warns and skips it."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, tiffinfo={270: "description " * 3})
    data = bytearray(path.read_bytes())
    entry = data.find(struct.pack("<HH", 270, 2))
    data[entry + 4 : entry + 8] = struct.pack("<I", 10**6)
    path.write_bytes(bytes(data))
    return path


def jpeg_with_corrupt_exif(path: Path) -> Path:
    """A JPEG whose EXIF directory claims 40 entries in a segment that holds 2."""
    exif = Image.Exif()
    exif[274], exif[306] = 6, "2020:01:01"
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 50, 3), 90, dtype=np.uint8)).save(buffer, format="JPEG", exif=exif.tobytes())
    data = bytearray(buffer.getvalue())
    ifd = data.find(b"Exif\x00\x00") + 6
    data[ifd + 8 : ifd + 10] = struct.pack("<H", 40)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    return write_bundle(root, manifest((save_model(root, "fold0", "test_resnet", 3, preprocess(32), seed=0),)))


@pytest.fixture(scope="module")
def warned(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("warned")
    tiff_with_a_tag_past_the_end(folder / "scan.tif")
    jpeg_with_corrupt_exif(folder / "photo.jpg")
    Image.new("RGB", (30, 30)).save(folder / "plain.png")
    return folder


def runtime(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "submission", *args], capture_output=True, text=True, cwd=ROOT)


def test_warnings_are_caught_per_file_counted_and_summed_up(tmp_path, bundle, warned):
    proc = runtime(str(warned), "--bundle", str(bundle), "--out", str(tmp_path / "s.csv"), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "s.problems.json").read_text())
    by_file = {Path(w["file"]).name: w for w in report["warnings"]}
    assert set(by_file) == {"scan.tif", "photo.jpg"}
    assert by_file["scan.tif"] == {"file": str(warned / "scan.tif"), "library": "Pillow",
                                   "message": "Tag data larger than file. Skipping tag 270"}
    assert by_file["photo.jpg"]["message"].startswith("Corrupt EXIF data.")
    lines = proc.stderr.splitlines()
    assert "UserWarning" not in proc.stderr  # no raw warning, no source line
    assert any(line.startswith("warning: Pillow:") and "'Tag data larger than file. Skipping tag N'" in line and
               "on 1 file(s)" in line for line in lines)
    assert any(line.startswith(f"warning: the image libraries warned {len(report['warnings'])} time(s) on 2 file(s)")
               for line in lines)
    quiet = runtime(str(warned), "--bundle", str(bundle), "--out", str(tmp_path / "q.csv"), "--quiet")
    assert [line for line in quiet.stderr.splitlines() if line] == [
        f"warning: the image libraries warned {len(report['warnings'])} time(s) on 2 file(s); all are listed in "
        f"{tmp_path / 'q.problems.json'}"]


def test_what_c_libraries_print_while_a_file_decodes_is_captured():
    import ctypes

    libc = ctypes.CDLL(None)
    lines: list[str] = []
    with _Stderr().captured(lines):
        libc.write(2, b"TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8) encountered.\n", 78)
    assert lines == ["TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8) encountered."]
    assert decode(Path(__file__)).error.startswith(f"{__file__}: cannot decode the image: ")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_strict_failure_is_one_line_naming_the_file_whatever_process_decodes(tmp_path, bundle, workers):
    folder = tmp_path / "test"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (30, 30), (i, i, i)).save(folder / f"ok{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    proc = runtime(str(folder), "--bundle", str(bundle), "--out", str(tmp_path / "s.csv"), "--strict", "--quiet",
                   "--workers", workers, "--batch-size", "2")
    assert proc.returncode == InputError.exit_code
    assert proc.stderr.splitlines() == [
        f"error: {folder / 'broken.jpg'}: cannot decode the image: UnidentifiedImageError: cannot identify image "
        f"file '{folder / 'broken.jpg'}' (--strict: no blank-image fallback)"]
    assert not (tmp_path / "s.csv").exists()
