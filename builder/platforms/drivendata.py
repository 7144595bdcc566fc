"""``drivendata``: DrivenData's code execution. ``submission.zip`` is unpacked in ``/code_execution``, with
``main.py`` at its root, and run by the competition's runtime image (a conda environment; nothing can be installed
at run time and the network is off); the data is at ``/code_execution/data`` and ``submission.csv`` must appear
beside ``main.py``."""

from __future__ import annotations

from builder.platforms.base import CodeExport, Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="drivendata",
    title="DrivenData code execution (the competition's runtime image)",
    entry=Entry(platform="drivendata", mode="folder", input="/code_execution/data",
                output="/code_execution/submission.csv", metadata=None, weights=None, line=None, devices="all"),
    limits=Limits(time_seconds=8 * 3600.0, cpus=None, memory=None, gpus=(), archive_bytes=None, tmpfs_bytes=None),
    sandbox=Sandbox(data="/code_execution/data", output="/code_execution", read_only_root=False, tmpfs=False),
    hand_in="submission.zip, uploaded on the competition's 'Submissions' page",
    messages={"no output": "ERROR: Script did not produce a submission.csv file in the main directory.",
              "exit code": "the submission exited with an error (its log is on the submission's page)"},
    source="drivendataorg/visiomel-melanoma-runtime README.md and runtime/entrypoint.sh (submission.zip unpacked "
           "in /code_execution, main.py run there, data in /code_execution/data, submission.csv beside main.py, "
           "no network, packages only through the runtime repository)",
    unverified=("the time limit: the competition's (8 h in several); pass --time-limit",
                "the GPU: the competition's runtime (often one); pass --gpu-arch"),
    code=CodeExport(archive="submission.zip", script="main.py", program="/code_execution"),
)
