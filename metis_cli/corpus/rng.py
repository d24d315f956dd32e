"""Random generators of the embedded corpus, one per purpose."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, *keys) -> np.random.Generator:
    """An independent generator per (seed, purpose): adding a use never shifts the others."""
    digest = hashlib.sha256(":".join(map(str, (seed, *keys))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
