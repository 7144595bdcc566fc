"""The bundle as a Ray Data transform: ``Dataset.map_batches(Predict, fn_constructor_kwargs={"bundle": ...})``.

Each actor loads the bundle once; each batch of rows with a ``path`` column gets one probability column per class
(named by the manifest's classes), computed by the same per-batch step as ``python -m submission``: decode once,
every model and TTA view, merged per head. GPU actors: ``num_gpus=1`` (the actor takes the GPU Ray gives it).
Merge "rank" needs the whole test set and metadata needs its file: both run with shards instead.

    import ray
    from submission.ray_data import Predict
    ds = ray.data.from_items([{"path": str(p)} for p in paths])
    out = ds.map_batches(Predict, fn_constructor_kwargs={"bundle": "bundle"}, concurrency=2, batch_size=32)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from submission.devices import parse as device_list
from submission.errors import BundleError
from submission.inputs.loader import DecodedImages, collate
from submission.manifest import load_manifest, verify_files
from submission.predict import load_groups, predict_batch


class Predict:
    def __init__(self, bundle: str | Path, device: str | None = None, strict: bool = False):
        self.bundle = Path(bundle)
        self.manifest = load_manifest(self.bundle)
        verify_files(self.bundle, self.manifest)
        if self.manifest.merge == "rank" or self.manifest.metadata is not None:
            raise BundleError("this bundle ranks over the whole test set or takes metadata: run it with "
                              "python -m submission --shard and merge instead of Ray Data")
        self.device = device_list(device or "all")[0]
        self.groups = load_groups(self.manifest, self.bundle, self.device)
        self.strict = strict

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = DecodedImages([Path(str(p)) for p in batch["path"]], [g.preprocessor for g in self.groups], self.strict,
                               self.manifest.decode)
        decoded = collate([images[i] for i in range(len(images))]).checked()
        probs = predict_batch(self.manifest, self.groups, decoded.pixels, None, device=self.device)
        out = dict(batch)
        for c, name in enumerate(self.manifest.classes):
            out[name] = probs[:, c]
        out["problem"] = np.array(decoded.problems, dtype=object)
        return out
