"""``dacon``: Dacon's code submission. ``submit.zip`` holds exactly ``model/``, ``script.py`` and
``requirements.txt`` at its root (another top folder fails); the platform installs the requirements and runs the
script. Where the test data is and where the CSV goes are the competition's: the defaults here are relative to the
working directory and are meant to be set with --input-path and --output-path."""

from __future__ import annotations

from builder.platforms.base import CodeExport, Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="dacon",
    title="Dacon code submission",
    entry=Entry(platform="dacon", mode="folder", input="data/test", output="submission.csv", metadata=None,
                weights=None, line=None, devices="all"),
    limits=Limits(time_seconds=None, cpus=None, memory=None, gpus=(), archive_bytes=None, tmpfs_bytes=None),
    sandbox=Sandbox(data="/work/data/test", output="/work", read_only_root=False, tmpfs=False),
    hand_in="submit.zip, uploaded on the competition's code submission page",
    messages={"exit code": "the code failed to run (an install error names the requirement)"},
    source="dacon.io code-submission pages (submit.zip = model/ + script.py + requirements.txt, exact names)",
    unverified=("the test folder and the CSV's path: the competition's; pass --input-path and --output-path",
                "the time limit and hardware: the competition's; pass --time-limit"),
    code=CodeExport(archive="submit.zip", script="script.py", program="/work", requirements=True, exact=True),
)
