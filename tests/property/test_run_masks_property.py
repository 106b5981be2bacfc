"""Properties of a run's mask keys (D25): one accept per Flower run, round r in the HKDF info.

- the masks cancel in every round's sum, whatever the rounds and vectors;
- no pair's masks cancel across rounds: answers of one round mixed with another round's are
  noise, not a sum (and each pair's keystream differs from round to round);
- a key masks each round once, only upwards, only under its first participant set, never round 0,
  and keeps refusing after it is restored from the store.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.query import sum_vectors
from oncofed.secagg import Accept, InvalidParticipantSet, MaskKeyUsed, ParticipantSet, RunMaskKey, unmask_sum

MOD = 1 << 128


def run(n: int, label: str = "run") -> tuple[str, list[str], dict[str, RunMaskKey], ParticipantSet]:
    q = hashlib.sha256(label.encode()).hexdigest()
    ids = [f"centre-{i:02d}" for i in range(n)]
    keys = {c: RunMaskKey.generate() for c in ids}
    s = ParticipantSet(tuple(Accept(q, c, keys[c].public_key) for c in ids))
    return q, ids, keys, s


vectors = st.lists(st.integers(0, MOD - 1), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 6), rounds=st.integers(1, 6), data=st.data())
def test_the_masks_cancel_in_every_rounds_sum(n: int, rounds: int, data: st.DataObject) -> None:
    q, ids, keys, s = run(n)
    length = data.draw(st.integers(1, 12))
    for r in range(1, rounds + 1):
        plain = {c: data.draw(st.lists(st.integers(0, MOD - 1), min_size=length, max_size=length)) for c in ids}
        masked = [keys[c].mask(plain[c], me=c, participants=s, query_hash=q, round=r) for c in ids]
        assert unmask_sum(masked, participants=s, round=r) == sum_vectors(list(plain.values()))
        assert all(keys[c].masked_through == r for c in ids)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 5), r1=st.integers(1, 40), gap=st.integers(1, 40))
def test_no_pair_cancels_across_rounds(n: int, r1: int, gap: int) -> None:
    """Zero vectors make each answer its masks alone: an answer of round r1 from the first centre
    with the others' of round r2 sums to nonzero, and each centre's masks differ by round."""
    q, ids, keys, s = run(n)
    zeros = [0] * 8
    early = {c: keys[c].mask(zeros, me=c, participants=s, query_hash=q, round=r1) for c in ids}
    late = {c: keys[c].mask(zeros, me=c, participants=s, query_hash=q, round=r1 + gap) for c in ids}
    for c in ids:
        assert early[c].values != late[c].values
    for odd in ids:                      # one centre's answer from the other round
        mixed = [early[c] if c != odd else late[c] for c in ids]
        total = sum_vectors([m.values for m in mixed])
        assert total != zeros
    assert unmask_sum(late.values(), participants=s, round=r1 + gap) == zeros


def test_a_key_masks_each_round_once_and_only_upwards() -> None:
    q, ids, keys, s = run(3)
    k = keys[ids[0]]
    k.mask([1, 2], me=ids[0], participants=s, query_hash=q, round=2)
    for again in (2, 1):
        with pytest.raises(MaskKeyUsed):
            k.mask([1, 2], me=ids[0], participants=s, query_hash=q, round=again)
    with pytest.raises(MaskKeyUsed):
        keys[ids[1]].mask([1, 2], me=ids[1], participants=s, query_hash=q, round=0)
    assert k.masked_through == 2
    k.mask([1, 2], me=ids[0], participants=s, query_hash=q, round=5)
    assert k.masked_through == 5


def test_a_runs_participant_set_is_fixed_at_its_first_round() -> None:
    q, ids, keys, s = run(3)
    k = keys[ids[0]]
    k.mask([7], me=ids[0], participants=s, query_hash=q, round=1)
    smaller = ParticipantSet(tuple(a for a in s if a.centre_id != ids[2]))
    with pytest.raises(InvalidParticipantSet):
        k.mask([7], me=ids[0], participants=smaller, query_hash=q, round=2)
    assert k.masked_through == 1                 # the refusal consumed nothing
    k.mask([7], me=ids[0], participants=s, query_hash=q, round=2)


def test_a_restored_key_keeps_refusing_and_masks_as_before() -> None:
    q, ids, keys, s = run(2)
    a, b = ids
    secret = keys[a].cleartext_private_bytes()
    first = keys[a].mask([5, 6], me=a, participants=s, query_hash=q, round=1)
    again = RunMaskKey.restore(secret, masked_through=1, set_digest=s.digest())
    with pytest.raises(MaskKeyUsed):
        again.mask([5, 6], me=a, participants=s, query_hash=q, round=1)
    fresh = RunMaskKey.restore(secret, masked_through=0, set_digest=None)   # what a lost record would be
    assert fresh.mask([5, 6], me=a, participants=s, query_hash=q, round=1).data == first.data
    second = again.mask([1, 1], me=a, participants=s, query_hash=q, round=2)
    other = keys[b].mask([2, 2], me=b, participants=s, query_hash=q, round=2)
    assert unmask_sum([second, other], participants=s, round=2) == [3, 3]
    with pytest.raises(ValueError, match="participant set"):
        RunMaskKey.restore(secret, masked_through=3, set_digest=None)


def test_a_run_key_cannot_be_copied_pickled_or_built_directly() -> None:
    import copy
    import pickle

    k = RunMaskKey.generate()
    for attempt in (lambda: copy.copy(k), lambda: copy.deepcopy(k), lambda: pickle.dumps(k),
                    lambda: RunMaskKey(bytes(32), 0, None)):
        with pytest.raises(TypeError):
            attempt()
    k.destroy()
    with pytest.raises(MaskKeyUsed):
        k.cleartext_private_bytes()
    assert "destroyed" in repr(k) and "masked" not in repr(k)
