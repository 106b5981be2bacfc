"""The magnitude perturbation of a summary's sums under cell key (ABS cell-key method for magnitude
tables): bounded by half the largest contribution, zero-mean over the key, a function of the rows'
key alone, exact in threshold mode, and what it does to the mean."""

from __future__ import annotations

import dataclasses
import statistics
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.analyses import analysis, finalise, ptable, release
from oncofed.analyses.cells import Cell, RawSummary
from oncofed.analyses.disclosure import MAGNITUDE_DEVIATION, magnitude_table, perturb_magnitude
from oncofed.analyses.summary import SummarySpec
from oncofed.keys.cellkey import RECORD_KEY_MOD
from oncofed.node.query.policy import NodePolicy

SPEC = SummarySpec(field="tumour_size_mm", scale_bits=0, bound=500.0, edges=(0, 10, 20, 30, 50, 501),
                   unit_bins=False, integer=True, quantiles=(0.5,))
BUCKET_KEYS = [b * RECORD_KEY_MOD // ptable.COLUMNS + 1 for b in range(ptable.COLUMNS)]   # one key per bucket


def test_the_table_is_two_orderings_of_a_zero_mean_grid_on_minus_one_to_one() -> None:
    rows = magnitude_table()
    grid = sorted(Fraction(2 * b - 99, 99) for b in range(100))
    assert len(rows) == 2 and all(sorted(r) == grid for r in rows)
    assert sum(grid) == 0 and max(abs(u) for u in grid) == 1
    assert rows[0] != rows[1]                                   # Σx and Σx² of a cell move differently
    assert statistics.pvariance(grid) == Fraction(9999, 29403)


@settings(max_examples=300, deadline=None)
@given(total=st.integers(0, 10**9), largest=st.integers(0, 10**6), key=st.integers(0, RECORD_KEY_MOD - 1),
       row=st.sampled_from([0, 1]))
def test_the_noise_is_at_most_half_the_largest_contribution_and_fixed_by_the_key(total: int, largest: int,
                                                                                  key: int, row: int) -> None:
    out = perturb_magnitude(total, largest, key, row)
    assert abs(out - total) <= MAGNITUDE_DEVIATION * largest + Fraction(1, 2)
    assert out == perturb_magnitude(total, largest, key, row)
    assert perturb_magnitude(total, 0, key, row) == total


def test_the_noise_averages_to_zero_over_the_keys() -> None:
    for largest in (1, 7, 150, 22_500):
        for row in (0, 1):
            assert sum(perturb_magnitude(0, largest, key, row) for key in BUCKET_KEYS) == 0


def raw_of(sizes: list[int], key: int) -> RawSummary:
    bins = [Cell(12, 1), Cell(12, 2), Cell(12, 3), Cell(12, 4), Cell(len(sizes) - 48, 6)]
    return RawSummary(n=Cell(len(sizes), key), sum_x=sum(sizes), sum_xx=sum(x * x for x in sizes),
                      missing=Cell(12, 5), bins=bins, top_x=max(sizes), top_xx=max(sizes) ** 2)


def protect(raw: RawSummary, mode: str) -> list[int]:
    rules = dataclasses.replace(NodePolicy(mode=mode).rules(permit_k=None, epsilon=None), k=10)
    rel = release(analysis("summary"), SPEC, raw, rules)
    return rel.values


def test_cell_key_perturbs_the_sums_and_threshold_keeps_them_exact() -> None:
    sizes = [5 + (i * 37) % 140 for i in range(200)]
    exact = protect(raw_of(sizes, 0), "threshold")
    assert exact[1:3] == [sum(sizes), sum(x * x for x in sizes)]
    moved = [protect(raw_of(sizes, key), "cell_key")[1:3] for key in BUCKET_KEYS]
    assert sum(1 for sx, _ in moved if sx != sum(sizes)) >= 95       # u = ±1/99 still moves Σx by ≥ 1
    assert all(abs(sx - sum(sizes)) <= max(sizes) / 2 + 1 for sx, _ in moved)
    assert all(sxx >= sum(x * x for x in sizes) / 2 for _, sxx in moved)   # stays ≥ 0, as does Σx


def test_the_mean_moves_by_at_most_half_the_largest_value_over_n() -> None:
    sizes = [5 + (i * 37) % 140 for i in range(200)]
    true_mean = sum(sizes) / len(sizes)
    errors = []
    for key in BUCKET_KEYS:
        values = protect(raw_of(sizes, key), "cell_key")
        result = finalise(SPEC, [*values, 1, 0, 0])
        sx_error = (values[1] - sum(sizes)) / values[0]       # the sum's share of the mean's error
        assert abs(sx_error) <= max(sizes) / 2 / values[0] + 1e-9
        errors.append(result["mean"] - true_mean)
    assert abs(statistics.fmean(errors)) < 0.05
    assert statistics.pstdev(errors) < 0.5                    # ≈ 0.29 · 144 / 200 ≈ 0.21, plus n's ±2
