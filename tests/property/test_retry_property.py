"""The retry rule (oncofed.secagg.retry, D26) against the differencing it exists to stop.

A model of what a researcher can compute: centre c's figure v_c is in a sum only when every
member of that sum's set released its answer; an honest centre that abstained from q never
releases q; a lying one (colluding with the researcher) may have. Whenever the rule lets a
release go out under S₂ after one under S₁, every figure the two sums could difference out
belongs to a centre that signed an abstention — so an honest centre's figures never leak, and a
liar gives away only its own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oncofed.secagg.retry import EarlierRelease, release_blocker

NAMES = [f"centre-{c}" for c in "abcdefg"]
Q = "ab" * 32

sets = st.frozensets(st.sampled_from(NAMES), min_size=2, max_size=len(NAMES))


@given(s1=sets, s2=sets, abstainers=st.frozensets(st.sampled_from(NAMES)), liars=st.frozensets(st.sampled_from(NAMES)))
def test_what_the_rule_lets_out_differences_only_abstainers_figures(s1: frozenset[str], s2: frozenset[str],
                                                                    abstainers: frozenset[str],
                                                                    liars: frozenset[str]) -> None:
    abstained = {(Q, c) for c in abstainers}
    allowed = release_blocker(s2, [EarlierRelease(s1, frozenset({Q}))], abstained) is None
    if not allowed:
        return
    honest_abstainers = abstainers - liars
    sum1_formed = not (s1 & honest_abstainers)          # an honest abstainer's masks never cancel
    if sum1_formed and s1 != s2:
        differenced = s1 ^ s2                            # sum1 − sum2 = Σ(S1 ∖ S2) − Σ(S2 ∖ S1)
        assert differenced <= abstainers, (s1, s2, abstainers)
        assert differenced <= liars                      # so only liars' figures: their own doing


@given(s1=sets, s2=sets, abstainers=st.frozensets(st.sampled_from(NAMES)))
def test_the_rule_allows_exactly_subsets_whose_leavers_all_abstained(s1: frozenset[str], s2: frozenset[str],
                                                                     abstainers: frozenset[str]) -> None:
    abstained = {(Q, c) for c in abstainers}
    blocker = release_blocker(s2, [EarlierRelease(s1, frozenset({Q}))], abstained)
    expected = s1 == s2 or (s2 <= s1 and (s1 - s2) <= abstainers)
    assert (blocker is None) == expected, blocker


def test_every_query_under_the_earlier_set_needs_its_own_abstentions() -> None:
    """Two queries released under {a, b, c}: one completed (c answered), one failed. c's
    abstention from the failed one does not cover the completed one."""
    earlier = EarlierRelease(frozenset({"a", "b", "c"}), frozenset({"q-done", "q-failed"}))
    assert release_blocker({"a", "b"}, [earlier], {("q-failed", "c")}) is not None
    assert release_blocker({"a", "b"}, [earlier], {("q-failed", "c"), ("q-done", "c")}) is None


def test_an_unrecorded_set_is_refused_and_the_same_set_is_free() -> None:
    assert release_blocker({"a", "b"}, [EarlierRelease(None, frozenset({"q"}))], set()) is not None
    assert release_blocker({"a", "b"}, [EarlierRelease(frozenset({"a", "b"}), frozenset({"q"}))], set()) is None
    assert release_blocker({"a", "b"}, [], set()) is None


def test_a_chain_of_retries_keeps_each_centre_its_own_guard() -> None:
    """q1 over {a,b,c,d} failed (d abstained); q2 over {a,b,c} failed (c abstained from q2 only,
    having released q1). A third attempt over {a,b} would difference c's figures out of q1 on d's
    word alone: refused. With c back, {a,b,c} is allowed."""
    earlier = [EarlierRelease(frozenset("abcd"), frozenset({"q1"})),
               EarlierRelease(frozenset("abc"), frozenset({"q2"}))]
    evidence = {("q1", "d"), ("q2", "c")}
    assert release_blocker(set("ab"), earlier, evidence) is not None
    assert release_blocker(set("abc"), earlier, evidence) is None
