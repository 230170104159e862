"""One training option's description: how it is shown, parsed and checked (:class:`Option`), and
the dataclass field that carries it (:func:`option`). :class:`core.training.options.TrainConfig`
declares every option with these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from core.platform.errors import UserError


class OptionError(UserError):
    """A training option's value is not allowed; the message names it and what is allowed."""


@dataclass(frozen=True)
class Option:
    """How one training option is shown, parsed and checked.

    Attributes:
        label: Short name for people (the page's widget label).
        help: One sentence for ``--help`` and the widget's tooltip.
        kind: ``int``, ``float``, ``bool`` or ``str``.
        widget: "select", "radio", "number", "toggle" or "text"; "data" and "weights" are drawn
            by the page's own pickers.
        low, high: Inclusive bounds for numbers (None: unbounded).
        low_open, high_open: Make that bound exclusive (``0 < lr``, ``dropout < 1``).
        choices: Allowed values, or a function returning them (looked up when needed).
        optional: None is allowed; ``none_means`` says what None does ("all", "auto", ...).
        step: The number widget's step.
        only_for: ``(field, value)``: the option matters only then (the page disables it otherwise).
        check: Extra check of a non-None value; raises OptionError with a sentence.
        unit: Unit shown in messages ("pixels", "images", ...).
        what: How messages name the option (default: the field name).
        advanced: Shown under "More options" on the Train page (the defaults suit most runs).
    """

    label: str
    help: str
    kind: type
    widget: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | Callable[[], tuple] | None = None
    optional: bool = False
    none_means: str = ""
    step: float | None = None
    only_for: tuple[str, str] | None = None
    check: Callable[[object], None] | None = None
    unit: str = ""
    what: str = ""
    advanced: bool = False

    def allowed(self) -> tuple:
        """The allowed values of a choice option (empty for others)."""
        choices = self.choices() if callable(self.choices) else self.choices
        return tuple(choices or ())

    def validate(self, name: str, value) -> None:
        """Raise OptionError with a sentence if ``value`` is not allowed."""
        what = self.what or name
        if value is None:
            if self.optional:
                return
            raise OptionError(f"{what} is required.")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise OptionError(f"{what} must be true or false, got {value!r}.")
        elif self.kind is int:
            if not _is_int(value) or not self._in_bounds(value):
                raise OptionError(f"{what} must be a whole number {self._range()}, got {value!r}.")
        elif self.kind is float:
            if not _is_number(value) or not self._in_bounds(float(value)):
                raise OptionError(f"{what} must be a number {self._range()}, got {value!r}.")
        elif not isinstance(value, str):
            raise OptionError(f"{what} must be text, got {value!r}.")
        allowed = self.allowed()
        if allowed and value not in allowed:
            raise OptionError(
                f"{what} must be one of {', '.join(map(str, allowed))}, got {value!r}."
            )
        if self.check is not None:
            self.check(value)

    def _in_bounds(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def _range(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
            return f"from {self.low:g} to {self.high:g}{unit}"
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {self.high:g}")
        return " and ".join(parts) + unit


def _is_int(value) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    import numpy as np

    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def option(default, **metadata) -> object:
    """A dataclass field whose metadata holds the :class:`Option` built from ``metadata``."""
    return field(default=default, metadata={"option": Option(**metadata)})
