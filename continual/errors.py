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


class Interrupted(ContinualError):
    """SIGTERM stopped the run; its checkpoints are on disk and `resume=` continues it."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a terminated process


class SweepError(ContinualError):
    """A sweep stopped because its trials keep failing the same way."""
