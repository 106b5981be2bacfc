"""Seeded draws: per-purpose seeds, weighted pickers and a normal table, all on `random()` alone.

Every synthetic value comes from `random.Random.random()` (no `randint`, `gauss`, `choices`,
whose algorithms Python has changed between versions), so output depends only on the Mersenne
Twister stream; these helpers are the only ways the generator turns that stream into values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from statistics import NormalDist
from typing import Any

Pick = tuple[tuple[Any, ...], tuple[float, ...]]

# Standard normal quantiles at the midpoints of Z_STEPS equal-probability bins, within +-3 SD:
# one random() per normal draw (ages need no finer resolution).
Z_STEPS = 2048
Z_TABLE = tuple(max(-3.0, min(3.0, NormalDist().inv_cdf((i + 0.5) / Z_STEPS)))
                for i in range(Z_STEPS))


def derive_seed(seed: int, centre_index: int, purpose: str) -> int:
    """A seed for one centre and purpose, so centres (and chunks) are independent yet
    reproducible, and adding a centre never changes the others."""
    text = f"oncofed-synth/v1/{seed}/{centre_index}/{purpose}".encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


def picker(pairs: Iterable[tuple[Any, float]]) -> Pick:
    """Items and normalised cumulative weights for `items[bisect(cum, r())]` (one C call)."""
    kept = [(k, float(w)) for k, w in pairs if w > 0]
    if not kept:
        raise ValueError("weights must not all be zero")
    total = sum(w for _, w in kept)
    cum, acc = [], 0.0
    for _, w in kept:
        acc += w / total
        cum.append(acc)
    cum[-1] = 1.0  # random() < 1.0, so the last item is always reachable and never overrun
    return tuple(k for k, _ in kept), tuple(cum)
