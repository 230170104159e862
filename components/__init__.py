"""Widgets, figures and helpers the pages share (the pages themselves are in ``pages/``).

Here: :func:`plain` and :func:`no_paths`, the two filters every piece of user or server text goes
through before a page shows it.
"""

import re

_MARKDOWN_SPECIAL = set("\\`*_{}[]<>()#+-.!|~$:=^&\"'")


def plain(text) -> str:
    """``text`` escaped so that Streamlit's Markdown shows it literally (user text: file, class,
    dataset and run names), e.g. ``a*b*`` stays ``a*b*`` instead of turning italic."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in str(text)).replace("\n", " ")


_SERVER_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)*([\w.@+-]+)")


def no_paths(text) -> str:
    """``text`` with each absolute server path cut to its last part (``/srv/x/cifar10`` →
    ``cifar10``): visitors see what a run used, not where the server keeps it."""
    return _SERVER_PATH.sub(r"\1", str(text))
