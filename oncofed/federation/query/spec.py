"""The analysis catalogue as data: what each analysis computes and how its vector is laid out.

Every answer is one fixed-length vector of integers mod 2^128 — the analysis' values, then its
flags — whose layout follows from the query and the dictionary alone, so a node can build it,
secure aggregation can sum it without knowing what it is, and the researcher's finaliser can read
the sum. This module is that shared knowledge; it never touches data.

Flags always start with `centres` (each answering centre puts 1 there, so the sum counts them),
then say what was suppressed; a suppressed part of the vector is all zeros.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection
from dataclasses import dataclass

from oncofed.dictionary import Dictionary, Field
from oncofed.federation.query import values as V
from oncofed.federation.query.errors import QueryError, invalid
from oncofed.v1 import query_pb2 as pb

MOD = 1 << 128
HALF = 1 << 127
MAX_CENTRES = 64               # the federation's largest participant set, for overflow checks
SAFE_LIMIT = 1 << 126          # no component may be able to reach this (DESIGN §4)
MAX_SCALE_BITS = 64
DEFAULT_STEP_DAYS = 30
DEFAULT_HORIZON_DAYS = 3660
MAX_HORIZON_DAYS = 36_600
DEFAULT_QUANTILES = (0.25, 0.5, 0.75)
MISSING = "(missing)"
ALL = "all"
OUTCOMES = {pb.OUTCOME_OS: "OS", pb.OUTCOME_RFS: "RFS"}
SURVIVAL_COMPONENTS = ("entered", "events", "censored")


@dataclass(frozen=True)
class CountSpec:
    """Number of tumours in the cohort."""

    kind = "count"
    flags = ("centres", "suppressed")

    @property
    def n_values(self) -> int:
        return 1

    def fields(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class CrosstabSpec:
    """Counts per cell of 1–3 categorical fields; each field's codes then MISSING, last fastest."""

    kind = "crosstab"
    flags = ("centres", "suppressed")
    field_names: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]

    @property
    def n_values(self) -> int:
        return math.prod(len(lv) for lv in self.levels)

    def fields(self) -> tuple[str, ...]:
        return self.field_names

    def cell_labels(self) -> list[tuple[str, ...]]:
        cells: list[tuple[str, ...]] = [()]
        for lv in self.levels:
            cells = [(*c, x) for c in cells for x in lv]
        return cells


@dataclass(frozen=True)
class HistogramSpec:
    """Counts per dictionary bin [e_i, e_i+1) (values beyond the edges go to the end bins), then
    one cell for missing values."""

    kind = "histogram"
    flags = ("centres", "suppressed")
    field: str
    edges: tuple[int | float, ...]

    @property
    def n_values(self) -> int:
        return len(self.edges)

    def fields(self) -> tuple[str, ...]:
        return (self.field,)


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


@dataclass(frozen=True)
class SurvivalSpec:
    """Per group: cumulative entries, events and censorings at edges 0, step, …, horizon."""

    kind: str                  # "kaplan_meier" or "logrank"
    outcome: str               # "OS" or "RFS"
    cutoff: dt.date
    step_days: int
    n_edges: int
    group_field: str | None
    groups: tuple[str, ...]

    @property
    def flags(self) -> tuple[str, ...]:
        return ("centres", "suppressed", *(f"suppressed:{g}" for g in self.groups))

    @property
    def horizon_days(self) -> int:
        return (self.n_edges - 1) * self.step_days

    @property
    def n_values(self) -> int:
        return 3 * self.n_edges * len(self.groups)

    def edge_days(self) -> list[int]:
        return [j * self.step_days for j in range(self.n_edges)]

    def fields(self) -> tuple[str, ...]:
        return (self.group_field,) if self.group_field else ()


AnalysisSpec = CountSpec | CrosstabSpec | HistogramSpec | SummarySpec | SurvivalSpec


def n_total(spec: AnalysisSpec) -> int:
    """Length of the whole vector: values then flags."""
    return spec.n_values + len(spec.flags)


def parse_analysis(a: pb.Analysis, d: Dictionary, allowed: Collection[str] | None = None) -> AnalysisSpec:
    """Check an analysis against the dictionary (and the permit's fields) and fix its layout."""
    kind = a.WhichOneof("kind")
    if kind is None:
        raise invalid("analysis", "no analysis given (count, crosstab, summary, histogram, "
                      "kaplan_meier or logrank)")
    path = f"analysis.{kind}"
    if kind == "count":
        return CountSpec()
    if kind == "crosstab":
        return _crosstab(a.crosstab, d, allowed, path)
    if kind == "histogram":
        f = _numeric(d, a.histogram.field, f"{path}.field", allowed)
        if len(f.bins) < 2:
            raise invalid(f"{path}.field", f"field {f.name!r} has no bins in the dictionary "
                          "(histogram bins come from the dictionary, never from data)")
        return HistogramSpec(field=f.name, edges=tuple(f.bins))
    if kind == "summary":
        return _summary(a.summary, d, allowed, path)
    msg = a.kaplan_meier if kind == "kaplan_meier" else a.logrank
    return _survival(kind, msg, d, allowed, path)


def _categorical(d: Dictionary, name: str, path: str, allowed: Collection[str] | None) -> Field:
    f = V.lookup_field(d, name, path, allowed)
    if not f.is_categorical:
        raise invalid(path, f"field {name!r} is {f.type}, not categorical (code or boolean)")
    return f


def _numeric(d: Dictionary, name: str, path: str, allowed: Collection[str] | None) -> Field:
    f = V.lookup_field(d, name, path, allowed)
    if f.type not in V.NUMERIC_TYPES:
        raise invalid(path, f"field {name!r} is {f.type}, not numeric (integer or decimal)")
    return f


def levels_of(f: Field) -> tuple[str, ...]:
    """A categorical field's cells: its codes in dictionary order, then MISSING."""
    return (*f.codes, MISSING)


def _crosstab(m: pb.Crosstab, d: Dictionary, allowed: Collection[str] | None, path: str) -> CrosstabSpec:
    if not 1 <= len(m.fields) <= 3:
        raise invalid(f"{path}.fields", f"a crosstab takes 1 to 3 fields, got {len(m.fields)}")
    if len(set(m.fields)) != len(m.fields):
        raise invalid(f"{path}.fields", "a field is named twice")
    fs = [_categorical(d, name, f"{path}.fields[{i}]", allowed) for i, name in enumerate(m.fields)]
    return CrosstabSpec(field_names=tuple(f.name for f in fs), levels=tuple(levels_of(f) for f in fs))


def _summary(m: pb.Summary, d: Dictionary, allowed: Collection[str] | None, path: str) -> SummarySpec:
    f = _numeric(d, m.field, f"{path}.field", allowed)
    s = m.fixed_point.scale_bits
    if s > MAX_SCALE_BITS:
        raise invalid(f"{path}.fixed_point.scale_bits", f"scale {s} exceeds {MAX_SCALE_BITS} bits")
    bound = m.fixed_point.bound
    if not math.isfinite(bound) or bound < 0:
        raise invalid(f"{path}.fixed_point.bound", "the bound must be a finite number ≥ 0")
    if bound == 0:
        ends = [abs(float(x)) for x in (f.minimum, f.maximum) if x is not None]
        if len(ends) < 2:
            raise invalid(f"{path}.fixed_point.bound", f"field {f.name!r} has no dictionary range: "
                          "state a bound")
        bound = max(ends)
    integer = f.type == "integer"
    if m.unit_bins:
        if not integer or f.minimum is None or f.maximum is None:
            raise invalid(f"{path}.unit_bins", "unit bins need an integer field with a dictionary range")
        lo, hi = int(f.minimum), int(f.maximum)
        if hi - lo > 10_000:
            raise invalid(f"{path}.unit_bins", f"{f.name} spans {hi - lo + 1} values; too many unit bins")
        edges: tuple[int | float, ...] = tuple(range(lo, hi + 2))
    else:
        edges = tuple(f.bins)
    qs = tuple(m.quantiles) or DEFAULT_QUANTILES
    for i, q in enumerate(qs):
        if not 0.0 < q < 1.0:     # 0 and 1 would be the minimum and maximum: never released
            raise invalid(f"{path}.quantiles[{i}]", f"{q} is not a probability strictly between 0 and 1 "
                          "(never min or max)")
    return SummarySpec(field=f.name, scale_bits=s, bound=float(bound), edges=edges,
                       unit_bins=m.unit_bins, integer=integer, quantiles=qs)


def _survival(kind: str, m: pb.KaplanMeier | pb.LogRank, d: Dictionary,
              allowed: Collection[str] | None, path: str) -> SurvivalSpec:
    outcome = OUTCOMES.get(m.outcome)
    if outcome is None:
        raise invalid(f"{path}.outcome", "outcome must be OS or RFS")
    cutoff = V.exact_day(m.cutoff, f"{path}.cutoff")
    step = m.lattice.step_days or DEFAULT_STEP_DAYS
    horizon = m.lattice.horizon_days or DEFAULT_HORIZON_DAYS
    if horizon > MAX_HORIZON_DAYS:
        raise invalid(f"{path}.lattice.horizon_days", f"horizon {horizon} exceeds {MAX_HORIZON_DAYS} days")
    if step > horizon:
        raise invalid(f"{path}.lattice.step_days", f"step {step} is longer than the horizon {horizon}")
    n_edges = -(-horizon // step) + 1
    group: Field | None = None
    if m.group_by:
        group = _categorical(d, m.group_by, f"{path}.group_by", allowed)
    elif kind == "logrank":
        raise invalid(f"{path}.group_by", "a log-rank test needs a group_by field")
    groups = levels_of(group) if group else (ALL,)
    return SurvivalSpec(kind=kind, outcome=outcome, cutoff=cutoff, step_days=step, n_edges=n_edges,
                        group_field=group.name if group else None, groups=groups)


def component_maxima(spec: AnalysisSpec) -> list[int]:
    """Largest contribution one row can make to each value (for overflow and DP checks)."""
    if isinstance(spec, SummarySpec):
        b = spec.bound
        sx = math.ceil(b * 2**spec.scale_bits)
        sxx = math.ceil(b * b * 2**spec.scale_bits)
        return [1, sx, sxx, 1] + [1] * spec.n_bins
    return [1] * spec.n_values


def check_bound(spec: AnalysisSpec, d: Dictionary, *, dp: bool) -> None:
    """Outside differential privacy a summary's bound may not be narrower than its field's
    dictionary range: rows are clamped to the bound only under a DP permit, and Σx released exactly
    under two bounds would otherwise reveal an outlier by differencing. Decided from the query and
    the dictionary alone."""
    if dp or not isinstance(spec, SummarySpec):
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


def check_overflow(spec: AnalysisSpec, max_rows: int) -> None:
    """Refuse before computing when a component could reach 2^126 at the worst case: the centre's
    public maximum row count (policy, never its actual size) at the bound, summed over the
    federation's largest participant set. The refusal names no data-derived number."""
    worst = max(component_maxima(spec)) * max(max_rows, 1) * MAX_CENTRES
    if worst >= SAFE_LIMIT:
        raise QueryError("OUT_OF_RANGE",
                         "the fixed-point components could overflow (bound × 2^scale × the centres' "
                         f"maximum rows × {MAX_CENTRES} centres ≥ 2^126); lower scale_bits or the bound",
                         "analysis")


def encode(value: int) -> int:
    """A signed integer as an element of Z/2^128 (two's complement)."""
    return value % MOD


def decode(value: int) -> int:
    """An element of Z/2^128 back to a signed integer: v ≥ 2^127 means v − 2^128."""
    value %= MOD
    return value - MOD if value >= HALF else value
