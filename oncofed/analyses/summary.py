"""summary — n, mean, variance and quantiles of a numeric field.

Vector: [n, Σx·2^s, Σx²·2^s, missing, bin counts…] over the cohort rows where the field is present;
flags (centres, moments_withheld, bins_withheld). Reals are fixed point per row, exactly
(`round(x·2^s)`; x² from a Fraction, so a decimal's square is not rounded twice); the bound must
cover the dictionary range outside DP (rows are clamped to it only under a DP permit).

Disclosure: (n, Σx, Σx²) withheld together when n < k or when the table below is withheld; n
perturbed like a count (so a summary cannot be used to read an exact count); under cell key Σx and
Σx² get a magnitude perturbation keyed like the cells (disclosure.perturb_magnitude: at most half
the largest single contribution, from the n cell's key); the bins and the missing count as a table,
the bins first bottom- and top-coded so no tail bin rests on fewer than k rows; never min or max.
DP: three blocks, each spending ε/3 — the counts [n, missing, bins]
(L1 = 2L), Σx·2^s (L·B·2^s) and Σx²·2^s (L·B²·2^s), B the query's bound.

Finaliser: variance = (nΣx² − (Σx)²) / (n(n − 1)) (the unbiased sample variance); quantiles are
Hyndman–Fan type 7 (numpy's default) when unit bins on an integer field give every value's count,
else the grouped-data quantile (linear interpolation within the dictionary bins).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from google.protobuf.message import Message

from oncofed.analyses import disclosure, ptable
from oncofed.analyses.base import Analysis, Block, Grants, Reader, Release, Result, Rules, scalar_row
from oncofed.analyses.cells import EMPTY, RawSummary
from oncofed.analyses.histogram import bin_of
from oncofed.dictionary import Dictionary
from oncofed.query.errors import invalid
from oncofed.query.values import numeric_field
from oncofed.query.vector import MAX_SCALE_BITS, fixed
from oncofed.v1 import query_pb2 as pb

DEFAULT_QUANTILES = (0.25, 0.5, 0.75)
MAX_UNIT_BINS = 10_000


@dataclass(frozen=True)
class SummarySpec:
    """[n, Σx·2^s, Σx²·2^s, missing, bin counts…] over the rows where the field is present."""

    kind = "summary"
    flags = ("centres", "moments_withheld", "bins_withheld")
    field: str
    scale_bits: int
    bound: float
    edges: tuple[int | float, ...]
    unit_bins: bool
    integer: bool
    quantiles: tuple[float, ...]

    @property
    def n_bins(self) -> int:
        return max(len(self.edges) - 1, 0)

    @property
    def n_values(self) -> int:
        return 4 + self.n_bins

    def fields(self) -> tuple[str, ...]:
        return (self.field,)


class Summary(Analysis[SummarySpec, RawSummary]):
    kind = "summary"

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> SummarySpec:
        assert isinstance(msg, pb.Summary)
        f = numeric_field(d, msg.field, f"{path}.field", allowed)
        s = msg.fixed_point.scale_bits
        if s > MAX_SCALE_BITS:
            raise invalid(f"{path}.fixed_point.scale_bits", f"scale {s} exceeds {MAX_SCALE_BITS} bits")
        bound = msg.fixed_point.bound
        if not math.isfinite(bound) or bound < 0:
            raise invalid(f"{path}.fixed_point.bound", "the bound must be a finite number ≥ 0")
        if bound == 0:
            ends = [abs(float(x)) for x in (f.minimum, f.maximum) if x is not None]
            if len(ends) < 2:
                raise invalid(f"{path}.fixed_point.bound", f"field {f.name!r} has no dictionary range: "
                              "state a bound")
            bound = max(ends)
        integer = f.type == "integer"
        if msg.unit_bins:
            if not integer or f.minimum is None or f.maximum is None:
                raise invalid(f"{path}.unit_bins", "unit bins need an integer field with a dictionary range")
            lo, hi = int(f.minimum), int(f.maximum)
            if hi - lo > MAX_UNIT_BINS:
                raise invalid(f"{path}.unit_bins", f"{f.name} spans {hi - lo + 1} values; too many unit bins")
            edges: tuple[int | float, ...] = tuple(range(lo, hi + 2))
        else:
            edges = tuple(f.bins)
        qs = tuple(msg.quantiles) or DEFAULT_QUANTILES
        for i, q in enumerate(qs):
            if not 0.0 < q < 1.0:     # 0 and 1 would be the minimum and maximum: never released
                raise invalid(f"{path}.quantiles[{i}]", f"{q} is not a probability strictly between 0 and 1 "
                              "(never min or max)")
        return SummarySpec(field=f.name, scale_bits=s, bound=float(bound), edges=edges,
                           unit_bins=msg.unit_bins, integer=integer, quantiles=qs)

    def check(self, spec: SummarySpec, d: Dictionary, grants: Grants) -> None:
        """Outside DP the bound may not be narrower than the field's dictionary range: rows are
        clamped only under a DP permit, and Σx released exactly under two bounds would otherwise
        reveal an outlier by differencing. Decided from the query and the dictionary alone."""
        if grants.dp:
            return
        f = d.fields[spec.field]
        path = "analysis.summary.fixed_point.bound"
        if f.minimum is None or f.maximum is None:
            raise invalid(path, f"field {f.name!r} has no dictionary range: outside differential privacy a "
                          "summary needs one")
        reach = max(abs(float(f.minimum)), abs(float(f.maximum)))
        if spec.bound < reach:
            raise invalid(path, f"the bound {spec.bound:g} is narrower than {f.name}'s dictionary range "
                          f"(±{reach:g}); only a differentially private permit may clamp (use 0 for the range)")

    def component_maxima(self, spec: SummarySpec) -> list[int]:
        b = spec.bound
        sx = math.ceil(b * 2**spec.scale_bits)
        sxx = math.ceil(b * b * 2**spec.scale_bits)
        return [1, sx, sxx, 1] + [1] * spec.n_bins

    def local(self, spec: SummarySpec, reader: Reader, *, clamp: bool) -> RawSummary:
        s, bound = spec.scale_bits, Fraction(spec.bound)
        n, missing = EMPTY, EMPTY
        sum_x = sum_xx = top_x = top_xx = 0
        bins = [EMPTY] * spec.n_bins
        for (x,), cell in reader.groups((spec.field,)):
            if x is None:
                missing = missing + cell
                continue
            n = n + cell
            v = Fraction(x)
            if clamp:                                       # DP only: rows beyond the bound are clamped
                v = min(max(v, -bound), bound)
            fx, fxx = fixed(v, s), fixed(v * v, s)
            sum_x += cell.n * fx
            sum_xx += cell.n * fxx
            top_x, top_xx = max(top_x, abs(fx)), max(top_xx, fxx)
            if bins:
                i = bin_of(spec.edges, x)
                bins[i] = bins[i] + cell
        return RawSummary(n=n, sum_x=sum_x, sum_xx=sum_xx, missing=missing, bins=bins, top_x=top_x, top_xx=top_xx)

    def total(self, raw: RawSummary) -> int:
        return raw.total

    def exact(self, spec: SummarySpec, raw: RawSummary) -> list[int]:
        return [raw.n.n, raw.sum_x, raw.sum_xx, raw.missing.n, *(c.n for c in raw.bins)]

    def protect(self, spec: SummarySpec, raw: RawSummary, rules: Rules, meta: dict[str, Any]) -> Release:
        k = rules.k
        flags = [1, 0, 0]
        coded = disclosure.code_tails(raw.bins, k)
        if coded is None:   # fewer than k rows in the bins: no tail can be coded, the table is withheld
            table = Release([0] * (1 + len(raw.bins)), [1, 1], {**meta, "suppressed": "bins below k",
                                                                "cells_suppressed": 1 + len(raw.bins)})
        else:
            table = disclosure.table([raw.missing, *coded], rules, meta)
        if table.flags[1]:
            flags[2] = 1
        # Withheld with the table too: n released exactly beside a withheld `missing` would give it
        # away (count − n) in threshold mode.
        if raw.n.n < k or table.flags[1]:
            head = [0, 0, 0]
            flags[1] = 1
        elif rules.mode == "threshold":
            head = [raw.n.n, raw.sum_x, raw.sum_xx]
        else:
            key = raw.n.key
            head = [ptable.perturb(raw.n.n, key), disclosure.perturb_magnitude(raw.sum_x, raw.top_x, key, 0),
                    disclosure.perturb_magnitude(raw.sum_xx, raw.top_xx, key, 1)]
        out = {**table.meta, "moments_withheld": bool(flags[1])}
        out["cells_suppressed"] = out.get("cells_suppressed", 0) + 3 * flags[1]
        if rules.mode == "cell_key" and not flags[1]:
            out["cells_perturbed"] = out.get("cells_perturbed", 0) + 3      # n, Σx, Σx²
        return Release(head + table.values, flags, out)

    def dp_blocks(self, spec: SummarySpec, raw: RawSummary, rows_per_patient: int) -> list[Block]:
        L = rows_per_patient
        v = self.exact(spec, raw)
        sx = math.ceil(L * spec.bound * 2**spec.scale_bits)
        sxx = math.ceil(L * spec.bound**2 * 2**spec.scale_bits)
        return [Block([v[0], v[3], *v[4:]], 2 * L, math.sqrt(2) * L), Block([v[1]], sx, sx),
                Block([v[2]], sxx, sxx)]

    def dp_values(self, spec: SummarySpec, noisy: list[list[int]]) -> list[int]:
        c, sx, sxx = noisy
        return [c[0], sx[0], sxx[0], c[1], *c[2:]]

    def finalise(self, spec: SummarySpec, values: list[int], flags: dict[str, int]) -> Result:
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
        out["quantiles"] = ([{"p": p, "value": _quantile(spec, bins, p, exact)} for p in spec.quantiles]
                            if bins else [])
        out["bins"] = [{"from": spec.edges[i], "to": spec.edges[i + 1], "count": c} for i, c in enumerate(bins)]
        out["moments_withheld_centres"] = flags["moments_withheld"]
        out["bins_withheld_centres"] = flags["bins_withheld"]
        return out

    def table(self, result: Result) -> list[dict[str, Any]]:
        """One row per dictionary bin when the summary has them, else its scalar figures."""
        return [dict(b) for b in result["bins"]] if result.get("bins") else scalar_row(result)

    def render(self, result: Result) -> list[str]:
        from oncofed.analyses.text import num

        r = result
        lines = [f"  {r['field']}: n {num(r['n'])}, missing {num(r['missing'])}",
                 f"  mean {num(r['mean'])}, variance {num(r['variance'])}, sd {num(r['sd'])}"]
        if r["quantiles"]:
            lines.append("  quantiles: " + ", ".join(f"{q['p']:g}: {num(q['value'], 2)}" for q in r["quantiles"]))
            lines.append(f"  ({r['quantile_definition']})")
        return lines


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


ANALYSIS = Summary()
