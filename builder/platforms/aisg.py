"""``aisg``: the AI Singapore Online Safety Prize Challenge. Images lie read-only under ``/images``; their paths come
on stdin, one per line, and the image writes one ``proba<TAB>label`` line per path on stdout, in input order
(``%.4f\\t%d``: the probability that the image is harmful, then 1 or 0); logs go to stderr.
"""

from __future__ import annotations

from builder.platforms.base import GiB, Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="aisg",
    title="AI Singapore Online Safety Prize Challenge",
    entry=Entry(platform="aisg", mode="stream", input="/images", output="-", metadata=None, weights=None,
                line="{proba:.4f}\t{label}", devices="all"),
    limits=Limits(time_seconds=2.5 * 3600, cpus=6.0, memory="60g", gpus=("V100",), archive_bytes=25 * GiB,
                  tmpfs_bytes=5 * GiB),
    sandbox=Sandbox(data="/images", output=None, init=True, ulimits={"nproc": 1024, "nofile": 1024}, stdin=True),
    hand_in="`docker save submission:latest | gzip > submission.tar.gz` (at most 25 GiB), uploaded on the challenge "
            "platform",
    messages={"timeout": "the solution exceeded 2.5 hours of runtime", "bad output": "one output line per input "
              "line, proba (4 decimals) and label separated by a tab"},
    source="AISG-Technology-Team/AISG-Online-Safety-Challenge-Submission-Guide README.md (the docker run command: "
           "--init, --read-only, the /images mount, a 5 GiB /tmp, ulimits, the limits and the line format)",
    unverified=("the number of images: about 1,700; pass --expected-rows to project for another",),
    settings={"format": "binary"},
)
