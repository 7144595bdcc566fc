"""Test folder listing, id matching, and decoding of every image mode to RGB, on real files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from submission.errors import InputError
from submission.inputs.images import decode_rgb, list_images, match_ids, natural_key

RNG = np.random.default_rng(0)


def touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4)).save(folder / name, format="PNG")
    return [folder / n for n in names]


def test_natural_order():
    names = ["img10", "img2", "img1", "b", "a10b", "a9b"]
    assert sorted(names, key=natural_key) == ["a9b", "a10b", "b", "img1", "img2", "img10"]


def test_list_images_takes_known_suffixes_in_any_case(tmp_path):
    touch(tmp_path, "a.JPG", "b.jpeg", "c.Png", "d.bmp", "e.webp", "f.TIF", "g.tiff", "h.jpg")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    touch(tmp_path / "sub", "i.jpg")
    assert [p.name for p in list_images(tmp_path)] == [
        "a.JPG", "b.jpeg", "c.Png", "d.bmp", "e.webp", "f.TIF", "g.tiff", "h.jpg"
    ]


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does-not-exist does not exist"):
        list_images(tmp_path / "does-not-exist")


def test_ids_are_stems_in_natural_order_without_sample(tmp_path):
    files = list_images(touch(tmp_path, "10.png", "2.jpg", "1.png")[0].parent)
    test = match_ids(files, None)
    assert test.ids == ("1", "2", "10")
    assert [p.name for p in test.paths] == ["1.png", "2.jpg", "10.png"]


def test_rows_follow_the_sample_and_extra_files_are_skipped(tmp_path):
    files = touch(tmp_path, "a.png", "b.jpg", "c.png", "extra.png")
    test = match_ids(files, ["c", "a", "b"])
    assert test.ids == ("c", "a", "b")
    assert [p.name for p in test.paths] == ["c.png", "a.png", "b.jpg"]
    assert [p.name for p in test.skipped] == ["extra.png"]


def test_ids_with_suffix_match_file_names(tmp_path):
    files = touch(tmp_path, "a.png", "a.jpg")  # same stem, told apart by the suffix the sample carries
    test = match_ids(files, ["a.jpg", "a.png"])
    assert [p.name for p in test.paths] == ["a.jpg", "a.png"]


def test_missing_ids_are_listed(tmp_path):
    files = touch(tmp_path, "a.png")
    with pytest.raises(InputError) as e:
        match_ids(files, ["a", "m1", "m2", "m3", "m4", "m5", "m6", "m7"])
    assert "7 of 8 ids of the sample submission have no image" in str(e.value)
    assert "'m1', 'm2', 'm3', 'm4', 'm5' and 2 more" in str(e.value)


def test_two_files_with_one_stem_are_ambiguous_and_every_clash_is_listed(tmp_path):
    files = touch(tmp_path, "a.jpg", "a.png")
    with pytest.raises(InputError, match=r"1 id\(s\) are given by several files: 'a': '.*a.jpg', '.*a.png'"):
        match_ids(files, None)
    (tmp_path / "sub").mkdir()
    files = touch(tmp_path, *[f"x{i}.jpg" for i in range(13)]) + touch(tmp_path / "sub", *[f"x{i}.png" for i in range(13)])
    with pytest.raises(InputError) as e:
        match_ids(files, None)
    text = str(e.value)
    assert text.startswith("13 id(s) are given by several files: 'x0': ") and "; and 3 more;" in text
    assert all(f"'x{i}':" in text for i in range(10)) and "'x10':" not in text


def test_mixed_id_styles_and_repeated_ids(tmp_path):
    files = touch(tmp_path, "a.png", "b.png")
    with pytest.raises(InputError, match="some sample submission ids carry an image suffix"):
        match_ids(files, ["a.png", "b"])
    with pytest.raises(InputError, match="repeats ids: 'a'"):
        match_ids(files, ["a", "b", "a"])


def saved(tmp_path, image, name, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_rgb_is_unchanged(tmp_path):
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = decode_rgb(saved(tmp_path, Image.fromarray(pixels), "x.png"))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), pixels)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_become_three_equal_channels(tmp_path, mode):
    grey = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    image = Image.fromarray(grey).convert(mode)
    expected = np.asarray(image.convert("L"))
    out = np.asarray(decode_rgb(saved(tmp_path, image, "x.png")))
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[..., c], expected) for c in range(3))


def test_rgba_drops_alpha(tmp_path):
    pixels = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    out = decode_rgb(saved(tmp_path, Image.fromarray(pixels, "RGBA"), "x.png"))
    assert np.array_equal(np.asarray(out), pixels[..., :3])


def test_palette_with_transparency_uses_palette_colours(tmp_path):
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.flatten().tolist())
    path = saved(tmp_path, image, "x.png", transparency=3)
    assert Image.open(path).info.get("transparency") == 3
    assert np.array_equal(np.asarray(decode_rgb(path)), palette[indices])


@pytest.mark.parametrize("name", ["x.tif", "x.jpg"])
def test_cmyk_is_converted(tmp_path, name):
    cmyk = RNG.integers(0, 256, (6, 6, 4), dtype=np.uint8)
    cmyk[:] = cmyk[:1, :1]  # a flat colour survives JPEG compression almost exactly
    path = saved(tmp_path, Image.fromarray(cmyk, "CMYK"), name, **({"quality": 100} if name.endswith("jpg") else {}))
    assert Image.open(path).mode == "CMYK"
    c, m, y, k = (cmyk[0, 0].astype(float))
    expected = [(255 - v) * (255 - k) / 255 for v in (c, m, y)]
    np.testing.assert_allclose(np.asarray(decode_rgb(path))[0, 0], expected, atol=2)


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    levels = np.array([[0, 257, 257 * 100, 65535, 128]], dtype=np.uint16)
    path = saved(tmp_path, Image.fromarray(levels), "x.png")
    assert Image.open(path).mode.startswith("I;16")
    out = np.asarray(decode_rgb(path))
    assert out[0, :, 0].tolist() == [0, 1, 100, 255, 0]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red in the stored top-left corner
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = saved(tmp_path, image, "x.png", exif=exif)
    out = np.asarray(decode_rgb(path))
    assert out.shape == (6, 4, 3)  # portrait after rotation
    assert tuple(out[0, -1]) == (255, 0, 0)  # the stored top-left corner is now top-right


def test_multi_frame_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (5, 5), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "x.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert Image.open(path).n_frames == 2
    assert tuple(np.asarray(decode_rgb(path))[2, 2]) == (255, 0, 0)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_undecodable_file_is_a_named_error(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"^.*broken\.png: cannot decode the image: "):
        decode_rgb(path)


def photo(height: int, width: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields with fine noise: what a JPEG decoder sees in a photo."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((width, height), Image.BILINEAR)
    pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-10, 11, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("keep, factor", [(100, 4), (190, 2), (60, 8), (300, 1)])
def test_fast_decode_shrinks_a_large_jpeg_by_the_largest_factor_that_keeps_the_side(tmp_path, keep, factor):
    path = saved(tmp_path, photo(480, 800), "x.jpg", quality=92)
    fast = decode_rgb(path, keep=keep)
    assert fast.size == (-(-800 // factor), -(-480 // factor))  # libjpeg rounds a scaled side up
    assert min(fast.size) >= keep
    # the DCT-domain scaling is an average over factor x factor blocks: compare with the full decode's box average
    exact = decode_rgb(path)
    boxed = np.asarray(exact.reduce(factor), dtype=float) if factor > 1 else np.asarray(exact, dtype=float)
    assert np.abs(np.asarray(fast, dtype=float) - boxed).mean() < 3.0


def test_fast_decode_leaves_other_files_and_small_jpegs_exact(tmp_path):
    for name in ("x.png", "x.webp"):
        path = saved(tmp_path, photo(480, 800), name)
        assert np.array_equal(np.asarray(decode_rgb(path, keep=50)), np.asarray(decode_rgb(path)))
    path = saved(tmp_path, photo(200, 300), "small.jpg")  # shorter side under twice 120: no smaller scale keeps it
    assert np.array_equal(np.asarray(decode_rgb(path, keep=120)), np.asarray(decode_rgb(path)))


def test_fast_decode_applies_the_exif_orientation(tmp_path):
    image = photo(400, 800)
    exif = image.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = saved(tmp_path, image, "x.jpg", exif=exif, quality=92)
    fast, exact = decode_rgb(path, keep=100), decode_rgb(path)
    assert exact.size == (400, 800) and fast.size == (100, 200)  # portrait, a quarter of each side
    boxed = np.asarray(exact.reduce(4), dtype=float)
    assert np.abs(np.asarray(fast, dtype=float) - boxed).mean() < 3.0


def test_fast_decode_shrinks_a_cameras_mpo_jpeg_too(tmp_path):
    image = photo(400, 800)
    path = tmp_path / "x.jpg"
    image.save(path, format="MPO", save_all=True, append_images=[image], quality=92)
    assert Image.open(path).format == "MPO"
    assert decode_rgb(path, keep=100).size == (200, 100) and decode_rgb(path).size == (800, 400)
