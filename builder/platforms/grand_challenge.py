"""``grand-challenge``: Grand Challenge algorithm containers. One job per case: the case's file lies under
``/input`` (read-only, e.g. ``/input/images/<interface>/<uuid>.tif``), and the image writes its answer as JSON under
``/output`` (the phase's output interface decides the file: ``results.json`` by default): the class probabilities as
an object, or, with ``--format binary``, the positive class's probability as a number. The weights may be
uploaded apart, as a model tarball extracted to ``/opt/ml/model``: ``builder export`` writes it, and the image then
holds no weights.
"""

from __future__ import annotations

from builder.platforms.base import GiB, Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="grand-challenge",
    title="Grand Challenge algorithm (one case per job)",
    entry=Entry(platform="grand-challenge", mode="case", input="/input", output="/output/results.json", metadata=None,
                weights="/opt/ml/model", line=None, devices="all"),
    limits=Limits(time_seconds=None, cpus=4.0, memory="16g", gpus=("T4",), archive_bytes=10 * GiB, tmpfs_bytes=None),
    sandbox=Sandbox(data="/input", output="/output", one_case_per_run=True, model_mount="/opt/ml/model"),
    hand_in="the image archive (`docker save | gzip`, at most 10 GiB) on the algorithm's Containers page, and the "
            "model tarball on its Models page",
    messages={"exit code": "the job is marked failed (a non-zero exit code)",
              "no output": "the job's output interface has no value"},
    source="grand-challenge.org documentation: 'Runtime Environment' (no network, /input read-only, /tmp and /output "
           "writable, one case at a time, ml.g4dn.xlarge: one T4, 4 vCPUs, 16 GiB), 'How is the test data provided "
           "to the algorithm container?' (/input/images/<interface>/, /output/<interface>.json), 'Adding the model "
           "and container' (a model tarball extracted at /opt/ml/model/)",
    unverified=("the output file and its value: the phase's interface (a float for a probability, an object "
                "otherwise); pass --output-path",
                "the time limit: set by the phase; pass --time-limit",
                "input files PIL cannot read (.mha): convert them, or ask the phase for .tif or .png"),
    settings={"format": "probs"},  # the class probabilities, as an object; --format binary writes one number
    weights_apart=True,
)
