"""The error every chapter raises for a bad argument, in a module that imports nothing heavy.

:class:`UsageError` lives here, not in ``common.cli`` (which imports torch), so torch-free modules (ch05's
scheduler, ch08's configuration) can raise it too; ``common.cli`` re-exports it and its ``friendly_errors``
turns it into one sentence on stderr.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A bad combination of arguments; the message says what to change."""
