"""Exceptions a user can cause.

Every message names the input, says what is wrong and what to do about it. The CLI
prints the message alone (no traceback) and exits with status 2.
"""

from __future__ import annotations


class CourseError(Exception):
    """Base class for errors caused by user input or environment, not by a bug."""


class CorpusError(CourseError):
    """The corpus is missing, empty, unreadable or cannot be fetched."""


class TokenizerError(CourseError):
    """A tokenizer was asked for something it cannot do (bad vocabulary size, bad file)."""


class PackingError(CourseError):
    """Documents cannot be cut into blocks as asked (e.g. block_size larger than the corpus)."""


class ConfigError(CourseError):
    """A configuration value is invalid (unknown preset, unknown device, bad size)."""


class CheckpointError(CourseError):
    """A checkpoint or run directory is missing, incomplete or corrupted."""


class TrainingDiverged(CourseError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class AuthoringError(CourseError):
    """A solution notebook cannot be turned into a lesson, executed or graded as asked
    (malformed solution markers, unknown notebook name, a solution cell that fails)."""
