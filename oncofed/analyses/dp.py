"""Differentially private answers (per permit), with OpenDP's integer mechanisms.

The noise is discrete Laplace (ε-DP) or discrete Gaussian (ρ-zCDP, converted to (ε, δ)) on integer
vectors, from OpenDP — whose unvetted ("contrib") features must be enabled explicitly, which this
module does, once, where they are used. Each analysis splits its vector into blocks with their
sensitivity over one patient (`Analysis.dp_blocks`; a patient touches at most L =
`rows_per_patient` cohort rows, which the node enforces); the ε is split evenly over the blocks
(sequential composition). The ε is the query's, charged durably to the permit before anything is
computed (the node's engine). No suppression in DP mode. Noise is calibrated per centre: each
centre's release is DP on its own, so the noise in a federated sum grows with √|S|.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from oncofed.analyses.base import Analysis, Release, Rules
from oncofed.query.errors import QueryError

I64_SAFE = 1 << 60
S = TypeVar("S")
R = TypeVar("R")


def check_dp_range(component_maxima: list[int], max_rows: int, rows_per_patient: int) -> None:
    """Refuse, BEFORE ε is charged, a DP query whose values or sensitivity could leave OpenDP's
    integer range: the worst case is the largest per-row contribution (rows are clamped to the
    query's bound in DP mode) times the policy's public maximum rows per centre. Decided from the
    query, the dictionary and the policy only, so the refusal never depends on the data."""
    per_row = max(component_maxima, default=1)
    if per_row * max(max_rows, rows_per_patient) >= I64_SAFE:
        raise QueryError("OUT_OF_RANGE", "values could be too large for differential privacy at this "
                         "centre's maximum row count; lower scale_bits or the bound", "analysis")


def _prelude() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")  # OpenDP refuses unvetted mechanisms until this is said explicitly
    return dp


def dp_release(analysis: Analysis[S, R], spec: S, raw: R, rules: Rules) -> Release:
    """Noisy values under (ε[, δ]) for this centre's release; flags carry no suppression."""
    rules = analysis.dp_rules(spec, rules)
    epsilon = rules.epsilon
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise QueryError("INVALID_ARGUMENT", "a differentially private query needs ε > 0", "epsilon")
    blocks = analysis.dp_blocks(spec, raw, rules.rows_per_patient)
    share = epsilon / len(blocks)
    delta = rules.dp_delta / len(blocks)
    noisy, scales = [], []
    for b in blocks:
        # check_dp_range refused every query that could get here, before ε was charged
        assert b.l1 < I64_SAFE and all(abs(x) < I64_SAFE for x in b.data), "check_dp_range was not applied"
        out, scale = _noise(b.data, b.l1, b.l2, share, delta, rules.dp_mechanism)
        noisy.append(out)
        scales.append(scale)
    meta = {"mode": "dp", "mechanism": rules.dp_mechanism, "epsilon": epsilon,
            "delta": rules.dp_delta if rules.dp_mechanism == "gaussian" else 0.0,
            "rows_per_patient": rules.rows_per_patient, "noise_scales": scales,
            "cells_perturbed": spec.n_values}  # type: ignore[attr-defined]
    flags = [1] + [0] * (len(spec.flags) - 1)  # type: ignore[attr-defined]
    return Release(analysis.dp_values(spec, noisy), flags, meta)


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
            scale = dp.binary_search_param(make, d_in=d_in, d_out=(epsilon, delta), bounds=(0.0, float(I64_SAFE)))
            meas = make(scale)
    return [int(x) for x in meas(list(data))], float(scale)
