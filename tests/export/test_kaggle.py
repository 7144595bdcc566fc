"""The Kaggle export's parts that need no Docker: the settings it needs and their errors, the notebook's form, and
the kernel-side installer (offline pip, only the versions the kernel lacks, first on the run's path). The notebook
run top to bottom in a Kaggle-like container is in test_code_exports_docker.py."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from builder import platforms
from builder.errors import ConfigError
from builder.export.notebook import kaggle_owner, notebook_json, slug
from builder.pack.bundle import PackRequest, make_bundle
from builder.pack.resolve import said
from submission import notebook


def request(root: Path, **options) -> PackRequest:
    return PackRequest(models=root / "runs", options={
        "sample_submission": root / "sample_submission.csv", "platform": "kaggle", **options})


def test_kaggle_needs_the_competition_for_its_data_folder(competition, tmp_path):
    with pytest.raises(ConfigError, match=r"reads the test data from /kaggle/input/\{competition\}/test: pass "
                                          r"--competition NAME"):
        make_bundle(request(competition), tmp_path / "bundle")


def test_the_competition_names_the_data_folder_and_input_dir_wins(competition, tmp_path):
    made = make_bundle(request(competition, competition="leaf-disease-2026"), tmp_path / "a")
    assert made.manifest.entry.input == "/kaggle/input/leaf-disease-2026/test"
    assert made.manifest.entry.output == "/kaggle/working/submission.csv"
    given = make_bundle(request(competition, competition="x", input_dir="/kaggle/input/x/test_images"), tmp_path / "b")
    assert given.manifest.entry.input == "/kaggle/input/x/test_images"


def test_the_owner_comes_from_the_option_the_variable_or_the_credentials_file(competition, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    settings = said(request(competition, competition="c"))
    with pytest.raises(ConfigError, match="pass --owner USER"):
        kaggle_owner(settings)
    (tmp_path / "kaggle.json").write_text('{"username": "from-file", "key": "0123"}')
    assert kaggle_owner(settings) == "from-file"
    monkeypatch.setenv("KAGGLE_USERNAME", "from-env")
    assert kaggle_owner(settings) == "from-env"
    assert kaggle_owner(said(request(competition, competition="c", owner="given"))) == "given"


def test_slugs_are_what_kaggle_takes():
    assert slug("Leaf Disease 2026 -- submission:v2") == "leaf-disease-2026-submission-v2"
    assert len(slug("x" * 80 + "-bundle")) == 50


def test_the_notebook_is_nbformat_4_its_code_cells_python_its_paths_the_entrys(competition, tmp_path):
    manifest = make_bundle(request(competition, competition="leaf-disease-2026"), tmp_path / "bundle").manifest
    book = notebook_json(manifest, platforms.get("kaggle"), export="e" * 16, wheels="w" * 16,
                         bundle_id="ana/leaf-bundle", wheels_id="ana/wheels", competition="leaf-disease-2026")
    assert (book["nbformat"], book["nbformat_minor"]) == (4, 5)
    assert book["metadata"]["kernelspec"]["name"] == "python3"
    assert len({c["id"] for c in book["cells"]}) == len(book["cells"])
    code = [c["source"] for c in book["cells"] if c["cell_type"] == "code"]
    for source in code:
        compile(source, "cell", "exec")
    assert 'TEST = Path(\'/kaggle/input/leaf-disease-2026/test\')' in code[0]
    assert 'OUT = Path(\'/kaggle/working/submission.csv\')' in code[0]
    assert "ana/leaf-bundle" in code[0] and "ana/wheels" in code[0]


def wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any") -> str:
    """A wheel as pip builds one: the package, its METADATA, WHEEL and RECORD."""
    folder.mkdir(exist_ok=True)
    file = f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    members = {f"{name}/__init__.py": f"VERSION = {version!r}\n",
               f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
               f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: {tag}\n"}
    members[f"{info}/RECORD"] = "".join(f"{m},,\n" for m in [*members, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / file, "w") as z:
        for member, text in members.items():
            z.writestr(member, text)
    return file


def test_only_the_versions_the_kernel_lacks_are_installed_offline(tmp_path):
    wheels = tmp_path / "wheels"
    yaml_version = metadata.version("pyyaml")
    files = [["tinypkg", "2.0", wheel(wheels, "tinypkg", "2.0")],
             ["pyyaml", yaml_version, wheel(wheels, "pyyaml", yaml_version)],  # the kernel's own: left alone
             ["oldpkg", "1.0", wheel(wheels, "oldpkg", "1.0", "cp27-cp27m-manylinux1_x86_64")]]
    (wheels / notebook.WHEELS_MARKER).write_text(json.dumps({"wheels": "k", "python": "3.11", "files": files}))
    lines: list[str] = []
    site = notebook.install(wheels, tmp_path / "site", lines.append)
    assert site == tmp_path / "site"
    assert "installing tinypkg 2.0 (here not installed)" in lines
    assert not [line for line in lines if "pyyaml" in line]
    assert [line for line in lines if line.startswith("warning: oldpkg-1.0-")], lines
    assert sorted(p.name for p in site.iterdir() if not p.name.startswith("__")) == ["tinypkg", "tinypkg-2.0.dist-info"]
    seen = subprocess.run([sys.executable, "-c", "import tinypkg; print(tinypkg.VERSION)"], capture_output=True,
                          text=True, env={"PYTHONPATH": str(site)})
    assert seen.stdout.strip() == "2.0"


def test_nothing_is_installed_where_every_version_is_the_kernels(tmp_path):
    wheels = tmp_path / "wheels"
    version = metadata.version("pyyaml")
    files = [["pyyaml", version, wheel(wheels, "pyyaml", version)]]
    (wheels / notebook.WHEELS_MARKER).write_text(json.dumps({"wheels": "k", "python": "3.11", "files": files}))
    lines: list[str] = []
    assert notebook.install(wheels, tmp_path / "site", lines.append) is None
    assert lines == ["every pinned version is this kernel's own: nothing to install"]
    assert not (tmp_path / "site").exists()


def test_a_failed_run_fails_the_notebook_with_its_lines_shown(tmp_path):
    model = tmp_path / "model"
    (model / "submission").mkdir(parents=True)
    (model / "submission" / "__init__.py").write_text("")
    (model / "submission" / "hosted.py").write_text("import sys\nprint('error: no bundle here')\nsys.exit(3)\n")
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="exit code 3: its lines above say why; no submission was written"):
        notebook.run(model, ["/nowhere"], None, lines.append)
    assert lines == ["error: no bundle here"]
