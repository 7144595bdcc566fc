"""The pins the image gets from the host's installed distributions."""

from __future__ import annotations

import sys

import pytest

from builder.environment import host_pins


def _dist(root, name: str, version: str, *requires: str) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    return tmp_path


def test_dependencies_are_pinned_to_the_installed_versions(site):
    _dist(site, "zz-top", "1.0", "zz-dep>=2", "zz-extra; extra == 'fast'", "zz-absent")
    _dist(site, "zz-dep", "2.5")
    _dist(site, "zz-extra", "1.0")
    assert host_pins(["zz-top"]) == {"zz-dep": "2.5", "zz-top": "1.0"}


def test_an_installed_version_that_breaks_a_requirement_is_left_to_pip(site):
    # a venv's own old setuptools seen under a torch that needs a newer one: pinning it would be unsolvable
    _dist(site, "zz-top", "1.0", "zz-dep>=77", "zz-ok")
    _dist(site, "zz-dep", "65.5.0")
    _dist(site, "zz-ok", "3.0")
    assert host_pins(["zz-top"]) == {"zz-ok": "3.0", "zz-top": "1.0"}
