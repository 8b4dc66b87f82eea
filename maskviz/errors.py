"""The one error type the library raises for bad input or unusable files."""

from __future__ import annotations


class MaskvizError(Exception):
    """Something the user asked for cannot be done; the message says what and why.

    ``exit_code`` is what the command line exits with: 2 for usage errors (bad
    arguments), 1 for everything else (unreadable files, failed writes).

    >>> raise MaskvizError("window must be >= 1, got 0", usage=True)
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: window must be >= 1, got 0
    """

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.exit_code = 2 if usage else 1


def usage_error(message: str) -> MaskvizError:
    """A `MaskvizError` for invalid arguments (exit code 2)."""
    return MaskvizError(message, usage=True)
