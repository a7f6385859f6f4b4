"""Errors that are the user's to fix: the CLI prints them as one line and exits non-zero."""


class AutopruneError(Exception):
    """A user mistake or an unsupported input, with a message that says what to change."""


class UnsupportedModelError(AutopruneError):
    """The dependency graph cannot prune this model safely."""
