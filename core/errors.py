"""One error hierarchy for everything a user can get wrong.

The CLI turns a ``TLError`` into a one-line message; ``UsageError`` subclasses exit with status 2
(click's usage-error code), other ``TLError`` s with status 1. ``--debug`` shows the traceback.
"""

from __future__ import annotations


class TLError(Exception):
    """Base class: a problem the user can act on; the message says what and how to fix it."""

    exit_code = 1


class UsageError(TLError):
    """Bad input from the user: an unknown name, a missing file or column, an invalid option."""

    exit_code = 2


class DataError(UsageError):
    """A dataset file that cannot be used as given."""


class AssetError(TLError):
    """An asset (model or dataset) that cannot be fetched, verified or found."""


class PluginError(TLError):
    """A plugin that failed to load or registered something invalid."""


class TrainingInterrupted(TLError):
    """SIGINT/SIGTERM during training: a checkpoint was written; the message says how to resume."""

    exit_code = 130


class RunPruned(TLError):
    """A run stopped after an epoch because its evaluation was poor (``tl tune``'s pruner)."""


class BackendUnavailable(UsageError):
    """The requested backend's framework is not installed."""
