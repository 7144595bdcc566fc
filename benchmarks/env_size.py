"""The environment image the builder writes against a plain ``pip install`` image of the same pins, on one base.

In one run: ``builder.image.env.env_image`` (slim: what inference never loads left out; with ``--full`` as
well, everything kept), the environment of a bundle whose models all run on ONNX Runtime (no torch, timm or
safetensors: what ``builder pack --engine onnx`` installs), and the top-level ``Dockerfile`` built with
``docker build`` from the same wheelhouse
(``pip install --require-hashes`` of the same lock into a venv: what a hand-written image holds). Prints each
image's size, what each adds to the base, and the ratios, and writes them as JSON. The plain image, and the
stage ``docker build`` leaves behind, are removed afterwards; the builder's images stay cached as ``builder
pack`` would leave them.

    python benchmarks/env_size.py --base-image submission-base:bookworm
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from docker.errors import ImageNotFound

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.environment import EAGER_PACKAGES, RUNTIME_PACKAGES  # noqa: E402
from builder.image.base import probe  # noqa: E402
from builder.image.engine import connect  # noqa: E402
from builder.image.env import env_image  # noqa: E402
from builder.image.lock import LOCK_NAME, wheelhouse  # noqa: E402

PLAIN_TAG = "submission-env-plain:benchmark"
WITHOUT_TORCH = (*(p for p in RUNTIME_PACKAGES if p not in EAGER_PACKAGES), "onnxruntime")
GB = 1e9


def build_plain(client, base_name: str, python: str) -> tuple[int, float]:
    """``docker build`` of the reference Dockerfile over the wheelhouse: (image size, seconds)."""
    folder, _ = wheelhouse(RUNTIME_PACKAGES, python)
    before = {i.id for i in client.images.list(all=True)}
    with tempfile.TemporaryDirectory(prefix="env-size-") as tmp:
        context = Path(tmp)
        shutil.copyfile(ROOT / "Dockerfile", context / "Dockerfile")
        (context / "wheels").mkdir()
        for wheel in [*folder.glob("*.whl"), folder / LOCK_NAME]:
            try:
                os.link(wheel, context / "wheels" / wheel.name)
            except OSError:
                shutil.copyfile(wheel, context / "wheels" / wheel.name)
        start = time.perf_counter()
        image, _ = client.images.build(path=str(context), tag=PLAIN_TAG, buildargs={"BASE_IMAGE": base_name},
                                       network_mode="none", rm=True, forcerm=True)
        seconds = time.perf_counter() - start
    size = image.attrs["Size"]
    client.images.remove(PLAIN_TAG, force=True)
    # what the build left: untagged images of its steps (they have a parent; an image loaded meanwhile has none)
    made = {i.id for i in client.images.list(all=True)} - before
    leftovers = {i.id: i.attrs["Parent"] for i in map(client.images.get, made)
                 if not i.tags and i.attrs.get("Parent")}
    for leftover in sorted(leftovers, key=lambda i: i in leftovers.values()):  # children first; a parent left
        with contextlib.suppress(ImageNotFound):  # with no child goes with its last child
            client.images.remove(leftover, force=True)
    return size, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-image", default="submission-base:bookworm")
    parser.add_argument("--full", action="store_true", help="also the builder's image with nothing left out")
    parser.add_argument("--out", type=Path, default=Path("env_size.json"))
    args = parser.parse_args()
    client = connect()
    base = probe(client, args.base_image)
    base_size = client.images.get(args.base_image).attrs["Size"]

    sizes, seconds = {}, {}
    builds = [("slim", RUNTIME_PACKAGES, False), ("onnx, no torch", WITHOUT_TORCH, False)]
    for name, packages, full in builds + ([("full", RUNTIME_PACKAGES, True)] if args.full else []):
        start = time.perf_counter()
        env = env_image(client, args.base_image, packages, full=full)
        seconds[name] = time.perf_counter() - start
        sizes[name] = client.images.get(env.tag).attrs["Size"]
        print(f"builder, {name}: {env.tag} {sizes[name] / GB:.2f} GB ({(sizes[name] - base_size) / GB:.2f} GB on the "
              f"base), {'built' if env.built else 'found cached'} in {seconds[name]:.0f} s; left out: "
              + (", ".join(f"{what} {n / GB:.2f} GB" for what, n in env.left_out.items()) or "nothing"), flush=True)
    sizes["plain"], seconds["plain"] = build_plain(client, args.base_image, base.python)
    print(f"plain pip install (Dockerfile): {sizes['plain'] / GB:.2f} GB ({(sizes['plain'] - base_size) / GB:.2f} GB on "
          f"the base), built in {seconds['plain']:.0f} s", flush=True)

    figures = {"base_image": args.base_image, "base_bytes": base_size, "bytes": sizes, "seconds": seconds,
               "slim_over_plain": sizes["slim"] / sizes["plain"],
               "slim_over_plain_above_base": (sizes["slim"] - base_size) / (sizes["plain"] - base_size)}
    figures["no_torch_over_plain"] = sizes["onnx, no torch"] / sizes["plain"]
    print(f"slim / plain: {figures['slim_over_plain']:.3f} of the image, "
          f"{figures['slim_over_plain_above_base']:.3f} of what each adds to the base")
    print(f"onnx, no torch / plain: {figures['no_torch_over_plain']:.3f} of the image (goal: 0.40 or less), "
          f"{(sizes['onnx, no torch'] - base_size) / (sizes['plain'] - base_size):.3f} of what each adds to the base")
    if "full" in sizes:
        figures["full_over_plain"] = sizes["full"] / sizes["plain"]
        print(f"full / plain: {figures['full_over_plain']:.3f}")
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
