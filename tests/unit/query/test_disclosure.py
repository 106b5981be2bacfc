"""Disclosure rules on exact cells: threshold mode never lets a cell 0 < n < k out, cell-key
perturbation is a function of the rows only, small cohorts give a flagged all-zero vector, the
perturbation table keeps its published properties, survival tails are censored below k."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.analyses import analysis, ptable, release
from oncofed.analyses.cells import Cell, GroupSurvival, RawCounts, RawSummary, RawSurvival, cumulative
from oncofed.analyses.count import CountSpec
from oncofed.analyses.crosstab import CrosstabSpec
from oncofed.analyses.disclosure import roundmid
from oncofed.analyses.summary import SummarySpec
from oncofed.analyses.survival import SurvivalSpec, tail_censor
from oncofed.keys.cellkey import RECORD_KEY_MOD, RecordKeyer
from oncofed.node.query.policy import NodePolicy

THRESHOLD = NodePolicy(mode="threshold")
CELL_KEY = NodePolicy(mode="cell_key")


def protect(spec, raw, *, k, policy):
    """The analysis' disclosure step under the policy's rules with minimum cell count k."""
    rules = dataclasses.replace(policy.rules(permit_k=None, epsilon=None), k=k)
    return release(analysis(spec.kind), spec, raw, rules)


cells_st = st.lists(st.builds(Cell, st.integers(0, 40), st.integers(0, RECORD_KEY_MOD - 1)), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(cells=cells_st, k=st.integers(1, 15))
def test_threshold_mode_never_releases_a_cell_between_0_and_k(cells, k):
    spec = CrosstabSpec(field_names=("x",), levels=(tuple(str(i) for i in range(len(cells))),))
    rel = protect(spec, RawCounts(cells), k=k, policy=THRESHOLD)
    assert not any(0 < v < k for v in rel.values)
    if any(0 < c.n < k for c in cells) or sum(c.n for c in cells) < k:
        assert rel.values == [0] * len(cells) and rel.flags[1] == 1          # withheld whole, flagged
    else:
        assert rel.values == [c.n for c in cells] and rel.flags == [1, 0]


@settings(max_examples=200, deadline=None)
@given(cells=cells_st)
def test_cell_key_values_stay_within_d_and_zero_stays_zero(cells):
    spec = CrosstabSpec(field_names=("x",), levels=(tuple(str(i) for i in range(len(cells))),))
    rel = protect(spec, RawCounts(cells), k=1, policy=CELL_KEY)
    for c, v in zip(cells, rel.values, strict=True):
        assert v >= 0 and abs(v - c.n) <= ptable.MAX_DEVIATION
        assert (v == 0) if c.n == 0 else True


def test_small_cohort_gives_an_all_suppressed_vector_with_its_flag_set():
    for n in (0, 1, 9):
        rel = protect(CountSpec(), RawCounts([Cell(n, 12345)]), k=10, policy=CELL_KEY)
        assert rel.values == [0] and rel.flags == [1, 1]
    rel = protect(CountSpec(), RawCounts([Cell(10, 12345)]), k=10, policy=CELL_KEY)
    assert rel.flags == [1, 0] and abs(rel.values[0] - 10) <= 2


def test_perturbation_depends_on_the_rows_not_the_phrasing():
    keyer = RecordKeyer(b"k" * 32)
    rows = [f"tumour-{i}" for i in range(57)]
    forward = sum(keyer.record_key(r) for r in rows)
    backward = sum(keyer.record_key(r) for r in reversed(rows))
    assert ptable.perturb(57, forward) == ptable.perturb(57, backward)
    other = RecordKeyer(b"j" * 32)
    published = {ptable.perturb(57, sum(other.record_key(f"t{s}-{i}") for i in range(57))) for s in range(200)}
    assert len(published) > 1 and published <= set(range(55, 60))     # noise exists and stays within D


def test_published_table_properties():
    t = ptable.table()
    ptable.check(t)
    assert t == tuple(tuple(r) for r in ptable.generate())   # the shipped file is the documented table
    assert ptable.perturb(0, 123) == 0
    assert ptable.row_for(1000) == 32 + 1000 % 32
    bad = (t[0], tuple(x + 1 if i == 0 else x for i, x in enumerate(t[1])), *t[2:])
    with pytest.raises(ValueError, match="mean"):
        ptable.check(bad)


def test_summary_moments_are_withheld_together_below_k():
    spec = SummarySpec(field="age_at_incidence", scale_bits=0, bound=120.0, edges=(0, 50, 121), unit_bins=False,
                       integer=True, quantiles=(0.5,))
    raw = RawSummary(n=Cell(4, 1), sum_x=200, sum_xx=10_000, missing=Cell(30, 7), bins=[Cell(2, 3), Cell(2, 5)])
    rel = protect(spec, raw, k=5, policy=THRESHOLD)
    assert rel.values[:3] == [0, 0, 0] and rel.flags[1] == 1
    assert rel.flags[2] == 1 and rel.values[3:] == [0, 0, 0]       # bins 2 < k: the table is withheld too
    raw.n = Cell(40, 1)
    raw.bins = [Cell(20, 3), Cell(20, 5)]
    rel = protect(spec, raw, k=5, policy=THRESHOLD)
    assert rel.values == [40, 200, 10_000, 30, 20, 20] and rel.flags == [1, 0, 0]


UNIT = SummarySpec(field="age_at_incidence", scale_bits=0, bound=120.0, edges=tuple(range(0, 11)), unit_bins=True,
                   integer=True, quantiles=(0.5,))


@pytest.mark.parametrize("policy", [THRESHOLD, CELL_KEY])
def test_summary_quantile_tails_are_coded_so_no_tail_bin_rests_on_fewer_than_k(policy):
    """A lone outlier in a unit bin would label the exact maximum (0 stays 0 under cell-key): the
    tails are merged, on the true counts, until each end bin holds at least k rows."""
    counts = [1, 0, 2, 3, 6, 7, 5, 0, 0, 1]          # min 0 (one row), max 9 (one row)
    bins = [Cell(n, 11 * i + 1) for i, n in enumerate(counts)]
    raw = RawSummary(n=Cell(25, 3), sum_x=0, sum_xx=0, missing=Cell(0, 0), bins=bins)
    rel = protect(UNIT, raw, k=5, policy=policy)
    released = rel.values[4:]
    assert released[:3] == [0, 0, 0] and released[7:] == [0, 0, 0]   # 1+0+2+3 ≥ 5 at bin 3; 1+0+0+5 at bin 6
    assert released[3] > 0 and released[6] > 0
    if policy is THRESHOLD:
        assert released == [0, 0, 0, 6, 6, 7, 6, 0, 0, 0] and rel.flags == [1, 0, 0]


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 6), min_size=2, max_size=30), k=st.integers(1, 8))
def test_coded_tails_never_rest_on_fewer_than_k_rows(counts, k):
    bins = [Cell(n, 7 * i + 1) for i, n in enumerate(counts)]
    raw = RawSummary(n=Cell(sum(counts), 1), sum_x=0, sum_xx=0, missing=Cell(k, 2), bins=bins)
    rel = protect(UNIT, raw, k=k, policy=THRESHOLD)
    released = rel.values[4:]
    if rel.flags[2]:
        return
    nonzero = [i for i, v in enumerate(released) if v]
    assert sum(released) == sum(counts)                            # merged, never dropped
    assert released[nonzero[0]] >= k and released[nonzero[-1]] >= k


def test_threshold_summary_withholds_the_moments_with_the_missing_count():
    """n exact beside a withheld `missing` (0 < missing < k) would give it away as count − n."""
    spec = SummarySpec(field="age_at_incidence", scale_bits=0, bound=120.0, edges=(0, 50, 121), unit_bins=False,
                       integer=True, quantiles=(0.5,))
    raw = RawSummary(n=Cell(40, 1), sum_x=200, sum_xx=10_000, missing=Cell(2, 7), bins=[Cell(20, 3), Cell(20, 5)])
    rel = protect(spec, raw, k=5, policy=THRESHOLD)
    assert rel.flags == [1, 1, 1] and rel.values == [0] * 6


def _group(entered, events, censored):
    return GroupSurvival(cumulative([Cell(x, i + 1) for i, x in enumerate(entered)]),
                         cumulative([Cell(x, 100 + i) for i, x in enumerate(events)]),
                         cumulative([Cell(x, 200 + i) for i, x in enumerate(censored)]))


def test_tail_censoring_reports_everyone_left_as_censored_once_at_risk_falls_below_k():
    # 20 enter at 0; events 3,2,2,1 and censored 2,4,3,0 in intervals 1–4 → at risk 20,20,15,9,4
    g = _group([20, 0, 0, 0, 0], [0, 3, 2, 2, 1], [0, 2, 4, 3, 0])
    assert tail_censor(g, k=5).tail_censored_at == 4
    out = tail_censor(g, k=10)
    assert out.tail_censored_at == 3
    assert [c.n for c in out.events] == [0, 3, 5, 5, 5]
    assert [c.n for c in out.censored] == [0, 2, 6, 15, 15]
    assert [c.n for c in out.entered] == [20] * 5
    assert out.censored[-1].key == (out.entered[-1] - out.events[2]).key
    assert tail_censor(g, k=1).tail_censored_at is None


def test_survival_groups_below_k_are_withheld_and_flagged():
    spec = SurvivalSpec(kind="kaplan_meier", outcome="OS", cutoff=dt.date(2025, 1, 1), step_days=30, n_edges=3,
                        group_field="sex", groups=("1", "2", "9", "(missing)"))
    big = _group([30, 0, 0], [0, 2, 3], [0, 1, 1])
    small = _group([3, 0, 0], [0, 1, 0], [0, 0, 0])
    empty = _group([0, 0, 0], [0, 0, 0], [0, 0, 0])
    raw = RawSurvival([big, small, empty, empty])
    rel = protect(spec, raw, k=5, policy=NodePolicy(mode="threshold"))
    assert rel.flags == [1, 0, 0, 1, 1, 1]
    assert rel.values[9:] == [0] * 28                      # three withheld groups, nobody left out
    # entries and events rounded to the midpoint of blocks of 5; numbers at risk rounded (30, 30, 27
    # → 28, 28, 28) and clamped to what the previous interval leaves (28 − 3 = 25); the last
    # interval's censorings take the rest down to the 23 still followed after the horizon (→ 23)
    assert rel.values[:9] == [28, 28, 28, 0, 3, 3, 0, 0, 2]
    rel = protect(spec, raw, k=5, policy=CELL_KEY)
    first = rel.values[:9]
    for series in (first[0:3], first[3:6], first[6:9]):
        assert all(a <= b for a, b in itertools.pairwise(series))                 # cumulative stays monotone


def test_roundmid_is_opensafely_midpoint_rounding():
    assert [roundmid(v, 5) for v in (0, 1, 5, 6, 10, 11)] == [0, 3, 3, 8, 8, 13]
    assert [roundmid(v, 10) for v in (1, 10, 11)] == [5, 5, 15]


def test_policy_is_read_strictly_and_a_permit_only_tightens():
    p = NodePolicy.from_mapping({"min_cell_count": 7, "mode": "threshold", "allowed_analyses": ["count"]})
    assert p.effective_k(5) == 7 and p.effective_k(11) == 11 and p.effective_k(None) == 7
    with pytest.raises(ValueError, match="unknown"):
        NodePolicy.from_mapping({"min_cells": 3})
    with pytest.raises(ValueError, match="mode"):
        NodePolicy(mode="off")
