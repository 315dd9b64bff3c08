"""Settings: dataclasses whose fields declare the values they accept.

A study's settings are written once: a notebook's ``parameters`` cell holds their values and a
:class:`Settings` dataclass their types (the annotations) and bounds (:func:`setting`). Building
the dataclass checks every value, so a misspelt, mistyped or out-of-range setting stops the run
with a ValueError naming the setting, its value and what is allowed::

    @dataclass(frozen=True)
    class Study(Settings):
        seed: int = setting(ge=0)
        lr: float = setting(gt=0)
        seeds: list[int] = setting(min_length=1, unique=True, items={"ge": 0})

    study = Study.from_namespace(globals())  # in the cell after a notebook's parameters cell
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar


@dataclass(frozen=True)
class Parameter:
    """The values one setting accepts.

    ``types`` is a type or a tuple of types; ``float`` also admits ``int``, and a ``bool`` is
    never an ``int`` or a ``float``. Numbers must lie within the bounds that are given
    (``ge``: >=, ``gt``: >, ``le``: <=, ``lt``: <) and a float must be finite. ``choices``
    lists the allowed values, ``none`` also allows None. For a list, ``items`` is the Parameter
    every item must satisfy, ``min_length`` its shortest length and ``unique`` forbids repeats::

        Parameter(int, ge=1)                  # a positive integer
        Parameter(float, gt=0, none=True)     # a positive number, or None
        Parameter(str, choices=("mlp", "cnn"))
        Parameter(list, items=Parameter(int, ge=0), min_length=1, unique=True)
    """

    types: type | tuple[type, ...]
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: Iterable[object] | None = None
    none: bool = False
    items: Parameter | None = None
    min_length: int = 0
    unique: bool = False

    def __post_init__(self) -> None:
        types = self.types if isinstance(self.types, tuple) else (self.types,)
        object.__setattr__(self, "types", types)
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @classmethod
    def like(cls, default: object) -> Parameter:
        """The type of a default value (any type if it is None), or None."""
        if default is None:
            return cls(object, none=True)
        return cls(float if isinstance(default, float) else type(default), none=True)

    def check(self, name: str, value: object) -> None:
        """Raise ValueError naming the parameter, its value and what is allowed, unless this
        parameter accepts ``value``."""
        problem = self._problem(name, value)
        if problem is not None:
            raise ValueError(f"parameter {problem}")

    def allowed(self) -> str:
        """What this parameter accepts, in words: ``int``, ``float or None``, ``list of int``."""
        names = [t.__name__ for t in self.types]
        if self.items is not None and names == ["list"]:
            names = [f"list of {self.items.allowed()}"]
        return " or ".join(names + (["None"] if self.none else []))

    def _problem(self, name: str, value: object) -> str | None:
        shown = f"{name}={value!r}"
        if value is None:
            return None if self.none else f"{shown} is None; allowed: {self.allowed()}"
        if not self._has_type(value):
            return f"{shown} has type {type(value).__name__}; allowed: {self.allowed()}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{shown} is not a finite number; allowed: {self._bounds() or 'finite'}"
        if isinstance(value, int | float) and not self._in_bounds(value):
            return f"{shown} is out of range; allowed: {self._bounds()}"
        if self.choices is not None and value not in self.choices:
            return f"{shown} is not a valid choice; allowed: {', '.join(map(repr, self.choices))}"
        if isinstance(value, list):
            return self._list_problem(name, value)
        return None

    def _has_type(self, value: object) -> bool:
        if isinstance(value, bool):
            return bool in self.types or object in self.types
        types = self.types + ((int,) if float in self.types else ())
        return isinstance(value, types)

    def _in_bounds(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def _bounds(self) -> str:
        bounds = zip((">=", ">", "<=", "<"), (self.ge, self.gt, self.le, self.lt), strict=True)
        return " and ".join(f"{op} {bound}" for op, bound in bounds if bound is not None)

    def _list_problem(self, name: str, value: list) -> str | None:
        if len(value) < self.min_length:
            s = "" if self.min_length == 1 else "s"
            return f"{name}={value!r} is too short; allowed: at least {self.min_length} item{s}"
        if self.items is not None:
            for i, item in enumerate(value):
                problem = self.items._problem(f"{name}[{i}]", item)
                if problem is not None:
                    return problem
        if self.unique and any(item in value[:i] for i, item in enumerate(value)):
            return f"{name}={value!r} repeats an item; allowed: distinct items"
        return None


def check_values(values: Mapping[str, object], declared: Mapping[str, Parameter]) -> None:
    """Raise ValueError for a name that is not declared or a value its Parameter refuses."""
    unknown = [f"{name}={value!r}" for name, value in values.items() if name not in declared]
    if unknown:
        raise ValueError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(declared))}"
        )
    for name, value in values.items():
        declared[name].check(name, value)


#: Globals of an IPython kernel that are not settings (besides names starting with "_").
IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def setting(default: object = dataclasses.MISSING, **constraints: Any) -> Any:
    """A :class:`Settings` field: its default (none: required) and the bounds of
    :class:`Parameter` (``ge``, ``gt``, ``le``, ``lt``, ``choices``, ``min_length``,
    ``unique``; ``items`` is a dict of them for a list's items). Its type is the annotation."""
    metadata = {"constraints": constraints}
    if isinstance(default, list | dict | set):  # a fresh copy for every instance
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


S = TypeVar("S", bound="Settings")


@dataclass(frozen=True)
class Settings:
    """A frozen dataclass that checks its fields on construction (see the module docstring).

    A subclass states constraints between fields in :meth:`check_together`.
    """

    def __post_init__(self) -> None:
        for name, parameter in self.parameters().items():
            parameter.check(name, getattr(self, name))
        self.check_together()

    def check_together(self) -> None:
        """Raise ValueError when the settings are valid one by one but not together."""

    @classmethod
    def parameters(cls) -> dict[str, Parameter]:
        """What each field accepts: its annotation and its :func:`setting` bounds."""
        hints = typing.get_type_hints(cls)
        return {
            f.name: _parameter(hints[f.name], dict(f.metadata.get("constraints", {})))
            for f in dataclasses.fields(cls)
        }

    @classmethod
    def from_namespace(cls: type[S], namespace: Mapping[str, object], /) -> S:
        """The settings a notebook's globals define. Every data-like global (not a module,
        function or class, not IPython's, not starting with ``_``) must be a field: an unknown
        one is a misspelt setting that papermill injected. (Rerun interactively after later
        cells, it would take their variables for unknown settings.)"""
        parameters = cls.parameters()
        values = {name: value for name, value in namespace.items() if _is_data(name, value)}
        check_values(values, parameters)
        required = [f.name for f in dataclasses.fields(cls) if _is_required(f)]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError(f"parameter {missing[0]} is required but the parameters cell lacks it")
        return cls(**values)


def _parameter(hint: object, constraints: dict[str, Any]) -> Parameter:
    """The Parameter of an annotation: ``int``, ``float | None``, ``list[int]``, ``str``..."""
    none = False
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        none = len(members) < len(typing.get_args(hint))
        hint = members[0] if len(members) == 1 else tuple(members)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        items = _parameter(item, dict(constraints.pop("items", {})))
        return Parameter(list, items=items, none=none, **constraints)
    return Parameter(hint, none=none, **constraints)


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _is_data(name: str, value: object) -> bool:
    return not (
        name.startswith("_")
        or name in IPYTHON_NAMES
        or isinstance(value, ModuleType)
        or callable(value)  # functions and classes
    )
