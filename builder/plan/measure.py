"""A packed bundle run on a labelled held-out folder, one model and one TTA view at a time: what each (model, view)
costs per image, what decoding costs, what starting costs, and the logits of each, for the search to merge.

The runtime's own pieces do the work (its decode and preprocessing, its views, its forward pass and head split),
so what is measured is what the image will run; only the views are run apart, where the runtime stacks them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builder.errors import ConfigError
from submission import models as model_io
from submission.devices import Device
from submission.inputs.loader import DecodedImages, collate
from submission.manifest import Manifest
from submission.predict import forward, group_input, load_groups, on_host
from submission.runner import Options, open_bundle, test_set
from submission.tta import views_of


@dataclass
class Measured:
    manifest: Manifest
    ids: list[str]
    logits: list[np.ndarray]  # per head: [M models, V views, N images, K outputs]
    seconds: np.ndarray  # [M, V]: each model's forward passes on each view, per image
    decode_seconds: float  # decoding and preprocessing, per image
    start_seconds: float  # the interpreter with the runtime imported, and the models loaded

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(views_of(self.manifest.tta))


def _import_seconds() -> float:
    """A fresh interpreter importing the runtime, as the image starts."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import submission.runner"], check=True, capture_output=True, timeout=600)
    return time.perf_counter() - start


def measure(bundle: Path, data: Path, batch_size: int = 32, device: str = "cpu") -> Measured:
    """Every model of ``bundle`` on every view of its TTA preset, over every image of ``data``."""
    options = Options(batch_size=batch_size, ignore_sample=True, quiet=True)
    manifest = open_bundle(bundle, options)
    takes = [m.name for m in manifest.models if m.takes_metadata]
    if takes:
        raise ConfigError(f"builder plan runs image-only ensembles; models {takes} take metadata")
    test = test_set(data, bundle, manifest, options)
    where = Device.of(device)
    start = time.perf_counter()
    groups = load_groups(manifest, bundle, where)
    load_seconds = time.perf_counter() - start
    views, heads, n = views_of(manifest.tta), manifest.heads, len(test.ids)
    logits = [np.zeros((len(manifest.models), len(views), n, h.size)) for h in heads]
    seconds = np.zeros((len(manifest.models), len(views)))
    dataset = DecodedImages(test.paths, [g.preprocessor for g in groups], decode_mode=manifest.decode, ids=test.ids)
    decode_seconds = 0.0
    for first in range(0, n, batch_size):
        rows = range(first, min(first + batch_size, n))
        began = time.perf_counter()
        batch = collate([dataset[i] for i in rows]).checked()
        decode_seconds += time.perf_counter() - began
        for group, pixels in zip(groups, batch.pixels):
            for v, name in enumerate(views):
                seen: dict[bool, object] = {}  # eager or not -> the view, made once for each kind of model
                for index, model in group.members:
                    spec = manifest.models[index]
                    eager_model = not isinstance(model, model_io.Engine)
                    if eager_model not in seen:
                        seen[eager_model] = group_input(pixels, group, [name], where, eager_model)
                    began = time.perf_counter()
                    out = forward(model, (seen[eager_model],), where, lambda message: None, spec.name)
                    parts = model_io.split(out, spec, heads, len(rows))
                    seconds[index, v] += time.perf_counter() - began
                    for h, part in enumerate(parts):
                        logits[h][index, v, first:first + len(rows)] = on_host(part)
    return Measured(manifest, list(test.ids), logits, seconds / n, decode_seconds / n, _import_seconds() + load_seconds)
