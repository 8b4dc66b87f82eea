"""The one error type the library raises for bad input or unusable files."""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable
from typing import Any

import numpy as np


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none:
    what a one-line error quotes of a library's failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def usage_error(message: str) -> MaskvizError:
    """A `MaskvizError` for invalid arguments (exit code 2)."""
    return MaskvizError(message, usage=True)


def as_integers(values: Iterable[Any], what: str) -> list[int]:
    """``values`` as Python ints; a float such as 1.5 is refused, not truncated.

    >>> as_integers([1, 2.5], "positions")
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: positions: 2.5 is not an integer
    """
    try:
        given = list(values)
    except TypeError:
        raise usage_error(f"{what} must be integers, got {values!r}") from None
    return [as_integer(v, what) for v in given]


def as_integer(value: object, what: str) -> int:
    """``value`` as a Python int: an int or NumPy integer, never a bool or a float."""
    try:
        if not isinstance(value, bool | np.bool_):
            return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        pass
    raise usage_error(f"{what}: {value!r} is not an integer")


def index_in(value: object, count: int, what: str) -> int:
    """``value`` as an index of 0..count-1; a negative one is refused (it would quietly
    name another).

    >>> index_in(-1, 4, "head")
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: head -1 is outside 0..3
    """
    index = as_integer(value, what)
    if not 0 <= index < count:
        raise usage_error(f"{what} {index} is outside 0..{count - 1}")
    return index


def check_labels(labels: Collection[object], count: int) -> None:
    """Refuse ``labels`` unless they are one string per position."""
    if isinstance(labels, str):  # its characters would pass for labels
        raise usage_error("labels must be one string per position, not a single string")
    if len(labels) != count:
        raise usage_error(f"expected {count} labels (one per position), got {len(labels)}")
    for label in labels:
        if not isinstance(label, str):
            raise usage_error(f"labels must be strings, got {type(label).__name__} {label!r}")


def check_type(value: object, kind: type, what: str) -> None:
    """Refuse ``value`` unless it is a ``kind``, naming what was given (not an
    AttributeError from deep inside)."""
    if not isinstance(value, kind):
        name = kind.__name__
        article = "an" if name[0] in "AEIOU" else "a"
        raise usage_error(f"{what} must be {article} {name}, got {type(value).__name__}")
