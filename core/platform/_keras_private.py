"""The private Keras APIs EffNet Lab relies on, kept in this one module.

Why they are needed: Keras's public ``keras.applications.EfficientNetB0`` … ``B7`` fix the width,
depth and block table of each released network. EffNet Lab also builds EfficientNet-Lite0 (B0's
blocks without squeeze-excite, with relu6) and formula-scaled networks for any φ, and for those
only the generic builder ``keras.src.applications.efficientnet.EfficientNet`` accepts the
coefficients, the activation and the block table. The official weights' file hashes live there
too. And on JAX, :func:`core.platform.runtime.allow_jit` must know whether a loaded model already
settled ``jit_compile`` without settling it (:func:`settled_jit_compile`). Everything else in ``core`` uses public Keras; ``tests/test_private_apis.py`` fails as soon
as an upgrade changes what is used here.
"""

from __future__ import annotations

import copy


def _efficientnet_module():
    from keras.src.applications import efficientnet

    return efficientnet


def efficientnet_builder():
    """Keras's generic ``EfficientNet(width, depth, default_size, dropout, ...)`` builder."""
    return _efficientnet_module().EfficientNet


def default_blocks_args() -> list[dict]:
    """A copy of B0's block table (one dict per stage: kernel, repeats, filters, strides, ...)."""
    return copy.deepcopy(_efficientnet_module().DEFAULT_BLOCKS_ARGS)


def official_weights_hash(variant: str, include_top: bool) -> str | None:
    """The hash (MD5 or SHA-256) Keras checks when downloading official ``variant`` weights
    (None: there is no such file)."""
    hashes = _efficientnet_module().WEIGHTS_HASHES.get(variant)
    return None if hashes is None else hashes[0 if include_top else 1]


def settled_jit_compile(model):
    """``model``'s ``jit_compile`` if Keras has settled it (True or False), else None: never
    compiled, or compiled with "auto" and not yet resolved. Reading it does not settle it.

    Why private: the public ``Model.jit_compile`` property resolves "auto" the first time it is
    read (and keeps the answer), so reading it to ask "was it settled before?" would answer
    with a value settled now. Keras keeps the setting in ``Trainer._jit_compile`` (None until
    resolved).
    """
    return getattr(model, "_jit_compile", None)
