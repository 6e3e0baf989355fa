"""User-facing errors. The CLI prints these as one line and exits with code 2."""


class ContinualError(Exception):
    """Base class: a problem the user can fix; the message names it and the fix."""


class ConfigError(ContinualError):
    pass


class DataError(ContinualError):
    pass


class FrozenBackboneError(ContinualError):
    pass


class CheckpointError(ContinualError):
    pass
