"""Input checks shared by the package; their errors name the parameter, its value and what is
allowed."""

from __future__ import annotations


def is_positive_int(value: object) -> bool:
    """A count: an ``int`` (not a ``bool``) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_count(value: object) -> bool:
    """A count that may be zero: an ``int`` (not a ``bool``) of at least 0."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_choice(name: str, value: object, allowed: tuple) -> None:
    """Raise a ValueError naming the parameter, its value and what is allowed."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}")
