"""Runtime errors: one small hierarchy, each class with its own exit code, turned into exit codes in
``submission.__main__`` only. ``builder.errors`` continues the numbering (10 and up) for the host side."""

from __future__ import annotations


class SubmissionError(Exception):
    """Base of every error the runtime reports to the user; the message says what to do next."""

    exit_code = 9


class BundleError(SubmissionError):
    """The bundle (manifest.json and the files it names) is missing, malformed or tampered with."""

    exit_code = 3


class InputError(SubmissionError):
    """The test folder does not match what the bundle expects (missing ids, unreadable image, ...)."""

    exit_code = 4


class OutputError(SubmissionError):
    """The submission CSV cannot be written where it was asked for."""

    exit_code = 5


class DeviceError(SubmissionError):
    """The requested device cannot be used."""

    exit_code = 6


class ShardError(SubmissionError):
    """Shards that do not make one whole test set: missing, overlapping, from another bundle, out of range."""

    exit_code = 7
