"""What the product knows of one competition platform: where the image's (or the exported code's) input and output
are, how it is run (its sandbox and limits), what is handed in, how it reports failures, and the source each fact
follows.

Each platform is one module of this package holding one ``Platform``; adding a platform is that module and one
line in ``builder.platforms``. What the runtime needs of it travels in the manifest (``submission.manifest.Entry``);
the rest (limits, sandbox, messages, the hand-in form) is the builder's, for ``pack``, ``export`` and ``validate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from submission.manifest import Entry

GiB = 2**30


@dataclass(frozen=True)
class Limits:
    """What one run may use; None where the platform sets it per competition (the user passes it)."""

    time_seconds: float | None  # the wall-clock limit, counted from the container's start
    cpus: float | None  # CPU cores of the container
    memory: str | None  # memory, in docker's form ("16g")
    gpus: tuple[str, ...]  # the GPU kinds it runs on ("T4"); () for CPU only
    archive_bytes: int | None  # the largest image archive (docker save, gzip) it takes
    tmpfs_bytes: int | None  # the size of the writable /tmp

    def deadline(self) -> float | None:
        """The runtime's default deadline: the time limit less a reserve for the container's start and the
        interpreter's (5%, at least a minute); None where the platform sets no limit of its own."""
        if self.time_seconds is None:
            return None
        return self.time_seconds - max(60.0, 0.05 * self.time_seconds)


@dataclass(frozen=True)
class Sandbox:
    """How the platform starts the container, as ``builder validate --platform`` replays it."""

    data: str  # where the test data is mounted, read-only
    output: str | None  # the writable folder the output goes in (None: the output is stdout)
    env: Mapping[str, str] = field(default_factory=dict)  # variables the platform sets
    read_only_root: bool = True
    tmpfs: bool = True  # a writable tmpfs at /tmp (sized by ``Limits.tmpfs_bytes``)
    init: bool = False  # docker run --init
    ulimits: Mapping[str, int] = field(default_factory=dict)  # e.g. nproc, nofile
    stdin: bool = False  # the image paths are fed on stdin, one per line
    one_case_per_run: bool = False  # one container per test case (Grand Challenge)
    model_mount: str | None = None  # where separately uploaded weights are extracted (Grand Challenge's /opt/ml/model)


@dataclass(frozen=True)
class CodeExport:
    """What a platform that runs the participant's code in its own image takes: one archive whose root holds the
    entry script, the files the platform reads (``files``: name -> text), and ``model/`` (the bundle, the runtime
    package, the pins and the check; ``submission.hosted``)."""

    archive: str  # the archive's file name, e.g. "submission.zip"
    script: str  # the entry script at its root, e.g. "main.py"
    program: str  # where the platform unpacks it, its working folder, e.g. /app/program
    files: Mapping[str, str] = field(default_factory=dict)  # other files at its root, e.g. metadata.yaml
    requirements: bool = False  # a requirements.txt with the pins at its root, which the platform installs
    exact: bool = False  # nothing else may lie at its root (the platform fails an archive with more)


@dataclass(frozen=True)
class NotebookExport:
    """What a platform that reruns a notebook offline takes (Kaggle): datasets attached to the notebook (the bundle
    with the runtime; the pinned wheels, apart, as they change far less often) and the notebook with its metadata
    (``builder.export.notebook``)."""

    python: str  # the kernel's Python, "3.11": the wheels are downloaded for it
    input_root: str  # where attached datasets and the competition's data appear, e.g. /kaggle/input
    working: str  # the notebook's working folder, whose files are its output, e.g. /kaggle/working


@dataclass(frozen=True)
class Platform:
    name: str  # --platform NAME
    title: str  # for people
    entry: Entry  # the runtime's contract on this platform: where input and output are, with no arguments
    limits: Limits
    sandbox: Sandbox
    hand_in: str  # what is uploaded, in words
    messages: Mapping[str, str]  # a failure kind ("timeout", "no output", "exit code", ...) -> the platform's words
    source: str  # the public code or page each fact follows
    unverified: tuple[str, ...] = ()  # facts not known for sure, each with the option that sets it
    settings: Mapping[str, Any] = field(default_factory=dict)  # pack settings the platform implies (format, ...)
    weights_apart: bool = False  # the weights are handed in beside the image (a model tarball), not inside it
    code: CodeExport | None = None  # the platform runs code, not an image: what `builder export` writes for it
    notebook: NotebookExport | None = None  # the platform reruns a notebook: what `builder export` writes for it

    @property
    def runs_code(self) -> bool:
        """It runs the export's code in its own environment, not an image: `builder export` needs no Docker."""
        return self.code is not None or self.notebook is not None

    def says(self, kind: str) -> str:
        """The platform's own message for a failure kind, or empty."""
        return self.messages.get(kind, "")
