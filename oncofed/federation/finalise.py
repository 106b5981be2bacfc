"""Researcher-side finalisers: the summed answer vector → the statistic, in exact arithmetic.

A finaliser reads the SUM over the participant set (mod 2^128) of every centre's vector — the
only thing secure aggregation gives the researcher — so it never needs, and never sees, one
centre's figures. Components are decoded to signed integers (v ≥ 2^127 → v − 2^128) and combined
with integers and `fractions.Fraction`; floats appear only in the final, reported numbers.

Definitions (stated in every result):
- crosstab margins are sums of the interior cells (never separately released totals);
- summary variance = (nΣx² − (Σx)²) / (n(n − 1)) (the unbiased sample variance); quantiles are
  Hyndman–Fan type 7 (numpy's default) when unit bins on an integer field give every value's
  count, else the grouped-data quantile (linear interpolation within the dictionary bins);
- survival: see oncofed.federation.survival.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.federation.query.errors import invalid
from oncofed.federation.query.spec import (
    MOD,
    AnalysisSpec,
    CountSpec,
    CrosstabSpec,
    HistogramSpec,
    SummarySpec,
    SurvivalSpec,
    decode,
    n_total,
    parse_analysis,
)
from oncofed.federation.survival import kaplan_meier, logrank
from oncofed.v1 import query_pb2 as pb

Result = dict[str, Any]


def sum_vectors(vectors: Iterable[Sequence[int]]) -> list[int]:
    """Element-wise sum mod 2^128 (what secure aggregation hands the researcher)."""
    total: list[int] | None = None
    for v in vectors:
        if total is None:
            total = [x % MOD for x in v]
        elif len(v) != len(total):
            raise ValueError("answer vectors differ in length")
        else:
            total = [(a + b) % MOD for a, b in zip(total, v, strict=True)]
    if total is None:
        raise ValueError("no vectors to sum")
    return total


def finalise_query(body: pb.QueryBody, dictionary: Dictionary, summed: Sequence[int]) -> Result:
    """Finalise the summed vector of `body`'s analysis."""
    return finalise(parse_analysis(body.analysis, dictionary), summed)


def finalise(spec: AnalysisSpec, summed: Sequence[int]) -> Result:
    """Decode the summed vector and compute the analysis' statistic."""
    if len(summed) != n_total(spec):
        raise invalid("answer", f"expected a vector of {n_total(spec)} values, got {len(summed)}")
    decoded = [decode(v) for v in summed]
    values, flag_values = decoded[:spec.n_values], decoded[spec.n_values:]
    flags = dict(zip(spec.flags, flag_values, strict=True))
    head: Result = {"analysis": spec.kind, "centres": flags["centres"]}
    if isinstance(spec, CountSpec):
        return {**head, "count": values[0], "suppressed_centres": flags["suppressed"]}
    if isinstance(spec, CrosstabSpec):
        return {**head, **crosstab(spec, values), "suppressed_centres": flags["suppressed"]}
    if isinstance(spec, HistogramSpec):
        return {**head, **histogram(spec, values), "suppressed_centres": flags["suppressed"]}
    if isinstance(spec, SummarySpec):
        return {**head, **summary(spec, values), "moments_withheld_centres": flags["moments_withheld"],
                "bins_withheld_centres": flags["bins_withheld"]}
    assert isinstance(spec, SurvivalSpec)
    head["suppressed_centres"] = flags["suppressed"]
    head["suppressed_groups"] = {g: flags[f"suppressed:{g}"] for g in spec.groups if flags[f"suppressed:{g}"]}
    if spec.kind == "logrank":
        return {**head, **logrank(spec, values)}
    return {**head, **kaplan_meier(spec, values)}


def crosstab(spec: CrosstabSpec, values: list[int]) -> Result:
    """Cells with their levels, and one-way margins summed from the interior cells."""
    labels = spec.cell_labels()
    margins: dict[str, dict[str, int]] = {f: dict.fromkeys(lv, 0) for f, lv in zip(spec.field_names, spec.levels,
                                                                                   strict=True)}
    for cell, n in zip(labels, values, strict=True):
        for f, level in zip(spec.field_names, cell, strict=True):
            margins[f][level] += n
    cells = [{"levels": dict(zip(spec.field_names, cell, strict=True)), "count": n}
             for cell, n in zip(labels, values, strict=True)]
    return {"fields": list(spec.field_names), "cells": cells, "margins": margins, "total": sum(values),
            "margins_definition": "sums of interior cells"}


def histogram(spec: HistogramSpec, values: list[int]) -> Result:
    bins = [{"from": spec.edges[i], "to": spec.edges[i + 1], "count": values[i]} for i in range(len(spec.edges) - 1)]
    return {"field": spec.field, "bins": bins, "missing": values[-1], "total": sum(values),
            "bins_definition": "[from, to) from the dictionary; values beyond the edges in the end bins"}


def summary(spec: SummarySpec, values: list[int]) -> Result:
    """n, mean, variance, SD and quantiles, exact until the final conversion to float."""
    n, sum_x, sum_xx, missing = values[:4]
    bins = values[4:]
    scale = 1 << spec.scale_bits
    out: Result = {"field": spec.field, "n": n, "missing": missing, "scale_bits": spec.scale_bits,
                   "bound": spec.bound, "variance_definition": "(nΣx² − (Σx)²) / (n(n − 1))"}
    mean = Fraction(sum_x, n * scale) if n > 0 else None
    out["mean"] = float(mean) if mean is not None else None
    if n > 1:
        # Σx and Σx² both carry scale 2^s: var = (n·Sxx·2^s − Sx²) / (n(n−1)·2^2s)
        var = Fraction(n * sum_xx * scale - sum_x * sum_x, n * (n - 1) * scale * scale)
        var = max(var, Fraction(0))          # perturbed n can push a tiny variance below 0
        out["variance"] = float(var)
        out["sd"] = math.sqrt(var)
    else:
        out["variance"] = out["sd"] = None
    exact = spec.unit_bins and spec.integer
    out["quantile_definition"] = ("type 7 (Hyndman–Fan; numpy's default), exact from unit bins" if exact else
                                  "grouped-data quantile: linear interpolation within dictionary bins")
    out["quantiles"] = [{"p": p, "value": _quantile(spec, bins, p, exact)} for p in spec.quantiles] if bins else []
    out["bins"] = [{"from": spec.edges[i], "to": spec.edges[i + 1], "count": c} for i, c in enumerate(bins)]
    return out


def _quantile(spec: SummarySpec, bins: list[int], p: float, exact: bool) -> float | None:
    counts = [max(c, 0) for c in bins]
    total = sum(counts)
    if total == 0:
        return None
    if exact:
        h = (total - 1) * Fraction(p)
        lo = math.floor(h)
        x_lo = _value_at_rank(spec, counts, lo)
        x_hi = _value_at_rank(spec, counts, min(lo + 1, total - 1))
        return float(x_lo + (h - lo) * (x_hi - x_lo))
    target = Fraction(p) * total
    below = 0
    for i, c in enumerate(counts):
        if c and below + c >= target:
            left, right = Fraction(spec.edges[i]), Fraction(spec.edges[i + 1])
            return float(left + (target - below) / c * (right - left))
        below += c
    return float(spec.edges[-1])


def _value_at_rank(spec: SummarySpec, counts: list[int], rank: int) -> int:
    """The value of the rank-th smallest observation (0-based) from per-value counts."""
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen > rank:
            return int(spec.edges[i])
    return int(spec.edges[len(counts) - 1])


def render_text(result: Result) -> str:
    """A readable rendering of a finalised result (the `--json` output is the dict itself)."""
    from oncofed.federation.render import render

    return render(result)
