"""``evalai``: EvalAI's code-upload phases. The test set is mounted read-only at ``/dataset``; the image writes
``submission.csv`` into ``$SUBMISSION_PATH`` (``/submission``), where a sidecar looks every 300 s and uploads the
first CSV it finds, so the file must appear once, whole (the runtime's rename does that).
"""

from __future__ import annotations

from builder.platforms.base import Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="evalai",
    title="EvalAI code-upload phase",
    entry=Entry(platform="evalai", mode="folder", input="/dataset", output="${SUBMISSION_PATH:-/submission}/submission.csv",
                metadata=None, weights=None, line=None, devices="all"),
    limits=Limits(time_seconds=86400.0, cpus=None, memory=None, gpus=("T4",), archive_bytes=None, tmpfs_bytes=None),
    sandbox=Sandbox(data="/dataset", output="/submission", env={"SUBMISSION_PATH": "/submission"},
                    read_only_root=False, tmpfs=False),
    hand_in="the image, pushed with `evalai push submission:latest --phase <phase>` (EvalAI's CLI)",
    messages={"timeout": "Execution time limit exceeded", "no output": "submission.json/submission.csv not found.",
              "exit code": "the submission container exited with an error (its log is the job's stderr)"},
    source="Cloud-CV/EvalAI scripts/workers/code_upload_submission_worker.py (the /dataset and /submission mounts, "
           "SUBMISSION_PATH, 1 GPU or the challenge's CPU cores and memory) and code_upload_worker_utils/"
           "monitor_submission.sh, make_submission.sh (a poll every 300 s, the messages)",
    unverified=("the GPU kind: EvalAI's clusters are the host's (T4 on AWS g4dn is usual); pass --gpu-arch",
                "the time limit: the challenge's submission_time_limit (default 86400 s); pass --time-limit",
                "CPU-only phases set their cores and memory: pass --cpus and --memory"),
)
