"""The exports' fixtures: a competition as competitors leave it, and its exports for each code platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.pack.bundle import PackRequest
from builder.pipeline import pack
from tests.bundles import make_images
from tests.runs import mixed_runs


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    """Three folds as their training scripts left them, a test folder and its sample."""
    root = tmp_path_factory.mktemp("code-exports")
    mixed_runs(root / "runs", img_size=48)
    make_images(root / "test", n=7)
    (root / "sample_submission.csv").write_text("image,a,b,c\n" + "".join(f"img{i},0.1,0.2,0.7\n" for i in range(7)))
    return root


@pytest.fixture(scope="module")
def exported(competition):
    """platform -> (the archive, the bundle kept beside it)."""
    def export(name: str) -> tuple[Path, Path]:
        out, bundle = competition / f"out-{name}", competition / f"bundle-{name}"
        request = PackRequest(models=competition / "runs", options={
            "sample_submission": competition / "sample_submission.csv", "platform": name})
        result = pack(request, tag="unused", base_image="unused", bundle_dir=bundle, export_to=out)
        assert result.image is None  # no Docker: the platform runs code
        return result.exported.files[0], bundle

    found: dict[str, tuple[Path, Path]] = {}

    def once(name: str) -> tuple[Path, Path]:
        if name not in found:
            found[name] = export(name)
        return found[name]

    return once
