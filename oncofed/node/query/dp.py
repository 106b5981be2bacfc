"""Differentially private answers (per permit), with OpenDP's integer mechanisms.

The noise is discrete Laplace (ε-DP) or discrete Gaussian (ρ-zCDP, converted to (ε, δ)) on integer
vectors, from OpenDP — whose unvetted ("contrib") features must be enabled explicitly, which this
module does, once, where they are used. Sensitivity is taken over the *whole* vector from public
bounds: one patient (at most `dp_rows_per_patient` of the cohort's rows: engine.per_patient_limit)
changes

- count, crosstab, histogram: cells by at most L in total (L1 = L, L2 ≤ L);
- summary, as three blocks, each spending ε/3 (sequential composition): the counts [n, missing,
  bins] (L1 = 2L), Σx·2^s (L·B·2^s) and Σx²·2^s (L·B²·2^s), B the query's bound (rows are clamped);
- survival: the per-interval entries/events/censorings, two of which move per row (L1 = 2L,
  L2 = √2·L); the cumulative vector is their running sum (post-processing: no further cost).

The ε is the query's, charged durably to the permit before anything is computed (engine.py). No
suppression in DP mode. Noise is calibrated per centre: each centre's release is DP on its own,
so the noise in a federated sum grows with √|S|.
"""

from __future__ import annotations

import math
from typing import Any

from oncofed.federation.query.errors import QueryError
from oncofed.federation.query.spec import AnalysisSpec, SummarySpec, SurvivalSpec, component_maxima
from oncofed.node.query.cells import Raw, RawSurvival
from oncofed.node.query.disclosure import NodePolicy, Release, values

_I64_SAFE = 1 << 60


def check_dp_range(spec: AnalysisSpec, policy: NodePolicy) -> None:
    """Refuse, BEFORE ε is charged, a DP query whose values or sensitivity could leave OpenDP's
    integer range: the worst case is the largest per-row contribution (rows are clamped to the
    query's bound in DP mode) times the policy's public maximum rows per centre. Decided from the
    query, the dictionary and the policy only, so the refusal never depends on the data."""
    per_row = max(component_maxima(spec), default=1)
    worst = per_row * max(policy.max_rows, policy.dp_rows_per_patient)
    if worst >= _I64_SAFE:
        raise QueryError("OUT_OF_RANGE", "values could be too large for differential privacy at this "
                         "centre's maximum row count; lower scale_bits or the bound", "analysis")


def _prelude() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")  # OpenDP refuses unvetted mechanisms until this is said explicitly
    return dp


def dp_release(spec: AnalysisSpec, raw: Raw, *, epsilon: float, policy: NodePolicy) -> Release:
    """Noisy values under (ε[, δ]) for this centre's release; flags carry no suppression."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise QueryError("INVALID_ARGUMENT", "a differentially private query needs ε > 0", "epsilon")
    L = policy.dp_rows_per_patient
    if isinstance(raw, RawSurvival):
        blocks = [(_increments(raw), 2 * L, math.sqrt(2) * L)]
    elif isinstance(spec, SummarySpec):
        v = values(raw)
        counts = [v[0], v[3], *v[4:]]
        sx = math.ceil(L * spec.bound * 2**spec.scale_bits)
        sxx = math.ceil(L * spec.bound**2 * 2**spec.scale_bits)
        blocks = [(counts, 2 * L, math.sqrt(2) * L), ([v[1]], sx, sx), ([v[2]], sxx, sxx)]
    else:
        blocks = [(values(raw), L, float(L))]
    share = epsilon / len(blocks)
    delta = policy.dp_delta / len(blocks)
    noisy, scales = [], []
    for data, l1, l2 in blocks:
        # check_dp_range refused every query that could get here, before ε was charged
        assert l1 < _I64_SAFE and all(abs(x) < _I64_SAFE for x in data), "check_dp_range was not applied"
        out, scale = _noise(data, l1, l2, share, delta, policy.dp_mechanism)
        noisy.append(out)
        scales.append(scale)
    if isinstance(raw, RawSurvival):
        result = _cumulate(noisy[0], spec)
    elif isinstance(spec, SummarySpec):
        c, sx_n, sxx_n = noisy
        result = [c[0], sx_n[0], sxx_n[0], c[1], *c[2:]]
    else:
        result = noisy[0]
    meta = {"mode": "dp", "mechanism": policy.dp_mechanism, "epsilon": epsilon,
            "delta": policy.dp_delta if policy.dp_mechanism == "gaussian" else 0.0,
            "rows_per_patient": L, "noise_scales": scales, "cells_perturbed": spec.n_values}
    return Release(result, [1] + [0] * (len(spec.flags) - 1), meta)


def _noise(data: list[int], l1: int, l2: float, epsilon: float, delta: float,
           mechanism: str) -> tuple[list[int], float]:
    dp = _prelude()
    space = (dp.vector_domain(dp.atom_domain(T="i64")),)
    if mechanism == "laplace":
        scale = l1 / epsilon
        meas = dp.m.make_laplace(*space, dp.l1_distance(T="i64"), scale=scale)
        if meas.map(l1) > epsilon * (1 + 1e-9):
            raise QueryError("FAILED_PRECONDITION", "could not calibrate the Laplace mechanism")
    else:
        d_in = math.ceil(l2)

        def make(s: float) -> Any:
            g = dp.m.make_gaussian(*space, dp.l2_distance(T="i64"), scale=s)
            return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(g), delta)

        # ε = ρ + 2√(ρ·ln(1/δ)) (Bun & Steinke) gives ρ and so σ = Δ/√(2ρ) in closed form; OpenDP's own
        # conversion is tighter, and checks it. Binary search only if that check ever failed.
        log_inv = math.log(1 / delta)
        rho = (math.sqrt(log_inv + epsilon) - math.sqrt(log_inv)) ** 2
        scale = d_in / math.sqrt(2 * rho)
        meas = make(scale)
        if meas.map(d_in)[0] > epsilon * (1 + 1e-9):
            scale = dp.binary_search_param(make, d_in=d_in, d_out=(epsilon, delta), bounds=(0.0, float(_I64_SAFE)))
            meas = make(scale)
    return [int(x) for x in meas(list(data))], float(scale)


def _increments(raw: RawSurvival) -> list[int]:
    """Per-interval counts (entries, events, censorings) from the cumulative series."""
    out: list[int] = []
    for g in raw.groups:
        for series in (g.entered, g.events, g.censored):
            prev = 0
            for c in series:
                out.append(c.n - prev)
                prev = c.n
    return out


def _cumulate(increments: list[int], spec: AnalysisSpec) -> list[int]:
    assert isinstance(spec, SurvivalSpec)
    out: list[int] = []
    e = spec.n_edges
    for start in range(0, len(increments), e):
        acc = 0
        for x in increments[start:start + e]:
            acc += x
            out.append(acc)
    return out
