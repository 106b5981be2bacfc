"""A survival group's release is a consistent life table, whatever the rows, keys and rules:
cumulative series non-decreasing and non-negative, at risk = entered − events − censored to date,
events and censorings within the number at risk, nothing at risk after the last reported edge
(no perturbed tail out to the horizon); exact when the rules are exact; DP output too."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.analyses import ptable
from oncofed.analyses.cells import Cell, GroupSurvival, cumulative
from oncofed.analyses.survival import tail_censor
from oncofed.analyses.survival_release import consistent, consistent_from_noisy, publish_group

EDGES = 12
# one row: (entry interval α, exit interval κ or None beyond the horizon, event, record key)
ROW = st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, EDGES - 1)), st.booleans(),
                st.integers(0, 2**32 - 1))


def group_of(rows: list[tuple[int, int | None, bool, int]]) -> GroupSurvival:
    entries = [Cell(0)] * EDGES
    events = [Cell(0)] * EDGES
    censored = [Cell(0)] * EDGES
    for alpha, kappa, event, key in rows:
        if kappa is not None and kappa < alpha:
            kappa = alpha
        entries[alpha] = entries[alpha] + Cell(1, key)
        if kappa is not None:
            target = events if event else censored
            target[kappa] = target[kappa] + Cell(1, key)
    return GroupSurvival(cumulative(entries), cumulative(events), cumulative(censored))


def check_table(values: list[int], last_reported: int | None = None) -> None:
    a, d, c = values[:EDGES], values[EDGES:2 * EDGES], values[2 * EDGES:]
    for series in (a, d, c):
        assert series[0] >= 0 and all(x <= y for x, y in itertools.pairwise(series))
    for j in range(EDGES):
        at_risk = a[j] - (d[j - 1] + c[j - 1] if j else 0)
        events, cens = d[j] - (d[j - 1] if j else 0), c[j] - (c[j - 1] if j else 0)
        entered = a[j] - (a[j - 1] if j else 0)
        assert at_risk >= entered and at_risk >= events + cens >= 0
        if last_reported is not None and j > last_reported:
            assert at_risk == 0
    assert a[-1] - d[-1] - c[-1] >= 0                      # still followed beyond the horizon


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(ROW, min_size=0, max_size=80), k=st.integers(1, 12),
       method=st.sampled_from(["cell_key", "round"]), table=st.sampled_from(["survival", "counts"]))
def test_every_release_is_a_consistent_table_that_ends_where_reporting_stopped(rows, k, method, table):
    g = tail_censor(group_of(rows), k)
    values, cells = publish_group(g, k, method, table)
    check_table(values, g.tail_censored_at)
    if g.tail_censored_at is not None:       # everyone left is reported censored there, nobody after
        a, d, c = values[:EDGES], values[EDGES:2 * EDGES], values[2 * EDGES:]
        assert a[-1] - d[-1] - c[-1] == 0
    assert cells >= 0


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=60))
def test_exact_rules_release_the_exact_series(rows):
    g = group_of(rows)
    values, _ = publish_group(g, 1, "round", "survival")        # midpoint rounding with k = 1 is exact
    assert values == [x.n for s in (g.entered, g.events, g.censored) for x in s]


@settings(max_examples=300, deadline=None)
@given(noise=st.lists(st.integers(-6, 6), min_size=3 * EDGES, max_size=3 * EDGES),
       rows=st.lists(ROW, min_size=0, max_size=40))
def test_noisy_dp_series_are_made_consistent_too(noise, rows):
    g = group_of(rows)
    series = []
    for part, s in enumerate((g.entered, g.events, g.censored)):
        acc, out = 0, []
        for j, x in enumerate(s):
            acc += noise[part * EDGES + j]
            out.append(x.n + acc)
        series.append(out)
    check_table(consistent_from_noisy(*series))


def test_a_tail_censored_group_shows_no_perturbed_at_risk_to_the_horizon():
    """The old release perturbed A, D, C apart: after tail censoring A − D − C was a perturbed
    remainder of 1–5 'at risk' at every later edge. Now the at-risk cells are empty there."""
    rows = [(0, j % 6 + 1, j % 3 == 0, 7919 * j + 13) for j in range(40)] + [(0, None, False, 99 + j) for j in range(4)]
    g = tail_censor(group_of(rows), 10)
    assert g.tail_censored_at is not None and g.tail_censored_at < EDGES - 1
    for shift in range(50):                          # many keys: same rows, other perturbations
        shifted = GroupSurvival(*[[Cell(c.n, c.key + shift * 2**26) for c in s]
                                  for s in (g.entered, g.events, g.censored)], tail_censored_at=g.tail_censored_at)
        values, _ = publish_group(shifted, 10, "cell_key", "counts")
        check_table(values, g.tail_censored_at)


def test_each_number_at_risk_is_one_perturbed_count_unless_the_table_forbids_it():
    """Away from clamps, the released number at risk is the at-risk set's own perturbation."""
    rows = [(0, 1 + j % (EDGES - 1), j % 4 == 0, 104_729 * j + 7) for j in range(300)]
    g = group_of(rows)
    values, _ = publish_group(g, 10, "cell_key", "counts")
    a, d, c = values[:EDGES], values[EDGES:2 * EDGES], values[2 * EDGES:]
    same = 0
    for j in range(1, EDGES):
        at_risk_cell = g.entered[j] - (g.events[j - 1] + g.censored[j - 1])
        released = a[j] - d[j - 1] - c[j - 1]
        assert abs(released - at_risk_cell.n) <= 2 * ptable.MAX_DEVIATION
        same += released == ptable.perturb(at_risk_cell.n, at_risk_cell.key)
    assert same >= (EDGES - 1) // 2


def test_consistent_clamps_a_rise_without_entrants_and_keeps_the_identity():
    # 10 enter; published at risk rises to 12 in interval 1 although nobody entered: clamped to 10
    values = consistent([10, 10, 10], [0, 2, 3], [10, 12, 7], 5)
    assert values == [10, 10, 10, 0, 2, 3, 0, 1, 2]
    check = [10, 10 - 0 - 0, 10 - 2 - 1]
    assert [values[j] - (values[3 + j - 1] + values[6 + j - 1] if j else 0) for j in range(3)] == check


@pytest.mark.parametrize("table", ["survival", "counts"])
def test_the_survival_table_is_the_documented_one_and_smaller(table):
    t = ptable.survival_table() if table == "survival" else ptable.table()
    generated = ptable.generate_survival() if table == "survival" else ptable.generate()
    assert t == tuple(tuple(r) for r in generated)
    variance = [sum(x * x for x in row) / len(row) for row in t[1:]]
    assert variance == pytest.approx([0.2 if table == "survival" else 1.0] * len(variance))
    assert all(v + x >= 0 for v, row in enumerate(t) for x in row) and not any(t[0])
    with pytest.raises(ValueError, match="variance"):
        ptable.check(ptable.table(), max_deviation=2, variance_percent=ptable.SURVIVAL_VARIANCE_PERCENT)
