"""Every device of the machine, and test sets split over array tasks: the CSV is byte for byte the single run's."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from submission.__main__ import main
from submission.errors import DeviceError, ShardError
from submission.manifest import load_manifest, write_manifest
from submission.runner import Options, merge, run
from submission.shards import parse_shard, rows_of
from tests.bundles import make_images, manifest, preprocess, save_model, three_fold_models, with_sample, write_bundle


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    folder = root / "test"
    paths = make_images(folder, n=23)
    ids = [p.stem for p in paths][::-1]  # the sample's own order
    bundle = root / "bundle"
    m = with_sample(bundle, manifest(three_fold_models(bundle), tta="hflip"), ids)
    write_bundle(bundle, m)
    single = root / "single.csv"
    run(folder, bundle, single, Options(workers=0, quiet=True, batch_size=4))
    return root, folder, bundle, single


def test_two_cpu_processes_write_the_single_device_csv(setup, tmp_path):
    _, folder, bundle, single = setup
    result = run(folder, bundle, tmp_path / "two.csv", Options(workers=2, quiet=True, batch_size=4, devices="cpu,cpu"))
    assert result.device == "cpu, cpu"
    assert (tmp_path / "two.csv").read_bytes() == single.read_bytes()


def test_devices_are_named_or_refused():
    from submission.devices import parse

    assert [str(d) for d in parse("cpu,cpu")] == ["cpu", "cpu"]
    with pytest.raises(DeviceError, match="names GPU 0, but 0 GPU"):
        parse("0,1")
    with pytest.raises(DeviceError, match="'tpu' is neither a GPU index nor 'cpu'"):
        parse("tpu")


def test_shards_then_merge_give_the_single_run_csv(setup, tmp_path):
    _, folder, bundle, single = setup
    probs = tmp_path / "probs"
    for i in range(3):
        assert main([str(folder), "--bundle", str(bundle), "--shard", f"{i}/3", "--out-probs", str(probs), "--quiet",
                     "--workers", "0", "--batch-size", "4"]) == 0
    assert sorted(p.name for p in probs.iterdir()) == [f"shard-0000{i}-of-00003.npz" for i in range(3)]
    assert main(["merge", str(probs), "--bundle", str(bundle), "--out", str(tmp_path / "merged.csv"), "--quiet"]) == 0
    assert (tmp_path / "merged.csv").read_bytes() == single.read_bytes()


def test_a_finished_shard_is_skipped_when_its_task_is_retried(setup, tmp_path, capsys):
    _, folder, bundle, _ = setup
    options = Options(workers=0, batch_size=4, shard="1/2", out_probs=tmp_path)
    first = run(folder, bundle, tmp_path / "x.csv", options)
    stamp = first.path.stat().st_mtime_ns
    again = run(folder, bundle, tmp_path / "x.csv", options)
    assert again.path == first.path and first.path.stat().st_mtime_ns == stamp
    assert "shard 1/2 is already in" in capsys.readouterr().err


def test_a_missing_shard_another_bundles_shard_and_a_bad_index_are_named(setup, tmp_path):
    root, folder, bundle, _ = setup
    probs = tmp_path / "probs"
    for i in (0, 2):
        run(folder, bundle, tmp_path / "x.csv", Options(workers=0, quiet=True, shard=f"{i}/3", out_probs=probs))
    with pytest.raises(ShardError, match=r"1 of 3 shards are missing from .*: shard-00001-of-00003.npz"):
        merge(probs, bundle, tmp_path / "m.csv")
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    write_manifest(other, replace(load_manifest(other), tta="flips"))
    run(folder, other, tmp_path / "x.csv", Options(workers=0, quiet=True, shard="1/3", out_probs=probs))
    with pytest.raises(ShardError, match=r"shard-00001-of-00003.npz was made with another bundle"):
        merge(probs, bundle, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
    with pytest.raises(ShardError, match="shard index 3 is out of range for 3 shard"):
        run(folder, bundle, tmp_path / "x.csv", Options(workers=0, quiet=True, shard="3/3", out_probs=probs))


def test_overlapping_shards_are_named(setup, tmp_path):
    _, folder, bundle, _ = setup
    probs = tmp_path / "probs"
    for i in range(2):
        run(folder, bundle, tmp_path / "x.csv", Options(workers=0, quiet=True, shard=f"{i}/2", out_probs=probs))
    shutil.copy(probs / "shard-00000-of-00002.npz", probs / "shard-00002-of-00002.npz")
    with pytest.raises(ShardError, match="is in more than one shard"):
        merge(probs, bundle, tmp_path / "m.csv")


def test_the_shard_split_is_deterministic_and_complete():
    ids = [f"id{i}" for i in range(10)][::-1]
    parts = [rows_of(ids, i, 3) for i in range(3)]
    assert sorted(r for p in parts for r in p) == list(range(10))
    assert [sorted(ids[r] for r in p) for p in parts] == [["id0", "id1", "id2"], ["id3", "id4", "id5"],
                                                         ["id6", "id7", "id8", "id9"]]


@pytest.mark.parametrize("environ, expected", [
    ({"JOB_COMPLETION_INDEX": "2", "SUBMISSION_SHARDS": "4"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "3"}, (2, 3)),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ARRAY_SIZE": "10"}, (0, 10)),
])
def test_array_engines_give_index_and_count(environ, expected):
    assert parse_shard("auto", environ) == expected


def test_a_kubernetes_index_needs_the_count():
    with pytest.raises(ShardError, match="the number of shards is unknown"):
        parse_shard("auto", {"JOB_COMPLETION_INDEX": "1"})
    assert parse_shard("auto/5", {"JOB_COMPLETION_INDEX": "1"}) == (1, 5)
    with pytest.raises(ShardError, match="none of JOB_COMPLETION_INDEX"):
        parse_shard("auto/5", {})


def test_rank_merge_over_shards_equals_the_single_run(tmp_path):
    folder = tmp_path / "test"
    make_images(folder, n=12)
    bundle = tmp_path / "bundle"
    specs = tuple(save_model(bundle, f"fold{i}", "test_resnet", 1, preprocess(32), seed=i) for i in range(2))
    m = manifest(specs, task="multilabel", fmt="binary", merge="rank")
    write_bundle(bundle, replace(m, output=replace(m.output, columns=("id", "target"))))
    run(folder, bundle, tmp_path / "single.csv", Options(workers=0, quiet=True, batch_size=5))
    for i in range(2):
        run(folder, bundle, tmp_path / "x.csv", Options(workers=0, quiet=True, batch_size=5, shard=f"{i}/2",
                                                        out_probs=tmp_path / "p"))
    merge(tmp_path / "p", bundle, tmp_path / "merged.csv")
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    values = np.loadtxt(tmp_path / "single.csv", delimiter=",", skiprows=1, usecols=1)
    np.testing.assert_allclose(values * 48, np.round(values * 48), atol=1e-3)  # (rank_1 + rank_2) / 24, ties halved


def test_merge_needs_shards(tmp_path, setup):
    _, _, bundle, _ = setup
    with pytest.raises(ShardError, match="no shard files"):
        merge(tmp_path, bundle, tmp_path / "m.csv")
    assert Path(tmp_path).is_dir()
