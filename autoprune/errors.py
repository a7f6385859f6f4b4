"""Errors that are the user's to fix: the CLI prints them as one line and exits non-zero.

Every one is an AutopruneError; the subclasses let a caller of the Python API tell the kinds apart.
"""


class AutopruneError(Exception):
    """A user mistake or an unsupported input, with a message that says what to change."""


class BudgetError(AutopruneError):
    """A budget that cannot be read, or that no model of the search space can meet."""


class UnsupportedModelError(AutopruneError):
    """A model autoprune cannot load, trace or prune safely."""


class DataError(AutopruneError):
    """Data or a metric that does not fit the model or the task."""


class TableError(AutopruneError):
    """A latency table that is missing, malformed, or measured for something else."""


class StudyError(AutopruneError):
    """A stored study that does not match the search asked for, or a storage that cannot be opened."""


class LatencyCheckFailed(AutopruneError):
    """The exported model, timed on this machine, is slower than the budget allows (the CLI exits 1)."""
