"""``builder pack`` on a real Docker engine: the image runs offline and read-only, matches the host run
byte for byte, and is reproducible. Slow: the first run builds the environment image (torch and all)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from typer.testing import CliRunner

from builder.cli import app
from builder.errors import DockerError
from builder.image import env as env_module
from submission.errors import OutputError
from submission.manifest import load_manifest
from tests import naive
from tests.bundles import make_images
from tests.conftest import BASE
from tests.runs import mixed_runs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    mixed_runs(root / "runs", img_size=48)
    make_images(root / "test", n=7)
    ids = ["img6", "img2", "img0", "img5", "img1"]  # a sample naming only some files, in its own order
    (root / "sample.csv").write_text("image,a,b,c\n" + "".join(f"{i},0.0,0.0,0.0\n" for i in ids))
    for folder in (root, root / "test"):
        folder.chmod(0o755)
    for image in (root / "test").iterdir():
        image.chmod(0o644)
    return root


@pytest.fixture(scope="module")
def pack(workspace, module_docker_cleanup):
    """Pack the workspace's runs as ``tag`` (removed after the module's tests)."""
    def pack_as(tag: str, *extra: str) -> dict:
        module_docker_cleanup(f"{tag}:latest")
        return _pack(workspace, tag, *extra)

    return pack_as


def _pack(workspace: Path, tag: str, *extra: str) -> dict:
    result = CliRunner().invoke(app, [
        "pack", "--models", str(workspace / "runs"), "--sample-submission", str(workspace / "sample.csv"),
        "--base-image", BASE, "--tag", tag, "--bundle", str(workspace / f"bundle-{tag}"), *extra,
    ])
    assert result.exit_code == 0, result.output
    assert "smoke run: 3 images" in result.output
    image_id = result.output.strip().splitlines()[-1].split(": ")[1].split()[0]
    return {"id": image_id, "output": result.output}


def docker_run(workspace: Path, tag: str, out: Path, *flags: str) -> subprocess.CompletedProcess:
    out.mkdir(exist_ok=True)
    out.chmod(0o777)
    return subprocess.run(
        [DOCKER, "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", *flags,
         "-v", f"{workspace / 'test'}:/data:ro", "-v", f"{out}:/output", tag, "/data"],
        capture_output=True, text=True, timeout=600,
    )


def test_image_runs_offline_read_only_and_matches_the_host_run(client, workspace, pack):
    built = pack("e2e-a", "--tta", "hflip")
    proc = docker_run(workspace, "e2e-a", workspace / "out-docker")
    assert proc.returncode == 0, proc.stderr
    assert "wrote /output/submission.csv (5 rows, 4 columns)" in proc.stdout
    host = subprocess.run(
        ["python", "-m", "submission", str(workspace / "test"), "--bundle", str(workspace / "bundle-e2e-a"),
         "--out", str(workspace / "host.csv"), "--quiet"],
        capture_output=True, text=True, cwd=Path(__file__).parents[2],
    )
    assert host.returncode == 0, host.stderr
    in_docker = (workspace / "out-docker" / "submission.csv").read_bytes()
    assert in_docker == (workspace / "host.csv").read_bytes()
    assert in_docker.decode().splitlines()[0] == "image,a,b,c"
    assert [line.split(",")[0] for line in in_docker.decode().splitlines()[1:]] == ["img6", "img2", "img0", "img5", "img1"]

    image = client.images.get(built["id"])
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", "submission"]
    labels = config["Labels"]
    manifest = (workspace / "bundle-e2e-a" / "manifest.json").read_bytes()
    assert labels["submission.manifest.sha256"] == hashlib.sha256(manifest).hexdigest()
    pins = json.loads(labels["submission.pins"])
    assert pins["timm"] == timm.__version__ and pins["torch"] == torch.__version__.split("+")[0]
    assert "submission.base.id" in labels and "submission.builder.version" in labels


def test_hardened_run_as_graders_do(client, workspace, pack):
    pack("e2e-a", "--tta", "hflip")
    proc = docker_run(workspace, "e2e-a", workspace / "out-hardened", "--cap-drop", "ALL",
                      "--security-opt", "no-new-privileges", "--pids-limit", "256", "--user", "12345:12345")
    assert proc.returncode == 0, proc.stderr


def test_same_inputs_give_the_same_image_and_weights_layer_is_reused(client, workspace, pack):
    first = pack("e2e-r1")
    second = pack("e2e-r2")
    assert first["id"] == second["id"]
    changed = pack("e2e-r3", "--tta", "flips")
    assert changed["id"] != first["id"]
    layers = [client.images.get(i["id"]).attrs["RootFS"]["Layers"] for i in (first, changed)]
    assert layers[0][:-1] == layers[1][:-1]  # the environment and the weights layer are shared
    assert layers[0][-1] != layers[1][-1]  # only the code + manifest layer differs


def test_output_folder_not_writable_is_a_clear_error(client, workspace, pack):
    pack("e2e-a", "--tta", "hflip")
    out = workspace / "out-locked"
    out.mkdir()
    proc = subprocess.run(
        [DOCKER, "run", "--rm", "--network", "none", "-v", f"{workspace / 'test'}:/data:ro", "-v", f"{out}:/output",
         "e2e-a", "/data"], capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == OutputError.exit_code
    assert "cannot write to /output (Permission denied) as uid 10001" in proc.stderr


def test_missing_base_image_is_never_pulled(client, workspace):
    result = CliRunner().invoke(app, [
        "pack", "--models", str(workspace / "runs"), "--base-image", "no-such-base:1", "--tag", "e2e-x"])
    assert result.exit_code == DockerError.exit_code
    assert "'no-such-base:1' is not present locally, and images are never pulled" in result.output


def test_docker_stop_ends_the_run_cleanly(client, workspace, pack, tmp_path):
    """docker stop sends SIGTERM to PID 1, the runtime: it must stop at once, writing nothing half."""
    pack("e2e-a", "--tta", "hflip")
    many = tmp_path / "many"
    many.mkdir()
    image = (workspace / "test" / "img0.jpg").read_bytes()
    for i in range(3000):
        (many / f"{i}.jpg").write_bytes(image)
    for path in (tmp_path, many):
        path.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    container = client.containers.run(
        "e2e-a", ["/data", "--ignore-sample", "--batch-size", "1"], network_mode="none", read_only=True,
        tmpfs={"/tmp": ""}, detach=True,
        volumes={str(many): {"bind": "/data", "mode": "ro"}, str(out): {"bind": "/output", "mode": "rw"}},
    )
    try:
        for _ in range(600):
            if b"model(s), TTA" in container.logs():
                break
            time.sleep(0.1)
        container.stop(timeout=20)
        status = container.wait(timeout=60)["StatusCode"]
        log = container.logs().decode()
    finally:
        container.remove(force=True)
    assert status == 143, log
    assert "stopped by SIGTERM: no new submission written" in log
    assert list(out.iterdir()) == []


def _verify(workspace: Path, image: str, *extra: str):
    return CliRunner().invoke(app, ["verify", image, "--models", str(workspace / "runs"),
                                    "--sample-submission", str(workspace / "sample.csv"), *extra])


def test_a_second_machine_makes_the_same_image_id_and_verify_names_the_first_layer_that_differs(
        client, workspace, pack, tmp_path, monkeypatch):
    """As on a second machine: no wheelhouse and no pip cache; `builder verify` rebuilds the environment and the
    image from the inputs, loading nothing, to the image ID the pack made; with another TTA it names the layer."""
    pack("e2e-a", "--tta", "hflip")
    monkeypatch.setenv("SUBMISSION_BUILDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    rebuilt, real = [], env_module.env_image

    def once(*args, **kwargs):  # the second verify differs in the TTA alone: it reuses the environment rebuilt
        if not rebuilt:
            rebuilt.append(real(*args, **kwargs))
        return rebuilt[0]

    monkeypatch.setattr(env_module, "env_image", once)
    same = _verify(workspace, "e2e-a", "--tta", "hflip")
    assert same.exit_code == 0, same.output
    assert "e2e-a is exactly the image these inputs make" in same.output
    assert rebuilt[0].built and list((tmp_path / "cache" / "wheelhouse").iterdir())  # downloaded and built anew
    layers = len(client.images.get("e2e-a").attrs["RootFS"]["Layers"])

    other_tta = _verify(workspace, "e2e-a", "--tta", "flips")
    assert other_tta.exit_code == 1, other_tta.output
    assert f"first difference: layer {layers} of {layers} (code, manifest and sample)" in other_tta.output


LOAD_ALL = r"""
import ctypes, glob, json, os, re, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
loaded, failed = [], {}
for path in sorted(glob.glob(site + '/nvidia/*/lib/*.so*') + glob.glob(site + '/torch/lib/*.so*')):
    try:
        ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        loaded.append(os.path.basename(path))
    except OSError as e:
        missing = re.match(r'(\S+): cannot open shared object file', str(e))
        failed[os.path.basename(path)] = missing.group(1) if missing else str(e)
left_out = {line.split('\t')[0].rsplit('/', 1)[-1] for line in open('/opt/venv/LEFT-OUT')}
print(json.dumps({'loaded': loaded, 'failed': failed, 'left_out': sorted(left_out)}))
"""


def test_the_slim_image_loads_every_cuda_library_torch_needs(client, workspace, pack):
    """The dynamic loader, inside the image: every library of torch and CUDA loads, or misses only what was never
    there (the GPU driver, InfiniBand and MPI stacks for NCCL's and NVSHMEM's plugins), never what was left out."""
    pack("e2e-a", "--tta", "hflip")
    out = client.containers.run("e2e-a", ["-c", LOAD_ALL], entrypoint=["/opt/venv/bin/python"], network_mode="none",
                                read_only=True, tmpfs={"/tmp": ""}, remove=True, stdout=True, stderr=True).decode()
    report = json.loads(out.strip().splitlines()[-1])
    loaded, failed, left_out = set(report["loaded"]), report["failed"], set(report["left_out"])
    assert {"libtorch_cpu.so", "libtorch_python.so", "libtorch_global_deps.so"} <= loaded
    if "libtorch_cuda.so" in loaded:  # a CUDA build of torch: its libraries and what they dlopen load too
        for family in ("libcudnn", "libcublasLt", "libcufft", "libnccl", "libnvrtc"):
            found = {n for n in loaded | set(failed) if n.startswith(family)}
            assert found and found <= loaded, (family, failed)
        assert any(n.startswith("libcusolverMg") for n in left_out)
    assert not set(failed.values()) & left_out, failed


@pytest.mark.parametrize("fmt, sample, extra", [
    ("binary", "image,prob_b\n{rows}", ["--classes", "a,b,c", "--positive-class", "b"]),
    ("labels", "image,top\n{rows}", ["--top-k", "2"]),
    ("value", "image,grade\n{rows}", ["--task", "regression", "--cutoffs", "-0.5,0.5"]),
])
def test_each_new_format_runs_in_docker_as_on_the_host(workspace, module_docker_cleanup, tmp_path, fmt, sample, extra):
    """A sample-driven pack per format (one probability column, top-k names, grades cut from a regression value):
    the image's CSV equals the runtime's on the host, byte for byte, and has the sample's header and ids."""
    runs = workspace / "runs"
    if fmt == "value":
        runs = tmp_path / "runs"
        mixed_runs(runs, num_classes=1, img_size=48)
    ids = ["img6", "img2", "img0", "img5", "img1"]
    (tmp_path / "sample.csv").write_text(sample.format(rows="".join(f"{i},0\n" for i in ids)))
    tag = module_docker_cleanup(f"e2e-{fmt}:latest").split(":")[0]
    result = CliRunner().invoke(app, ["pack", "--models", str(runs), "--sample-submission", str(tmp_path / "sample.csv"),
                                      "--base-image", BASE, "--tag", tag, "--bundle", str(tmp_path / "bundle"), *extra])
    assert result.exit_code == 0, result.output
    assert load_manifest(tmp_path / "bundle").output.format == fmt
    proc = docker_run(workspace, tag, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    host = subprocess.run([sys.executable, "-m", "submission", str(workspace / "test"), "--bundle", str(tmp_path / "bundle"),
                           "--out", str(tmp_path / "host.csv"), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert host.returncode == 0, host.stderr
    in_docker = (tmp_path / "out" / "submission.csv").read_text()
    assert in_docker == (tmp_path / "host.csv").read_text()
    lines = in_docker.splitlines()
    assert lines[0] == sample.splitlines()[0] and [line.split(",")[0] for line in lines[1:]] == ids


def test_an_engine_image_has_no_torch_and_matches_the_host_run(client, workspace, pack):
    built = pack("e2e-onnx", "--engine", "onnx", "--tta", "hflip")
    assert "runs on onnx: gate on 24 generated images" in built["output"]
    assert "every model runs on an engine: the environment leaves torch, timm and safetensors out" in built["output"]
    pins = json.loads(client.images.get(built["id"]).attrs["Config"]["Labels"]["submission.pins"])
    assert "onnxruntime" in pins and not {"openvino", "onnx", "torch", "timm", "safetensors"} & set(pins)
    missing = subprocess.run([DOCKER, "run", "--rm", "--network", "none", "--entrypoint", "python", "e2e-onnx", "-c",
                              "import importlib.util as u; print([m for m in ('torch', 'timm', 'safetensors') "
                              "if u.find_spec(m)])"], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 0 and missing.stdout.strip() == "[]", missing.stderr
    proc = docker_run(workspace, "e2e-onnx", workspace / "out-onnx", "--cpus", "2")
    assert proc.returncode == 0, proc.stderr
    host = subprocess.run(
        [sys.executable, "-m", "submission", str(workspace / "test"), "--bundle", str(workspace / "bundle-e2e-onnx"),
         "--out", str(workspace / "host-onnx.csv"), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert host.returncode == 0, host.stderr
    assert (workspace / "out-onnx" / "submission.csv").read_bytes() == (workspace / "host-onnx.csv").read_bytes()
    # and the eager models themselves, called one image at a time, agree with what the image wrote
    written = pd.read_csv(workspace / "out-onnx" / "submission.csv", dtype={"image": str})
    files = {p.stem: p for p in (workspace / "test").iterdir()}
    eager = naive.probabilities(workspace / "bundle-e2e-onnx", [files[i] for i in written["image"]])
    np.testing.assert_allclose(written.iloc[:, 1:].to_numpy(), eager, atol=1e-4)
