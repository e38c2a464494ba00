"""User-facing errors: one clear line saying what was wrong, where, and what to do."""

from __future__ import annotations


class MtlharError(Exception):
    """An error caused by user input (config, data, files). The CLI prints it as one line and exits 2."""


class ConfigError(MtlharError):
    """A malformed config: names the key, the bad value and the allowed values."""


class DataError(MtlharError):
    """Bad data: names the file (and row) and the problem."""


class TooManyBadSamples(DataError):
    """Raised when more than the allowed fraction of samples could not be read during a run."""


class Diverged(MtlharError):
    """Training stopped after too many consecutive steps with a non-finite loss or gradient."""
