"""Near-duplicate images, found without comparing all pairs.

Each image is reduced to a 64-bit difference hash (:func:`dhash`: is each pixel of a 9×8 grey copy
darker than its right neighbour) and a 16×16 grey thumbnail. Near duplicates are found by
multi-index hashing: the hash is cut into ``NEAR_BITS + 1`` pieces, and two hashes within
``NEAR_BITS`` bits of each other agree exactly on at least one piece (pigeonhole), so only images
sharing a piece are compared, never all pairs; a cap on comparisons (:data:`MAX_COMPARISONS`)
bounds degenerate cases, with a note. Candidates are confirmed by the correlation of their
thumbnails (:data:`NEAR_CORRELATION`). Used by the health check (:mod:`core.data.health`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

NEAR_BITS = 6  # dHash bits two near duplicates may differ in (of 64)
NEAR_CORRELATION = 0.9  # and the least correlation of their 16×16 grey thumbnails
MAX_COMPARISONS = 500_000_000  # hash comparisons in the near-duplicate search (~10 s)
MAX_PAIRS = 100_000  # close hash pairs kept before the search stops (100 × a report's list)


def dhash(grey: Image.Image) -> int:
    """The 64-bit difference hash: is each pixel of a 9×8 grey copy darker than its right
    neighbour (robust to scaling, recompression and brightness)."""
    small = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def near_pairs(hashes: np.ndarray, thumbs: np.ndarray) -> tuple[list[tuple[int, int]], str | None]:
    """Pairs ``(i, j)`` of near-duplicate images, and a note if the search was capped.

    Images with the same hash pair with the first of them; distinct hashes within
    :data:`NEAR_BITS` bits are found by multi-index hashing and pair through those first images.
    Every candidate is confirmed by the correlation of the thumbnails.

    Args:
        hashes: uint64 dHashes, one per image.
        thumbs: (N, 16, 16) grey thumbnails.
    """
    n = len(hashes)
    if n < 2:
        return [], None
    unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    rep = first[inverse.reshape(-1)]
    same = np.flatnonzero(rep != np.arange(n))
    candidates = [np.stack([rep[same], same], axis=1)]
    close, note = _close_hashes(unique)
    if len(close):
        candidates.append(first[close])
    pairs = np.concatenate(candidates)
    if not len(pairs):
        return [], note
    z = thumbs.reshape(n, -1).astype(np.float32)
    z -= z.mean(axis=1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-6  # flat images: zero, never a match
    corr = np.einsum("ij,ij->i", z[pairs[:, 0]], z[pairs[:, 1]])
    return [(int(min(a, b)), int(max(a, b))) for a, b in pairs[corr >= NEAR_CORRELATION]], note


def _close_hashes(unique: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Index pairs into ``unique`` (distinct hashes) within :data:`NEAR_BITS` bits: hashes that
    close agree on one of ``NEAR_BITS + 1`` pieces, so only those sharing a piece are compared."""
    parts = NEAR_BITS + 1
    widths = [64 // parts + (1 if i < 64 % parts else 0) for i in range(parts)]
    found: set[tuple[int, int]] = set()
    comparisons, shift = 0, 64
    for width in widths:
        shift -= width
        piece = (unique >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(piece, kind="stable")
        bounds = np.flatnonzero(np.diff(piece[order])) + 1
        for bucket in np.split(order, bounds):
            k = len(bucket)
            if k < 2:
                continue
            comparisons += k * (k - 1) // 2
            if comparisons > MAX_COMPARISONS or len(found) > MAX_PAIRS:
                return (
                    np.array(sorted(found), dtype=np.int64).reshape(-1, 2),
                    f"The near-duplicate search stopped after {comparisons:,} comparisons "
                    "(many very similar images): the list may be incomplete.",
                )
            for start in range(0, k, 256):  # rows in blocks: at most 256 × k distances at once
                rows = bucket[start : start + 256]
                dist = np.bitwise_count(unique[rows, None] ^ unique[None, bucket])
                r, c = np.nonzero(dist <= NEAR_BITS)
                found.update((int(a), int(b)) for a, b in zip(rows[r], bucket[c]) if a < b)
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2), None
