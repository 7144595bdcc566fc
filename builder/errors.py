"""Builder errors: one small hierarchy, turned into exit codes in ``builder.cli`` only."""

from __future__ import annotations


class BuilderError(Exception):
    """Base of every error the builder reports; the message names the file or key and says what to do."""

    exit_code = 1


class CheckpointError(BuilderError):
    """A checkpoint cannot be found, read, or loaded into its model."""

    exit_code = 2


class ConfigError(BuilderError):
    """A setting is missing, contradictory, or invalid (options, config file, sample submission)."""

    exit_code = 3


class DockerError(BuilderError):
    """The Docker engine is unreachable, or an image cannot be built, loaded or run."""

    exit_code = 4
