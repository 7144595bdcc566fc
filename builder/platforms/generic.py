"""``generic``: the image's own contract, for any platform that runs it with a folder mounted (the default)."""

from __future__ import annotations

from builder.platforms.base import Limits, Platform, Sandbox
from submission.manifest import Entry

PLATFORM = Platform(
    name="generic",
    title="any platform: the test folder at /data, the CSV at /output/submission.csv",
    entry=Entry(platform="generic", mode="folder", input="/data", output="/output/submission.csv", metadata=None,
                weights=None, line=None, devices="all"),
    limits=Limits(time_seconds=None, cpus=None, memory=None, gpus=(), archive_bytes=None, tmpfs_bytes=None),
    sandbox=Sandbox(data="/data", output="/output"),
    hand_in="the image: `docker save submission | gzip > submission.tar.gz`, or pushed to the platform's registry",
    messages={},
    source="this product's own contract (README, 'The image')",
    unverified=("limits: pass --time-limit, --cpus, --memory and --gpus as the competition states them",),
)
