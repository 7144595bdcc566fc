"""Builder errors: one small hierarchy, and the one place where any error becomes a message and an exit code.

Exit codes are distinct per class across both packages: 0 success; 1 a check failed (``validate``); 2 a usage
error (an unknown option); 3-9 the runtime's (``submission.errors``); 10-14 the builder's; 15 a check that
``validate`` could not decide from what it was told.
"""

from __future__ import annotations

from submission.errors import SubmissionError

CHECK_FAILED = 1  # builder validate: the run or the CSV failed a check
USAGE = 2  # an unknown option or a bad option value (click and argparse use 2)
UNDECIDED = 15  # builder validate: no check failed, but one could not be decided (the report names the option)


class BuilderError(Exception):
    """Base of every error the builder reports; the message names the file or key and says what to do."""

    exit_code = 10


class CheckpointError(BuilderError):
    """A checkpoint cannot be found, read, or loaded into its model."""

    exit_code = 11


class ConfigError(BuilderError):
    """A setting is missing, contradictory, or invalid (options, config file, sample submission)."""

    exit_code = 12


class CodeError(BuilderError):
    """The user's model code or metadata encoder cannot be frozen, imported or run at pack time."""

    exit_code = 13


class DockerError(BuilderError):
    """The Docker engine is unreachable, or an image cannot be built, loaded or run."""

    exit_code = 14


KNOWN = (BuilderError, SubmissionError)  # what the CLI reports as a message; anything else is a bug (traceback)


def exit_code(error: BaseException) -> int:
    """The exit code of an error the CLI reports."""
    return int(getattr(error, "exit_code", BuilderError.exit_code))
