"""Checkpoints built to run code or to hang the reader: each is refused by name (or read as inert data), the payload's
marker file never appears, and nothing blocks. Every file is made the way an attacker makes it: raw pickle opcodes,
an object whose ``__reduce__`` names a module, a TorchScript archive, a tar with a FIFO member, settings that name a
file for the model's constructor to read."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest
import torch
import yaml

from builder.errors import CheckpointError, ConfigError
from builder.pack import safe_pickle
from builder.pack.bundle import PackRequest, make_bundle
from builder.pack.checkpoints import find_folds, read_checkpoint
from tests.runs import save_timm, timm_args, tiny_model

ROOT = Path(__file__).resolve().parents[2]
SIDE_EFFECT = "import os\nopen(os.environ['PAYLOAD_MARKER'], 'w').write('the module ran on import')\ndef run():\n    pass\n"


@contextlib.contextmanager
def no_hang(seconds: int = 60):
    """Fail (rather than block the test run) if the body does not return in time."""
    def expired(signum, frame):
        raise AssertionError(f"the reader blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def reduce_opcodes(module: str, name: str) -> bytes:
    """A protocol 2 pickle that calls ``module.name()`` when loaded: GLOBAL, EMPTY_TUPLE, REDUCE, STOP."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."


def torch_save_reducing_to(path: Path, module: str, name: str, layout_key: str = "args") -> None:
    """``torch.save`` of a real-looking checkpoint whose ``args`` reduce to a call of ``module.name``; written in a
    fresh interpreter that fakes the module, so the name is recorded without the real module being imported there."""
    code = (
        "import sys, types, torch\n"
        f"mod = types.ModuleType({module!r}); mod.target = lambda: None; mod.target.__qualname__ = {name!r}\n"
        f"setattr(mod, {name!r}, mod.target); mod.target.__module__ = {module!r}; sys.modules[{module!r}] = mod\n"
        "class Payload:\n    def __reduce__(self):\n        return (mod.target, ())\n"
        "torch.save({'state_dict': {'fc.weight': torch.ones(3, 2)}, " + repr(layout_key) + ": Payload()}, sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT)


def pack_in_subprocess(models: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", "pack", "--models", str(models), "--bundle-only", str(out),
                           "--arch", "test_resnet"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture
def side_effect_module(tmp_path):
    """A module on the path whose import writes a marker file, as ``numpy.f2py.__main__`` runs f2py."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "writes_on_import.py").write_text(SIDE_EFFECT)
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", "PAYLOAD_MARKER": str(marker)}
    return env, marker


@pytest.mark.parametrize("layout", ["raw opcodes as fold0.pth", "torch.save zip in a timm fold folder",
                                    "Lightning .ckpt hyper_parameters"])
def test_a_global_naming_a_module_with_side_effects_is_never_imported(tmp_path, side_effect_module, layout):
    env, marker = side_effect_module
    runs = tmp_path / "runs"
    if layout.startswith("raw"):
        runs.mkdir()
        target = runs / "fold0.pth"
        target.write_bytes(reduce_opcodes("writes_on_import", "run"))
    elif layout.startswith("torch.save"):
        target = runs / "fold0" / "model_best.pth.tar"
        target.parent.mkdir(parents=True)
        torch_save_reducing_to(target, "writes_on_import", "run")
    else:
        target = runs / "fold0" / "checkpoints" / "epoch=1-step=10.ckpt"
        target.parent.mkdir(parents=True)
        torch_save_reducing_to(target, "writes_on_import", "run", layout_key="hyper_parameters")
    proc = pack_in_subprocess(runs, tmp_path / "bundle", env)
    assert proc.returncode == CheckpointError.exit_code, proc.stderr
    assert str(target) in proc.stderr and "writes_on_import.run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one line, no traceback
    assert not marker.exists()


@pytest.mark.parametrize("module", ["numpy.f2py.__main__", "torch.utils.model_dump.__main__"])
def test_a_packages_main_module_named_by_a_pickle_does_not_run(tmp_path, module):
    """Their top levels call main(): f2py prints its usage, model_dump calls sys.exit."""
    path = tmp_path / "fold0.pth"
    path.write_bytes(reduce_opcodes(module, "main"))
    before = set(sys.modules)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(CheckpointError, match=rf"{path}.*{module}\.main"):
        read_checkpoint(find_folds(path)[0])
    assert module not in sys.modules and module not in set(sys.modules) - before
    assert stdout.getvalue() == ""


def test_a_torchscript_archive_is_refused_without_the_flag_and_converted_with_it(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "runs" / "fold0.pth"
    path.parent.mkdir()
    torch.jit.save(torch.jit.trace(model, torch.rand(1, 3, 32, 32)), str(path))
    marker = tmp_path / "marker"
    real_load = torch.jit.load

    def watched(*args, **kwargs):
        marker.write_text("torch.jit.load ran")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", watched)
    with pytest.raises(CheckpointError, match=rf"{path} refused: it is a TorchScript archive.*--allow-unsafe-pickle"):
        read_checkpoint(find_folds(path)[0])
    assert not marker.exists()
    checkpoint = read_checkpoint(find_folds(path)[0], allow_unsafe=True)
    assert marker.exists() and checkpoint.entry == "(bare state_dict)"
    assert all(torch.equal(checkpoint.state_dict[k], v) for k, v in model.state_dict().items())
    bundle = make_bundle(PackRequest(models=path.parent, options={"arch": "test_resnet", "img_size": "32",
                                                                   "allow_unsafe_pickle": True}), tmp_path / "b")
    assert [f.entry for f in bundle.folds] == ["(bare state_dict)"]


def test_args_that_contain_themselves_are_read_with_a_marker(tmp_path):
    args = timm_args("test_resnet", 3, 32)
    args.self = args  # a config object that keeps a reference to itself
    args.history = [args, {"parent": args}]
    path = tmp_path / "fold0.pth"
    torch.save({"state_dict": tiny_model().state_dict(), "args": args}, path)
    with no_hang():
        checkpoint = read_checkpoint(find_folds(path)[0])
    assert checkpoint.carried["arch"] == ("test_resnet", "fold0.pth args [model]")
    plain = safe_pickle.plain(safe_pickle.load(path)["args"])
    assert plain["self"] == safe_pickle.CYCLE and plain["history"] == [safe_pickle.CYCLE, {"parent": safe_pickle.CYCLE}]


def test_metadata_nested_deeper_than_the_bound_is_an_error_naming_the_file(tmp_path):
    deep: list = []
    for _ in range(150):  # torch.save's own pickler recurses per level: a few hundred is its limit
        deep = [deep]
    path = tmp_path / "fold0.pth"
    torch.save({"state_dict": tiny_model().state_dict(), "args": {"model": "test_resnet", "notes": deep}}, path)
    with pytest.raises(CheckpointError, match=rf"{path} refused: its 'args' .*nested more than 100 levels deep"):
        read_checkpoint(find_folds(path)[0])


def test_a_yaml_alias_bomb_in_args_yaml_is_refused(tmp_path):
    fold = tmp_path / "runs" / "fold0"
    save_timm(fold, tiny_model(), timm_args("test_resnet", 3, 32), write_args_yaml=False)
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    (fold / "args.yaml").write_text("\n".join(lines) + "\nmodel: test_resnet\n")
    with no_hang(), pytest.raises(CheckpointError, match=rf"cannot read {fold / 'args.yaml'}: .*more than 1000000 items"):
        read_checkpoint(find_folds(tmp_path / "runs")[0])


def legacy_tar(path: Path, odd: tarfile.TarInfo) -> Path:
    """torch's legacy .tar layout (storages, tensors, pickle) with one member that is not a regular file."""
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "tensors", "pickle"):
            data = pickle.dumps(0)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(odd)
    return path


@pytest.mark.parametrize("kind, detail", [(tarfile.FIFOTYPE, "a FIFO"), (tarfile.SYMTYPE, "a link to '/etc/passwd'"),
                                          (tarfile.CHRTYPE, "a character device")])
def test_a_legacy_tar_whose_storages_is_not_a_regular_file_is_refused_unopened(tmp_path, kind, detail):
    odd = tarfile.TarInfo("storages")
    odd.type = kind
    if kind == tarfile.SYMTYPE:
        odd.linkname = "/etc/passwd"
    if kind == tarfile.CHRTYPE:
        odd.devmajor, odd.devminor = 1, 5  # /dev/zero
    path = legacy_tar(tmp_path / "fold0.tar", odd)
    with no_hang(30), pytest.raises(CheckpointError, match=rf"{path} refused: its member 'storages' is {detail}"):
        read_checkpoint(find_folds(path)[0])


def test_a_fifo_named_like_a_checkpoint_is_refused_by_name(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    torch.save(tiny_model().state_dict(), runs / "fold0.pth")
    os.mkfifo(runs / "fold1.pth")
    with no_hang(30), pytest.raises(CheckpointError, match=rf"{runs / 'fold1.pth'} is named like a checkpoint but is "
                                                            r"not a regular file"):
        find_folds(runs)


def test_a_checkpoint_over_the_size_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "fold0.pth"
    torch.save(tiny_model().state_dict(), path)
    monkeypatch.setattr(safe_pickle, "MAX_BYTES", 1000)
    with pytest.raises(CheckpointError, match=rf"{path} refused: it holds .* GiB, over"):
        read_checkpoint(find_folds(path)[0])


def test_a_read_past_the_time_bound_is_stopped(tmp_path, monkeypatch):
    path = tmp_path / "fold0.pth"
    torch.save({"state_dict": tiny_model().state_dict(), "args": types.SimpleNamespace(model="test_resnet")}, path)
    slow = safe_pickle._placeholder

    def stalls(module, name):
        import time

        time.sleep(3)
        return slow(module, name)

    monkeypatch.setattr(safe_pickle, "MAX_SECONDS", 1.0)
    monkeypatch.setattr(safe_pickle, "_placeholder", stalls)
    with no_hang(30), pytest.raises(CheckpointError, match=rf"{path} refused: reading it took longer than 1 s"):
        read_checkpoint(find_folds(path)[0])


@pytest.mark.parametrize("layout", ["args.yaml", "checkpoint args", "Lightning hyper_parameters", "config.json"])
def test_a_file_named_in_the_models_settings_is_never_read(tmp_path, layout):
    """The file is a FIFO: opening it for reading would block, so the test would hang if anything read it."""
    secret = tmp_path / "secret"
    os.mkfifo(secret)
    fold = tmp_path / "runs" / "fold0"
    model = tiny_model()
    if layout == "args.yaml":
        save_timm(fold, model, timm_args("test_resnet", 3, 32), write_args_yaml=False)
        args = vars(timm_args("test_resnet", 3, 32, model_kwargs={"checkpoint_path": str(secret)}))
        (fold / "args.yaml").write_text(yaml.safe_dump(args))
        key = "model_kwargs.checkpoint_path"
    elif layout == "checkpoint args":
        save_timm(fold, model, timm_args("test_resnet", 3, 32, model_kwargs={"pretrained_cfg": {"file": str(secret)}}))
        key = "model_kwargs.pretrained_cfg.file"
    elif layout == "Lightning hyper_parameters":
        from tests.runs import save_lightning

        save_lightning(fold / "checkpoints" / "last.ckpt", model,
                       {"model_name": "test_resnet", "model_kwargs": {"checkpoint_path": str(secret)}})
        key = "model_kwargs.checkpoint_path"
    else:
        fold.mkdir(parents=True)
        torch.save(model.state_dict(), fold / "pytorch_model.bin")
        (fold / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 3,
                                                      "model_args": {"checkpoint_path": str(secret)}}))
        key = "model_kwargs.checkpoint_path"
    with no_hang(60), pytest.raises(ConfigError, match=rf"{key} names a file \('{secret}'\).*never reads a file"):
        make_bundle(PackRequest(models=tmp_path / "runs", options={"img_size": "32"}), tmp_path / "b")
