"""What the slim environment leaves out, checked on this machine's own torch install against the system's dynamic
loader (``ldd``) and ``grep``, two tools that know nothing of ``builder.image.slim``."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from builder.image.slim import LIBRARY_DISTS, is_elf, mentioned, needed, slim, unresolved


def _installed(name: str) -> list[Path]:
    dist = metadata.distribution(name)
    return [Path(dist.locate_file(f)).resolve() for f in dist.files or () if Path(dist.locate_file(f)).is_file()]


@pytest.fixture(scope="module")
def host_dists() -> dict[str, list[Path]]:
    """torch, torchvision, triton, setuptools, numpy and every nvidia-* distribution installed here."""
    names = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()}
    libraries = sorted(n for n in names if n.startswith(LIBRARY_DISTS))
    if not libraries:
        pytest.skip("this torch build brings no nvidia-* libraries: nothing to leave out")
    wanted = [n for n in ("torch", "torchvision", "triton", "setuptools", "numpy") if n in names] + libraries
    return {n: _installed(n) for n in wanted}


@pytest.fixture(scope="module")
def dropped(host_dists):
    return slim(host_dists)


def _system_sonames() -> set[str]:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if " => " in line}


def test_every_library_the_dynamic_loader_loads_with_torch_is_kept(host_dists, dropped):
    if shutil.which("ldd") is None:
        pytest.skip("no ldd here")
    gone = {d.path for d in dropped}
    torch_libs = [p for p in host_dists["torch"] if p.suffix == ".so" and is_elf(p)]
    assert any(p.name == "libtorch_cuda.so" for p in torch_libs)
    loaded: set[Path] = set()
    for lib in torch_libs:
        out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
        loaded |= {Path(m).resolve() for m in re.findall(r"=> (/\S+)", out)}
    from_libraries = {p for p in loaded if "/nvidia/" in str(p)}
    assert len(from_libraries) >= 10  # cuBLAS, cuDNN, NCCL, cuFFT, ... are loaded with libtorch_cuda
    assert not from_libraries & gone


def test_what_is_left_out_is_named_by_no_library_that_stays(host_dists, dropped):
    """Each left-out CUDA library: ``grep`` finds its name in no ELF file that stays (a ``dlopen`` needs the name)."""
    libraries = [d for d in dropped if d.dist.startswith(LIBRARY_DISTS)]
    assert {d.path.name.split(".so")[0] for d in libraries} >= {"libcusolverMg", "libnvblas", "libcufftw"}
    gone = {d.path for d in dropped}
    staying_elves = [str(p) for files in host_dists.values() for p in files if p not in gone and is_elf(p)]
    stems = sorted({d.path.name.split(".so")[0] + ".so" for d in libraries})
    patterns = [arg for stem in stems for arg in ("-e", stem)]
    out = subprocess.run(["grep", "-aoHF", *patterns, *staying_elves], capture_output=True).stdout
    hits = {line.decode(errors="replace") for line in out.splitlines()}
    assert not hits, f"named by libraries that stay: {sorted(hits)[:10]}"


def test_what_dlopen_may_load_is_kept(host_dists, dropped):
    """cuDNN's sub-libraries and NVRTC's builtins are not DT_NEEDED but named: they stay."""
    gone = {d.path.name for d in dropped}
    kept = {p.name for files in host_dists.values() for p in files} - gone
    cudnn = {n for n in kept | gone if n.startswith("libcudnn_")}
    if cudnn:
        assert cudnn <= kept
    builtins = {n for n in kept | gone if n.startswith("libnvrtc-builtins.so")}
    assert builtins <= kept


def test_triton_setuptools_headers_and_static_libraries_are_left_out_unless_asked(host_dists, dropped):
    by_dist = {d.dist for d in dropped if d.reason.startswith(("torch.compile", "builds C++"))}
    assert by_dist == {"triton", "setuptools"} & set(host_dists)
    assert all(d.path.suffix in (".h", ".hh", ".hpp", ".hxx", ".cuh", ".inl", ".a", ".cmake")
               for d in dropped if d.reason.startswith("read only when compiling"))
    assert any(d.path.name == "Tensor.h" for d in dropped)
    if "triton" in host_dists:
        asked = slim({"triton": host_dists["triton"]}, needed_by_user=["triton"])
        assert asked and all(d.reason.startswith("read only when compiling") for d in asked)


def test_nothing_a_kept_library_needs_is_missing(host_dists, dropped):
    gone = {d.path for d in dropped}
    files = [p for fs in host_dists.values() for p in fs if p not in gone]
    roots = [p for d, fs in host_dists.items() if not d.startswith(LIBRARY_DISTS) for p in fs if p not in gone and is_elf(p)]
    assert unresolved(files, roots, _system_sonames()) == []
    libtorch = next(p for p in roots if p.name == "libtorch_cpu.so")
    assert ("libc.so.6" in needed(libtorch)) and (libtorch, "libc.so.6") in unresolved(files, [libtorch], system=())


def test_mentioned_finds_library_names_in_any_bytes(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01libfoo.so.12\x00junk nvshmem_transport_ibrc.so.3\x00.so\x00libbar.so\xffx.so.1.2.")
    assert mentioned(blob) == {"libfoo.so.12", "nvshmem_transport_ibrc.so.3", "libbar.so", "x.so.1.2"}
