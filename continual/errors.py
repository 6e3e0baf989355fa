"""User-facing errors. The CLI prints these as one line and exits with code 2."""


class ContinualError(Exception):
    """Base class: a problem the user can fix; the message names it and the fix."""

    exit_code = 2


class ConfigError(ContinualError):
    pass


class DataError(ContinualError):
    pass


class FrozenBackboneError(ContinualError):
    pass


class CheckpointError(ContinualError):
    pass


class StorageError(ContinualError):
    """A file could not be written (disk full, read-only folder): what was on disk before stays."""


class TrainingError(ContinualError):
    """Training produced a non-finite loss: results after it would be meaningless."""


class Interrupted(ContinualError):
    """SIGTERM stopped the run; its checkpoints are on disk and `resume=` continues it."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a terminated process


class KeyboardInterrupted(BaseException):
    """Ctrl-C stopped the run; `resume=` continues it from its last checkpoint. A BaseException,
    like KeyboardInterrupt, so that no `except Exception` on the way (Lightning has one around
    every training step) swallows it; the CLI reports it as one line like a ContinualError."""

    exit_code = 130  # 128 + SIGINT


class SweepError(ContinualError):
    """A sweep stopped because its trials keep failing the same way."""
