"""``--model-code``: the user's code frozen into the bundle, its downloads stood in for, every failure named at
pack time."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from builder.errors import CheckpointError, CodeError, ConfigError
from builder.pack.bundle import PackRequest, make_bundle
from submission.manifest import load_manifest, verify_files
from tests import naive
from tests.naive import FIXTURES

ROOT = Path(__file__).resolve().parents[2]


def save_folds(root: Path, models: list[torch.nn.Module], name: str = "best.pth", prefix: str = "") -> Path:
    """Folds as a training loop saves them: {"epoch", "model_state_dict", "optimizer_state_dict"}."""
    for i, model in enumerate(models):
        (root / f"fold{i}").mkdir(parents=True, exist_ok=True)
        state = {prefix + k: v for k, v in model.state_dict().items()}
        torch.save({"epoch": 5, "model_state_dict": state, "optimizer_state_dict": {}}, root / f"fold{i}" / name)
    return root


def pack(runs: Path, out: Path, config: Path | None = None, **options):
    return make_bundle(PackRequest(models=runs, options=options, config=config), out)


def models_of(relative: str, factory: str, n: int = 2, **kwargs) -> list[torch.nn.Module]:
    module = naive.fixture(relative)
    with naive.without_downloads():
        made = []
        for seed in range(n):
            torch.manual_seed(seed)
            made.append(getattr(module, factory)(**kwargs))
    return made


def test_a_cosine_head_on_a_timm_backbone(tmp_path):
    runs = save_folds(tmp_path / "runs", models_of("cosine_head.py", "build", num_classes=4), prefix="module.")
    bundle = pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/cosine_head.py:build",
                  model_kwargs='{"num_classes": 4}')
    m = load_manifest(bundle.path)
    verify_files(bundle.path, m)
    (spec0, spec1) = m.models
    assert spec0.source == "code" and spec0.code == spec1.code and spec0.kwargs == {"num_classes": 4}
    assert [f.path.split("/", 2)[2] for f in spec0.code.files] == ["cosine_head.py"]
    assert (spec0.code.module, spec0.code.attribute) == ("cosine_head", "build")
    assert (bundle.path / spec0.code.files[0].path).read_bytes() == (FIXTURES / "cosine_head.py").read_bytes()
    assert bundle.folds[0].asked == ["timm pretrained weights of timm/test_resnet.r160_in1k"]
    assert bundle.folds[0].sources["input_size"].source == "timm default for test_resnet (the model's timm backbone)"
    assert m.requirements == ()


def test_three_heads_declared_and_a_package_with_its_own_imports(tmp_path):
    with naive.importable(FIXTURES):
        import maskpkg

        runs = save_folds(tmp_path / "runs", [maskpkg.build(), maskpkg.build()])
    bundle = pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/maskpkg:build", heads="mask=3,gender=2,age=3",
                  img_size="32")
    m = load_manifest(bundle.path)
    assert [(h.name, h.size) for h in m.heads] == [("mask", 3), ("gender", 2), ("age", 3)]
    assert len(m.classes) == 18 and m.classes[:3] == ("0", "1", "2")
    assert (m.models[0].code.module, m.models[0].code.attribute) == ("maskpkg", "build")
    assert sorted(f.path.split("/", 2)[2] for f in m.models[0].code.files) == [
        "maskpkg/__init__.py", "maskpkg/layers.py", "maskpkg/net.py"]
    assert "maskpkg" not in sys.modules and "layers" not in sys.modules  # the aliases are gone after the build


def test_a_source_folder_whose_files_import_each_other_by_plain_names(tmp_path):
    with naive.importable(FIXTURES / "src"):
        import model

        runs = save_folds(tmp_path / "runs", [model.create()])
    bundle = pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/src:model.create", img_size="32")
    code = load_manifest(bundle.path).models[0].code
    assert (code.module, code.attribute) == ("model", "create")
    assert sorted(f.path.split("/", 2)[2] for f in code.files) == ["model.py", "utils.py"]


def test_two_model_files_of_one_name_in_one_ensemble(tmp_path):
    models = models_of("v1/model.py", "Net", n=1) + models_of("v2/model.py", "Net", n=1)
    runs = save_folds(tmp_path / "runs", models)
    config = tmp_path / "pack.yaml"
    config.write_text(json.dumps({"img_size": 32, "folds": {
        "fold0": {"model_code": f"{FIXTURES}/v1/model.py:Net"}, "fold1": {"model_code": f"{FIXTURES}/v2/model.py:Net"}}}))
    bundle = pack(runs, tmp_path / "b", config=config)
    m = load_manifest(bundle.path)
    assert m.models[0].code.root != m.models[1].code.root
    assert bundle.folds[1].sources["model_code"].source == "pack.yaml [folds.fold1.model_code]"


def test_an_ensemble_mixes_timm_and_custom_folds(tmp_path):
    from tests.runs import save_bare, tiny_model

    runs = save_folds(tmp_path / "runs", models_of("v1/model.py", "Net", n=1))
    save_bare(tmp_path / "runs" / "fold1" / "best.pth", tiny_model("test_resnet", 3))
    config = tmp_path / "pack.yaml"
    config.write_text(json.dumps({"img_size": 32, "folds": {"fold0": {"model_code": f"{FIXTURES}/v1/model.py:Net"},
                                                            "fold1": {"arch": "test_resnet"}}}))
    m = load_manifest(pack(runs, tmp_path / "b", config=config).path)
    assert [s.source for s in m.models] == ["code", "timm"]


def test_imports_beyond_the_runtime_are_pinned(tmp_path):
    code = tmp_path / "code" / "net.py"
    code.parent.mkdir()
    code.write_text((FIXTURES / "v1" / "model.py").read_text() + "\nimport yaml\nfrom rich.console import Console\n")
    runs = save_folds(tmp_path / "runs", models_of("v1/model.py", "Net", n=1))
    m = load_manifest(pack(runs, tmp_path / "b", model_code=f"{code}:Net", img_size="32").path)
    # yaml comes with timm (the runtime has it); rich brings pygments and markdown-it-py as its own dependencies
    assert m.requirements == (f"rich=={importlib.metadata.version('rich')}",)
    with pytest.raises(CodeError, match=r"no-such-package \(from --requirements\) is not installed here"):
        pack(runs, tmp_path / "b2", model_code=f"{code}:Net", img_size="32", requirements=["no-such-package"])


@pytest.mark.parametrize("code, words, error", [
    ("missing_package.py:build",
     r"No module named 'efficientnet_pytorch_not_installed'.*pip install efficientnet_pytorch_not_installed\) and pass "
     r"--requirements efficientnet_pytorch_not_installed", CodeError),
    ("broken.py:crashes", r"fails at broken.py line 9: ValueError: the config has no field 'head'", CodeError),
    ("broken.py:not_a_module", r"returned a dict, not a torch.nn.Module", CodeError),
    ("broken.py:nothing", r"broken has no 'nothing'; it defines: crashes, not_a_module, tuple_of_heads", CodeError),
    ("broken.py:tuple_of_heads", r"returns a tuple of a tensor of shape \(2, 2\), a tensor of shape \(2, 4\); declare "
     r"its heads with --heads", ConfigError),
    ("src/model.py:create", r"'utils' is neither a file of the frozen code nor installed here: if it is your own "
     r"module, pass the folder that holds it", CodeError),
])
def test_each_code_failure_is_named_at_pack_time(tmp_path, code, words, error):
    weights = ("broken.py", "tuple_of_heads") if code.endswith("tuple_of_heads") else ("v1/model.py", "Net")
    runs = save_folds(tmp_path / "runs", models_of(*weights, n=1))
    with pytest.raises(error, match=words):
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/{code}", img_size="32")
    assert not (tmp_path / "b").exists()


def test_outputs_that_do_not_fit_the_declared_heads(tmp_path):
    runs = save_folds(tmp_path / "runs", models_of("mask_heads.py", "MaskModel", n=1))
    with pytest.raises(CheckpointError, match=r"returned a tuple of a tensor of shape \(2, 3\), a tensor of shape \(2, 2\), "
                                              r"a tensor of shape \(2, 3\) for 2 images; the heads expect mask \[2, 3\], gender \[2, 2\]"):
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/mask_heads.py:MaskModel", heads="mask=3,gender=2",
             img_size="32")
    with pytest.raises(ConfigError, match="heads from --heads is 'mask:3'; write name=size"):
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/mask_heads.py:MaskModel", heads="mask:3", img_size="32")


def test_a_model_without_a_timm_config_needs_its_size(tmp_path):
    runs = save_folds(tmp_path / "runs", models_of("broken.py", "tuple_of_heads", n=1))
    with pytest.raises(ConfigError, match="carries no timm pretrained_cfg to take the input size from; pass --img-size"):
        pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/broken.py:tuple_of_heads", model_output="1")
    bundle = pack(runs, tmp_path / "b", model_code=f"{FIXTURES}/broken.py:tuple_of_heads", model_output="1",
                  img_size="24")
    assert load_manifest(bundle.path).models[0].output == 1 and len(load_manifest(bundle.path).classes) == 4


def test_a_whole_pickled_custom_model_is_converted_with_the_flag(tmp_path):
    with naive.importable(FIXTURES / "v1"):
        import model

        (tmp_path / "runs").mkdir()
        torch.save(model.Net(), tmp_path / "runs" / "fold0.pth")
        with pytest.raises(CheckpointError, match=r"whole pickled model \(model.Net\)"):
            pack(tmp_path / "runs", tmp_path / "b", model_code=f"{FIXTURES}/v1/model.py:Net", img_size="32")
        bundle = pack(tmp_path / "runs", tmp_path / "b", model_code=f"{FIXTURES}/v1/model.py:Net", img_size="32",
                      allow_unsafe_pickle=True)
    assert bundle.folds[0].entry == "(pickled module)"
    assert sorted(p.name for p in (bundle.path / "weights").iterdir()) == ["fold0.safetensors"]  # no pickle inside


def network_off() -> list[str]:
    """A command prefix that runs a process with no network at all (a new network namespace)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"]).returncode == 0:
        return ["unshare", "-rn"]
    pytest.skip("unshare -rn (a network namespace) is not available here")


def test_constructors_that_download_pack_and_run_with_the_network_off(tmp_path):
    """timm pretrained=True, torchvision weights=... and pretrained=True: intercepted; the checkpoint fills all."""
    from tests.bundles import make_images

    runs = save_folds(tmp_path / "runs", models_of("pretrained.py", "build", num_classes=3))
    off = network_off()
    packed = subprocess.run([*off, sys.executable, "-m", "builder", "pack", "--models", str(runs), "--model-code",
                             f"{FIXTURES}/pretrained.py:build", "--img-size", "64", "--tta", "hflip", "--format", "probs",
                             "--classes", "a,b,c", "--bundle-only", str(tmp_path / "b")],
                            capture_output=True, text=True, cwd=ROOT, env=_no_cache_env(tmp_path))
    assert packed.returncode == 0, packed.stdout + packed.stderr
    assert ("its constructor asked for weights from https://download.pytorch.org/models/resnet18-f37072fd.pth; "
            "timm pretrained weights of timm/test_resnet.r160_in1k; weights from "
            "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth: none fetched") in packed.stderr
    paths = make_images(tmp_path / "test", n=5)
    ran = subprocess.run([*off, sys.executable, "-m", "submission", str(tmp_path / "test"), "--bundle", str(tmp_path / "b"),
                          "--out", str(tmp_path / "s.csv"), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                         env=_no_cache_env(tmp_path))
    assert ran.returncode == 0, ran.stderr
    module = naive.fixture("pretrained.py")
    with naive.without_downloads():
        expected = naive.probabilities(tmp_path / "b", paths, build=lambda spec: module.build(**spec.kwargs))
    got = pd.read_csv(tmp_path / "s.csv")[["a", "b", "c"]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert not any((tmp_path / "cache").rglob("*.pth"))


def _no_cache_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "cache").mkdir(exist_ok=True)
    return {**os.environ, "TORCH_HOME": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT)}
