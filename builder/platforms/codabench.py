"""``codabench``: a code submission run in the organiser's image. The submission zip is unpacked in
``/app/program``, the working directory; its ``metadata.yaml`` names the ``command:``; the test data is at
``/app/input_data`` and the output goes under ``/app/output``. The clock is a SIGALRM at the phase's
``execution_time_limit`` (600 s unless the organiser sets it)."""

from __future__ import annotations

from builder.platforms.base import CodeExport, Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="codabench",
    title="Codabench code submission (the organiser's image)",
    entry=Entry(platform="codabench", mode="folder", input="/app/input_data", output="/app/output/submission.csv",
                metadata=None, weights=None, line=None, devices="all"),
    limits=Limits(time_seconds=600.0, cpus=None, memory=None, gpus=(), archive_bytes=None, tmpfs_bytes=None),
    sandbox=Sandbox(data="/app/input_data", output="/app/output", read_only_root=False, tmpfs=False),
    hand_in="submission.zip, uploaded on the phase's 'My Submissions' page",
    messages={"timeout": "Execution Time Limit exceeded. Limit was <execution_time_limit> seconds",
              "exit code": "the program exited with an error (its stderr is the submission's log)"},
    source="codalab/codabench compute_worker/compute_worker.py (/app/program as the working directory, "
           "/app/input_data, /app/output, metadata.yaml's command, the SIGALRM and its message) and "
           "src/apps/competitions/models.py (execution_time_limit, 600 s by default)",
    unverified=("the time limit: the phase's execution_time_limit; pass --time-limit",
                "the organiser's image: its Python and packages; the export says which versions differ and checks"),
    code=CodeExport(archive="submission.zip", script="run.py", program="/app/program",
                    files={"metadata.yaml": "command: python3 run.py\n"}),
)
