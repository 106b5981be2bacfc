"""The ledger's row-set sketch (oncofed.node.store.rowsets) on random sets: a small difference
peels exactly, the lower bounds never exceed the true distance (however large), differences
compose and apply exactly, and sketches survive their byte form."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.keys.ledger import LedgerKeys
from oncofed.node.store.rowsets import Diff, RowSet, Sketch, decode, lower_bound

KEYS = LedgerKeys(bytes(range(32)))
ids = st.sets(st.integers(1, 200_000), max_size=400)


def sets_with_change(draw: st.DrawFn, max_change: int) -> tuple[set[int], set[int]]:
    a = draw(ids)
    removed = draw(st.sets(st.sampled_from(sorted(a)), max_size=min(max_change, len(a)))) if a else set()
    added = draw(st.sets(st.integers(200_001, 400_000), max_size=max_change - len(removed)))
    return a, (a - removed) | added


small_change = st.composite(lambda draw: sets_with_change(draw, 40))()
any_change = st.composite(lambda draw: (draw(ids), draw(ids)))()


def rowset(s: set[int]) -> RowSet:
    return RowSet.of(np.array(sorted(s), dtype=np.int64), KEYS)


@settings(max_examples=150, deadline=None)
@given(small_change)
def test_a_small_difference_peels_exactly(pair: tuple[set[int], set[int]]) -> None:
    a, b = pair
    diff = decode(rowset(a).sketch, rowset(b).sketch, KEYS)
    assert diff is not None
    assert set(diff.add) == b - a and set(diff.remove) == a - b
    assert set(diff.apply(rowset(a).ids).tolist()) == b


@settings(max_examples=150, deadline=None)
@given(any_change)
def test_the_lower_bounds_never_exceed_the_distance(pair: tuple[set[int], set[int]]) -> None:
    a, b = (rowset(s) for s in pair)
    distance = len(pair[0] ^ pair[1])
    assert lower_bound(a.sketch, b.sketch) <= distance
    wrapped = np.abs((a.sketch.prefilter - b.sketch.prefilter).astype(np.int16)).sum()
    assert wrapped <= distance
    diff = decode(a.sketch, b.sketch, KEYS)
    if diff is not None:                    # whatever peels is the exact difference
        assert set(diff.add) == pair[1] - pair[0] and set(diff.remove) == pair[0] - pair[1]


def test_a_large_difference_does_not_peel_into_a_wrong_answer() -> None:
    a = rowset(set(range(1, 5_000)))
    b = rowset(set(range(2_000, 7_000)))
    assert decode(a.sketch, b.sketch, KEYS) is None
    assert 100 < lower_bound(a.sketch, b.sketch) <= 3_999   # balanced: cancellations, far above any radius


@settings(max_examples=100, deadline=None)
@given(ids, ids, ids)
def test_differences_compose_and_apply(a: set[int], b: set[int], c: set[int]) -> None:
    ab = Diff(tuple(sorted(b - a)), tuple(sorted(a - b)))
    bc = Diff(tuple(sorted(c - b)), tuple(sorted(b - c)))
    ac = ab.then(bc)
    assert set(ac.add) == c - a and set(ac.remove) == a - c
    arr = np.array(sorted(a), dtype=np.int64)
    assert ac.apply(arr).tolist() == sorted(c)
    assert Diff.from_bytes(ac.to_bytes()) == ac


@settings(max_examples=50, deadline=None)
@given(ids)
def test_sketches_and_digests_are_stable(s: set[int]) -> None:
    r = rowset(s)
    back = Sketch.from_bytes(r.sketch.to_bytes())
    assert np.array_equal(back.counts, r.sketch.counts) and np.array_equal(back.idsum, r.sketch.idsum)
    assert decode(r.sketch, back, KEYS) == Diff()
    again = RowSet.of(np.array(sorted(s, reverse=True), dtype=np.int64), KEYS)   # order does not matter
    assert again.digest == r.digest
    other = RowSet.of(np.array(sorted(s), dtype=np.int64), LedgerKeys(bytes(32)))
    assert other.digest != r.digest                                            # keyed


def test_the_radius_is_keyed_fixed_per_pair_and_between_k_and_2k() -> None:
    draws = [KEYS.radius(10, i.to_bytes(2, "big"), b"earlier") for i in range(400)]
    assert set(draws) == set(range(10, 20))
    assert KEYS.radius(10, b"a", b"b") == KEYS.radius(10, b"a", b"b")
    assert KEYS.radius(1, b"a", b"b") == 1
