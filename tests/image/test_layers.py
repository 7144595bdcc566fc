"""Layers and configs the builder writes: the same files give the same bytes, whatever the disk says of them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

from builder.image.layers import EPOCH, Executable, ImageSpec, Link, load_archive, tree_files, write_layer


def _members(path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_a_layer_depends_only_on_paths_contents_and_the_executable_bit(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, mode, mtime in ((one, 0o600, 1_000_000), (two, 0o664, 2_000_000)):
        folder.mkdir()
        for name, data in (("a.txt", b"alpha"), ("run.sh", b"#!/bin/sh\n")):
            (folder / name).write_bytes(data)
            (folder / name).chmod(mode)
            os.utime(folder / name, (mtime, mtime))
    first = write_layer("x", {"/opt/b/a.txt": one / "a.txt", "/opt/run": Executable(one / "run.sh"),
                              "/opt/link": Link("b/a.txt"), "/etc/x": b"bytes"}, tmp_path / "1.tar")
    second = write_layer("x", {"/etc/x": b"bytes", "/opt/link": Link("b/a.txt"),
                               "/opt/run": Executable(two / "run.sh"), "/opt/b/a.txt": two / "a.txt"}, tmp_path / "2.tar")
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
    assert first.diff_id == second.diff_id == "sha256:" + hashlib.sha256((tmp_path / "1.tar").read_bytes()).hexdigest()
    assert first.size == (tmp_path / "1.tar").stat().st_size

    members = _members(tmp_path / "1.tar")
    assert [m.name for m in members] == ["etc", "etc/x", "opt", "opt/b", "opt/b/a.txt", "opt/link", "opt/run"]
    assert all(m.mtime == EPOCH and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    modes = {m.name: (m.type, m.mode) for m in members}
    assert modes["opt"] == (tarfile.DIRTYPE, 0o755)
    assert modes["opt/b/a.txt"] == (tarfile.REGTYPE, 0o644)
    assert modes["opt/run"] == (tarfile.REGTYPE, 0o755)
    assert modes["opt/link"][0] == tarfile.SYMTYPE and members[5].linkname == "b/a.txt"


def test_hashing_without_writing_gives_the_written_digest(tmp_path):
    (tmp_path / "f").write_bytes(os.urandom(3 << 20))
    files = {"/data/f": tmp_path / "f", "/data/g": b"g"}
    assert write_layer("x", files, None).diff_id == write_layer("x", files, tmp_path / "l.tar").diff_id


def test_tree_files_keeps_links_and_executables(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"x")
    (root / "bin" / "tool").chmod(0o700)
    (root / "lib").mkdir()
    (root / "lib" / "data").write_bytes(b"y")
    os.symlink("lib", root / "lib64")
    os.symlink("tool", root / "bin" / "alias")
    files = tree_files(root, "/opt/venv")
    assert files == {"/opt/venv/bin/tool": Executable(root / "bin" / "tool"), "/opt/venv/lib/data": root / "lib" / "data",
                     "/opt/venv/lib64": Link("lib"), "/opt/venv/bin/alias": Link("tool")}


def test_image_id_is_the_digest_of_its_config_and_the_archive_holds_the_new_layers(tmp_path):
    base = ImageSpec("amd64", "linux", ("sha256:" + "1" * 64,), {"Env": ["PATH=/bin"]})
    layer = write_layer("top", {"/a": b"a"}, tmp_path / "top.tar")
    image = base.plus([layer], {"Cmd": ["/data"]})
    assert image.diff_ids == (base.diff_ids[0], layer.diff_id)
    config = json.loads(image.json())
    assert config["created"] == "1980-01-01T00:00:00Z" and config["rootfs"]["diff_ids"] == list(image.diff_ids)
    assert image.id == "sha256:" + hashlib.sha256(image.json()).hexdigest()

    with tarfile.open(fileobj=io.BytesIO(b"".join(load_archive(image, [layer], "x:latest")))) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert tar.extractfile(f"{layer.diff_id[7:]}/layer.tar").read() == (tmp_path / "top.tar").read_bytes()
        assert tar.extractfile(f"{image.id[7:]}.json").read() == image.json()
    assert names == [f"{image.id[7:]}.json", f"{layer.diff_id[7:]}/layer.tar", "manifest.json"]  # not the base's
    assert manifest == [{"Config": f"{image.id[7:]}.json", "RepoTags": ["x:latest"],
                         "Layers": [f"{d[7:]}/layer.tar" for d in image.diff_ids]}]
