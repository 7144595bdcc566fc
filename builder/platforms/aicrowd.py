"""``aicrowd``: AIcrowd's evaluators pass the paths in variables: the test images' folder in
``AICROWD_TEST_IMAGES_PATH``, the file to write in ``AICROWD_PREDICTIONS_OUTPUT_PATH``, and, where a challenge has
one, the test metadata in ``AICROWD_TEST_METADATA_PATH``.
"""

from __future__ import annotations

from builder.platforms.base import Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="aicrowd",
    title="AIcrowd (paths from AICROWD_* variables)",
    entry=Entry(platform="aicrowd", mode="folder", input="${AICROWD_TEST_IMAGES_PATH:-/test_images}",
                output="${AICROWD_PREDICTIONS_OUTPUT_PATH:-/tmp/output.csv}", metadata="${AICROWD_TEST_METADATA_PATH:-}",
                weights=None, line=None, devices="all"),
    limits=Limits(time_seconds=None, cpus=4.0, memory="8g", gpus=("T4",), archive_bytes=None, tmpfs_bytes=None),
    sandbox=Sandbox(data="/test_images", output="/shared", read_only_root=False, tmpfs=False,
                    env={"AICROWD_IS_GRADING": "True", "AICROWD_TEST_IMAGES_PATH": "/test_images",
                         "AICROWD_PREDICTIONS_OUTPUT_PATH": "/shared/predictions.csv"}),
    hand_in="a git tag pushed to the challenge's repository on gitlab.aicrowd.com, whose aicrowd.json and Dockerfile "
            "the evaluator builds (FROM this image, with its weights inside)",
    messages={"exit code": "the evaluation failed (its log is shown in debug mode)"},
    source="AIcrowd food-recognition and snake-species starter kits (aicrowd.json, run.sh, run.py: the AICROWD_* "
           "variables, network off)",
    unverified=("the hardware: per challenge (e.g. 4 x T4, or 4 vCPU / 8 GB without GPU); pass --cpus, --memory, "
                "--gpu-arch",
                "the time limit: per challenge; pass --time-limit",
                "whether the evaluator loads an image archive: the starter kits build from the repository"),
)
