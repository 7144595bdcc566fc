"""Ray Data over a local cluster of two CPU actors gives the plain run's probabilities. Slow: it starts Ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from submission.runner import Options, run
from tests.bundles import make_images, manifest, three_fold_models, write_bundle

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")


def test_two_ray_actors_give_the_plain_runs_probabilities(tmp_path):
    from submission.ray_data import Predict

    paths = make_images(tmp_path / "test", n=10)
    bundle = tmp_path / "bundle"
    m = manifest(three_fold_models(bundle), tta="hflip")
    write_bundle(bundle, m)
    run(tmp_path / "test", bundle, tmp_path / "plain.csv", Options(workers=0, quiet=True))
    plain = pd.read_csv(tmp_path / "plain.csv").set_index("id")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"path": str(p)} for p in paths])
        rows = ds.map_batches(Predict, fn_constructor_kwargs={"bundle": str(bundle)}, concurrency=2, batch_size=3,
                              num_cpus=1).take_all()
    finally:
        ray.shutdown()
    assert len(rows) == 10
    got = pd.DataFrame(rows).assign(id=lambda t: t["path"].map(lambda p: p.rsplit("/", 1)[1].rsplit(".", 1)[0]))
    got = got.set_index("id").loc[plain.index, list(m.classes)]
    np.testing.assert_allclose(got.to_numpy(), plain[list(m.classes)].to_numpy(), atol=2e-6)
