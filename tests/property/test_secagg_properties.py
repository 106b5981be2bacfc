"""Properties of secure aggregation (issue 10, item 3): the masks cancel in the sum over any
participant set of 2–100; every proper subset of masked answers, and every mix of answers from two
runs under different participant sets, rounds or queries, looks uniform; a mask key masks once.

"Looks uniform" is a chi-square test on the byte histogram of 256 elements (4,096 bytes, 255
degrees of freedom) with a fixed threshold at p = 10^-9, so an honest masker fails it about once
in 10^9 checks and the test is not seed-dependent. Its power is checked at the end: a masker
with zero masks, one mask reused for every element, one mask for every pair, or masks blind to
the round and query fails it, every time.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from oncofed.query import sum_vectors
from oncofed.secagg import (
    Accept,
    EphemeralMaskKey,
    MaskKeyUsed,
    ParticipantSet,
    mask,
    masks,
    unmask_sum,
)
from oncofed.secagg.lanes import pack, sum_packed, unpack

MOD = 1 << 128
LENGTH = 256                      # elements per vector in the uniformity tests: 4,096 bytes
CHI2_THRESHOLD = 414.545          # chi-square, 255 df, upper tail p = 1e-9 (scipy.stats.chi2.isf(1e-9, 255))


def chi2_bytes(values):
    data = b"".join(v.to_bytes(16, "little") for v in values)
    counts = Counter(data)
    expected = len(data) / 256
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(256))


def looks_uniform(values):
    return chi2_bytes(values) < CHI2_THRESHOLD


def centre_ids(n):
    return [f"centre-{i:03d}" for i in range(n)]


def qhash(label):
    return hashlib.sha256(f"query {label}".encode()).hexdigest()


def plain_vectors(ids, seed, shape, length=LENGTH):
    """Low-entropy plaintexts (what answers really look like) unless shape is 'full'."""
    rnd = random.Random(seed)
    top = {"zeros": 0, "counts": 1000, "full": MOD - 1}[shape]
    return {c: [rnd.randint(0, top) for _ in range(length)] for c in ids}


def run(ids, vectors, *, query_hash, round=0, privates=None):
    """Every member of S masks its vector; `privates` replays mask keys (as a hub replaying old
    accepts would need the centres to do) — None draws fresh keys."""
    privates = privates or {}
    keys = {c: (EphemeralMaskKey.from_cleartext_private_bytes(privates[c]) if c in privates
                else EphemeralMaskKey.generate()) for c in ids}
    s = ParticipantSet(tuple(Accept(query_hash, c, keys[c].public_key) for c in ids))
    masked = {c: mask(vectors[c], key=keys[c], me=c, participants=s, query_hash=query_hash, round=round)
              for c in ids}
    return s, masked


def combine(terms):
    """Σ ± values of (sign, MaskedVector) terms, mod 2^128."""
    out = [0] * len(terms[0][1])
    for sign, mv in terms:
        out = [(a + sign * b) % MOD for a, b in zip(out, mv.values, strict=True)]
    return out


# --- cancellation -------------------------------------------------------------------------------

def masks_cancel(n, data):
    length = data.draw(st.integers(1, 64 if n <= 10 else 3), label="length")
    values = st.integers(0, MOD - 1)
    ids = centre_ids(n)
    vectors = {c: data.draw(st.lists(values, min_size=length, max_size=length), label=c) for c in ids}
    rnd = data.draw(st.integers(0, 2**32 - 1), label="round")
    s, masked = run(ids, vectors, query_hash=qhash(n), round=rnd)
    total = unmask_sum(list(masked.values())[::-1], participants=s, round=rnd)
    assert total == sum_vectors(vectors.values())
    assert all(masked[c].values != vectors[c] for c in ids)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 100), data=st.data())
def test_masks_cancel_for_any_participant_set(n, data):
    masks_cancel(n, data)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 100), data=st.data())
def test_masks_cancel_for_any_participant_set_many_examples(n, data):
    masks_cancel(n, data)


def test_masks_cancel_with_100_participants_and_long_vectors():
    ids = centre_ids(100)
    vectors = plain_vectors(ids, 1, "counts", length=300)
    s, masked = run(ids, vectors, query_hash=qhash("hundred"), round=3)
    assert unmask_sum(masked.values(), participants=s, round=3) == sum_vectors(vectors.values())


@settings(max_examples=100, deadline=None)
@given(vectors=st.integers(1, 20).flatmap(lambda n: st.lists(
    st.lists(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, MOD - 1)), min_size=n, max_size=n),
    min_size=1, max_size=8)))
def test_packed_sums_equal_python_integer_sums(vectors):
    assert all(unpack(pack(v)) == v for v in vectors)
    assert unpack(sum_packed([pack(v) for v in vectors], len(vectors[0]))) == sum_vectors(vectors)


# --- proper subsets look uniform ----------------------------------------------------------------

def proper_subsets(ids, rnd, limit=40):
    every = [set(c) for k in range(1, len(ids)) for c in itertools.combinations(ids, k)]
    return every if len(every) <= limit else rnd.sample(every, limit)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**32), shape=st.sampled_from(["zeros", "counts", "full"]))
def test_every_proper_subset_of_masked_answers_looks_uniform(n, seed, shape):
    ids = centre_ids(n)
    _, masked = run(ids, plain_vectors(ids, seed, shape), query_hash=qhash(seed))
    for subset in proper_subsets(ids, random.Random(seed)):
        assert looks_uniform(combine([(1, masked[c]) for c in sorted(subset)])), sorted(subset)


# --- a re-run under another participant set -----------------------------------------------------

RERUNS = ["member added", "member replaced", "member dropped", "other round", "retry (new query)"]


def rerun(ids, vectors, how, privates):
    """A second run of the same question, replaying the first run's mask keys for every member in
    common — the worst case: real centres draw fresh keys, so a replay needs a misbehaving hub and
    a node that remasks instead of resending its recorded answer."""
    extra = f"centre-{len(ids):03d}"
    if how == "member added":
        ids2 = [*ids, extra]
    elif how == "member replaced":
        ids2 = [*ids[:-1], extra]
    elif how == "member dropped":
        ids2 = ids[:-1]
    else:
        ids2 = list(ids)
    return ids2, run(ids2, vectors, query_hash=qhash("retry" if how == "retry (new query)" else "first"),
                     round=1 if how == "other round" else 0, privates=privates)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 6), how=st.sampled_from(RERUNS), seed=st.integers(0, 2**32),
       shape=st.sampled_from(["zeros", "counts"]), data=st.data())
def test_answers_from_two_runs_never_cancel(n, how, seed, shape, data):
    assume(not (how == "member dropped" and n == 2))
    ids = centre_ids(n)
    vectors = plain_vectors([*ids, f"centre-{n:03d}"], seed, shape)
    privates = {c: hashlib.sha256(f"{seed}/{c}".encode()).digest() for c in ids}
    _, first = run(ids, vectors, query_hash=qhash("first"), privates=privates)
    ids2, (_, second) = rerun(ids, vectors, how, privates)
    # any pair: one answer of each run, added or subtracted
    x = data.draw(st.sampled_from(ids), label="from run 1")
    y = data.draw(st.sampled_from(ids2), label="from run 2")
    for sign in (1, -1):
        assert looks_uniform(combine([(1, first[x]), (sign, second[y])])), (x, sign, y)
    # any subset mixing both runs, unless it is a whole run on each side (then it is two sums,
    # and what those reveal by differencing is the release ledger's to stop, not the masks')
    a = data.draw(st.sets(st.sampled_from(ids), min_size=1), label="subset of run 1")
    b = data.draw(st.sets(st.sampled_from(ids2), min_size=1), label="subset of run 2")
    assume(not (a == set(ids) and b == set(ids2)))
    assert looks_uniform(combine([(1, first[c]) for c in sorted(a)] + [(1, second[c]) for c in sorted(b)]))


# --- one use per key ----------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 5), seed=st.integers(0, 2**32))
def test_a_mask_key_masks_one_vector_only(n, seed):
    ids = centre_ids(n)
    vectors = plain_vectors(ids, seed, "counts", length=4)
    keys = {c: EphemeralMaskKey.generate() for c in ids}
    s = ParticipantSet(tuple(Accept(qhash(seed), c, keys[c].public_key) for c in ids))
    me = ids[seed % n]
    mask(vectors[me], key=keys[me], me=me, participants=s, query_hash=qhash(seed), round=0)
    assert not keys[me].usable
    for r, v in ((0, vectors[me]), (1, vectors[me]), (0, [0] * 4)):   # again, next round, another vector
        with pytest.raises(MaskKeyUsed):
            mask(v, key=keys[me], me=me, participants=s, query_hash=qhash(seed), round=r)
    with pytest.raises(MaskKeyUsed):
        keys[me].cleartext_private_bytes()


# --- the uniformity check has power: broken maskers fail it -------------------------------------

def any_proper_subset_flagged(n=3, shape="counts"):
    ids = centre_ids(n)
    _, masked = run(ids, plain_vectors(ids, 7, shape), query_hash=qhash("broken"))
    return any(not looks_uniform(combine([(1, masked[c]) for c in sorted(sub)]))
               for sub in proper_subsets(ids, random.Random(0)))


def test_the_honest_masker_passes_the_detector_used_below():
    assert not any_proper_subset_flagged(n=3)
    assert not any_proper_subset_flagged(n=4, shape="zeros")


@pytest.mark.parametrize("shape", ["zeros", "counts"])
def test_zero_masks_are_detected(monkeypatch, shape):
    monkeypatch.setattr(masks, "_keystream", lambda key, zeros: bytes(len(zeros)))
    assert any_proper_subset_flagged(shape=shape)


def test_one_mask_reused_for_every_element_is_detected(monkeypatch):
    honest = masks._keystream
    monkeypatch.setattr(masks, "_keystream", lambda key, zeros: honest(key, bytes(16)) * (len(zeros) // 16))
    assert any_proper_subset_flagged(shape="zeros")


def test_one_mask_for_every_pair_is_detected(monkeypatch):
    honest = masks._keystream
    monkeypatch.setattr(masks, "_keystream", lambda key, zeros: honest(bytes(32), zeros))
    assert any_proper_subset_flagged(n=3)


def test_masks_blind_to_round_and_query_are_detected(monkeypatch):
    honest = masks.pair_info

    def blind(*, query_hash, round, set_digest, a, b):
        return honest(query_hash=qhash("fixed"), round=0, set_digest=bytes(32), a=a, b=b)

    monkeypatch.setattr(masks, "pair_info", blind)
    ids = centre_ids(2)
    vectors = plain_vectors(ids, 3, "counts")
    privates = {c: hashlib.sha256(c.encode()).digest() for c in ids}
    _, first = run(ids, vectors, query_hash=qhash("first"), privates=privates)
    _, second = run(ids, vectors, query_hash=qhash("first"), round=1, privates=privates)
    # with masks blind to the round, centre-000 of run 1 and centre-001 of run 2 cancel
    assert not looks_uniform(combine([(1, first[ids[0]]), (1, second[ids[1]])]))
