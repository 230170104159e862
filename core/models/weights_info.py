"""Which weights a model carries (:class:`WeightsInfo`), and the error when the weights asked for
cannot be had (:class:`WeightsError`): the words every weights source of :mod:`core.models.weights`
(official Keras files, the offline Lite0 of :mod:`core.models.lite0`, a local file) shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.platform.errors import UserError


class WeightsError(UserError):
    """Weights could not be found, read or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a model carries and where they came from.

    Attributes:
        source: "imagenet", "lite0", "file" or "none".
        variant: Backbone name ("b0".."b7", "lite0").
        detail: Human-readable origin and, for ``auto``, why this source was chosen.
        path: The weights file loaded, if any.
    """

    source: str
    variant: str
    detail: str
    path: str | None = None

    @property
    def label(self) -> str:
        """Short label for UIs: e.g. ``lite0 (ImageNet, offline)``."""
        names = {
            "imagenet": "official Keras ImageNet",
            "lite0": "ImageNet (offline Lite0 package)",
            "file": "local file",
            "none": "random init",
        }
        return f"{self.variant}: {names.get(self.source, self.source)}"
