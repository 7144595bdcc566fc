"""Platform profiles: each holds everything known of its platform with its source, and packing for it gives the image
the platform's entry and settings; a platform GPU that the pinned torch build cannot drive fails the pack, naming
the GPU, its capability, the build's list and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import platforms
from builder.errors import ConfigError
from builder.pack.bundle import PackRequest, make_bundle
from builder.platforms import gpus
from submission.manifest import load_manifest
from tests.runs import save_timm, timm_args, tiny_model

ROOT = Path(__file__).resolve().parents[2]
PYPI_TORCH = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")  # torch 2.14.1+cu130 from PyPI


@pytest.fixture
def runs(tmp_path):
    for i in range(2):
        save_timm(tmp_path / "runs" / f"fold{i}", tiny_model(num_classes=2, seed=i), timm_args("test_resnet", 2, 32))
    return tmp_path / "runs"


@pytest.fixture
def pypi_build(monkeypatch):
    monkeypatch.setattr(gpus, "arch_list", lambda: PYPI_TORCH)


def pack(runs, out, **options):
    return make_bundle(PackRequest(models=runs, options=options), out)


@pytest.mark.parametrize("name", sorted(platforms.PLATFORMS))
def test_each_profile_says_what_it_knows_and_where_it_comes_from(name):
    p = platforms.PLATFORMS[name]
    assert p.name == name == p.entry.platform and p.title and p.hand_in and p.source
    assert p.sandbox.data and (p.sandbox.output or p.entry.mode == "stream")
    assert all(kind in gpus.CAPABILITY for kind in p.limits.gpus)
    assert set(p.messages) <= {"timeout", "no output", "exit code", "out of memory", "bad output"}


def test_the_readme_has_a_row_for_every_platform():
    text = (ROOT / "README.md").read_text()
    for name in platforms.PLATFORMS:
        assert f"| `{name}` |" in text, name


def test_packing_for_aisg_takes_its_entry_and_settings(runs, tmp_path, pypi_build):
    with pytest.raises(ConfigError, match=r"the aisg platform runs on V100 \(sm_70\), which the pinned torch build cannot "
                                          r"drive: it carries sm_75 sm_80 .*--devices cpu"):
        pack(runs, tmp_path / "b", platform="aisg")
    bundle = pack(runs, tmp_path / "b", platform="aisg", devices="cpu")
    m = load_manifest(bundle.path)
    assert (m.entry.platform, m.entry.mode, m.entry.line, m.entry.devices) == ("aisg", "stream", "{proba:.4f}\t{label}",
                                                                               "cpu")
    assert (m.output.format, m.decision.positive_class) == ("binary", "1")
    assert bundle.settings["format"].source == "the aisg profile"


def test_an_older_cuda_build_drives_the_v100(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(gpus, "arch_list", lambda: ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"))
    assert load_manifest(pack(runs, tmp_path / "b", platform="aisg").path).entry.devices == "all"


def test_gpu_arch_checks_without_a_profile(runs, tmp_path, pypi_build):
    with pytest.raises(ConfigError, match=r"--gpu-arch sm_60 runs on sm_60, which the pinned torch build cannot drive"):
        pack(runs, tmp_path / "b", gpu_arch="sm_60")
    pack(runs, tmp_path / "b", gpu_arch="sm_86")  # an A10G runs sm_80 machine code
    with pytest.raises(ConfigError, match=r"gpu_arch from --gpu-arch is 'volta'; write it as sm_70"):
        pack(runs, tmp_path / "b", gpu_arch="volta")


def test_a_platforms_paths_can_be_set_where_they_are_not_known_for_sure(runs, tmp_path, pypi_build):
    m = load_manifest(pack(runs, tmp_path / "b", platform="evalai").path)
    assert (m.entry.input, m.entry.output) == ("/dataset", "${SUBMISSION_PATH:-/submission}/submission.csv")
    m = load_manifest(pack(runs, tmp_path / "b", platform="grand-challenge", output_path="/output/probability.json").path)
    assert (m.entry.mode, m.entry.output, m.entry.weights) == ("case", "/output/probability.json", "/opt/ml/model")
    m = load_manifest(pack(runs, tmp_path / "b", platform="aicrowd", input_dir="/data/test").path)
    assert m.entry.input == "/data/test" and m.entry.output.startswith("${AICROWD_PREDICTIONS_OUTPUT_PATH")


def test_an_unknown_platform_names_the_choices(runs, tmp_path):
    with pytest.raises(ConfigError, match="platform from --platform is 'kagle'; expected one of: generic, evalai"):
        pack(runs, tmp_path / "b", platform="kagle")
