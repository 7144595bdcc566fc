"""The Kubernetes and Slurm examples parse, and use the variables and commands the runtime reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from submission.__main__ import parse_args, parse_merge_args
from submission.shards import COUNT_VARIABLES, INDEX_VARIABLES, parse_shard

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_kubernetes_indexed_job_and_its_merge():
    (shards,) = yaml.safe_load_all((EXAMPLES / "k8s" / "shards.yaml").read_text())
    (merge,) = yaml.safe_load_all((EXAMPLES / "k8s" / "merge.yaml").read_text())
    spec = shards["spec"]
    assert spec["completionMode"] == "Indexed"  # Kubernetes then sets JOB_COMPLETION_INDEX in each pod
    assert "JOB_COMPLETION_INDEX" in [name for name, _ in INDEX_VARIABLES]
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= set(COUNT_VARIABLES) and int(env["SUBMISSION_SHARDS"]) == spec["completions"]
    args = parse_args(container["args"])
    assert args.shard == "auto" and str(args.out_probs) == "/output/probs"
    assert parse_shard(args.shard, {"JOB_COMPLETION_INDEX": "3", **env}) == (3, spec["completions"])
    (merger,) = merge["spec"]["template"]["spec"]["containers"]
    assert merger["args"][0] == "merge"
    merged = parse_merge_args(merger["args"][1:])
    assert merged.folder == args.out_probs and str(merged.out) == "/output/submission.csv"


def test_the_slurm_array_and_its_merge():
    text = (EXAMPLES / "slurm" / "shards.sbatch").read_text()
    low, high = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", text).groups())
    run = re.search(r"^\s+submission\.sif (.*)$", text, re.MULTILINE).group(1).split()
    args = parse_args(run)
    environ = {"SLURM_ARRAY_TASK_ID": str(high), "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_COUNT": str(high - low + 1)}
    assert parse_shard(args.shard, environ) == (high - low, high - low + 1)
    merge = re.search(r"submission\.sif (merge .*)$", (EXAMPLES / "slurm" / "merge.sbatch").read_text(), re.MULTILINE)
    merged = parse_merge_args(merge.group(1).split()[1:])
    assert merged.folder == args.out_probs
