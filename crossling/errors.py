"""Errors crossling reports to users as one clear line (the CLI prints them without a traceback)."""


class CrosslingError(Exception):
    """Base class: a problem the user can fix (bad input, missing model, no hub, ...)."""


class ConfigError(CrosslingError):
    """A config file or command-line override is wrong."""


class ModelNotFoundError(CrosslingError):
    """A model id/path cannot be resolved (no such path, or no hub reachable)."""


class DataError(CrosslingError):
    """Input data is malformed; the message names the file and line."""
