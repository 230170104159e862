"""What goes wrong because of what a person gave, and how any error reads as one line.

:class:`UserError` is the one base for "the input is wrong, and the person can fix it": a data
folder with a wrong layout, a bad dataset or class name, a file that is no image, unavailable
weights, an option out of range, features that fit neither memory nor disk. Each layer raises
its own subclass (``DataError``, ``DatasetError``, ``ImageError``, ``WeightsError``,
``OptionError``, ...) with a sentence saying what to change. Each front end maps the base in one
place: the command line (:func:`core.cli.main`) prints it as one line and exits 2, the pages show
it as one ``st.error`` line (``components.errors``), and a background job reports it as an
"input" error (:func:`error_kind`) rather than a crash.

``UserError`` is a ``ValueError``: code that catches ``ValueError`` for bad arguments keeps
working, and Python's own ``ValueError`` for a bad value (``int("x")``) still reads as input.
"""

from __future__ import annotations


class UserError(ValueError):
    """The user's input is wrong (data, datasets, weights, options, images, memory for features).

    The message is one sentence for people: what is wrong and how to fix it, never a traceback.
    """


def error_message(exc: BaseException) -> str:
    """One line for people: the message of a bad-input error, else the type and message.

    ``RuntimeError`` messages are kept bare too: the runtime's (a missing device, a damaged
    weights pickle) are written for people.
    """
    text = str(exc).strip() or exc.__class__.__name__
    return (
        text if isinstance(exc, (ValueError, RuntimeError)) else f"{exc.__class__.__name__}: {text}"
    )


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none (for a one-line
    message built around a third party's multi-line error, e.g. Ray's)."""
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def error_kind(exc: BaseException) -> str:
    """ "input" for bad input the person can fix (any ``ValueError``, so every :class:`UserError`),
    else "crash"."""
    return "input" if isinstance(exc, ValueError) else "crash"
