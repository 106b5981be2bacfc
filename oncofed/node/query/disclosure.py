"""The node's disclosure rules, applied to its own answer as if it were published alone (DESIGN §4).

Per analysis, with k = max(node's minimum cell count, permit's) — a permit can only tighten:

- count: cell-key perturbed; a cohort below k gives an all-zero vector with `suppressed` set
  *inside* the vector (never a refusal, which would tell the researcher the cohort is small);
- crosstab, histogram: every cell cell-key perturbed; in threshold mode a table with any cell
  0 < n < k is withheld whole (DataSHIELD's rule);
- summary: (n, Σx, Σx²) withheld together when n < k or when the table below is withheld; n
  perturbed like a count (so a summary cannot be used to read an exact count); bins and the missing
  count as a table, the bins first bottom- and top-coded so no tail bin rests on fewer than k rows
  (code_tails); never min or max;
- kaplan_meier, logrank: a group below k is withheld; once a group's number at risk falls below k
  all its remaining patients are reported censored at that edge (tail censoring); then every
  cumulative count is cell-key perturbed and made monotone, or rounded to the midpoint of blocks of
  k (OpenSAFELY's rounding; the default in threshold mode).

Cell-key perturbation: published = value + table[value][⌊key · 100⌋] (ptable.py), with the cell key
the sum of the rows' secret record keys — same rows, same value, however the query is phrased.
Differential privacy replaces all of this per permit (dp.py); mode "none" (exact) is for the
centre's own admin and for tests, never for a permit holder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from oncofed.federation.query.errors import QueryError
from oncofed.federation.query.spec import AnalysisSpec, SummarySpec, SurvivalSpec
from oncofed.node.query import ptable
from oncofed.node.query.cells import EMPTY, Cell, GroupSurvival, Raw, RawCounts, RawSummary, RawSurvival

CATALOGUE = ("count", "crosstab", "summary", "histogram", "kaplan_meier", "logrank")
MODES = ("cell_key", "threshold", "none")


@dataclass(frozen=True)
class NodePolicy:
    """What this centre releases; read from the `[query]` table of node.toml (defaults below)."""

    min_cell_count: int = 10              # the centre's own k; a permit may only raise it
    mode: str = "cell_key"                # cell_key | threshold | none (exact: local admin, tests)
    survival_counts: str = "auto"         # auto (cell_key, or round in threshold mode) | cell_key | round
    allowed_analyses: tuple[str, ...] = CATALOGUE
    max_values: int = 50_000              # largest answer vector (values)
    min_step_days: int = 30               # coarsest-allowed survival lattice step, unless exact
    allow_exact_survival_times: bool = False  # a 1-day lattice (also needs the permit's exact dates)
    rate_per_minute: int = 30
    rate_per_day: int = 2_000
    dp_mechanism: str = "laplace"         # laplace (ε-DP) | gaussian ((ε, δ)-DP)
    dp_delta: float = 1e-9
    dp_rows_per_patient: int = 2          # DP mode keeps at most this many cohort rows per patient
    max_depth: int = 8
    max_nodes: int = 64
    max_rows: int = 10_000_000            # public maximum rows per centre: overflow and DP range checks use
                                          # this, never the store's actual size

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"query mode must be one of {', '.join(MODES)}")
        if self.survival_counts not in ("auto", "cell_key", "round"):
            raise ValueError("survival_counts must be auto, cell_key or round")
        if self.dp_mechanism not in ("laplace", "gaussian"):
            raise ValueError("dp_mechanism must be laplace or gaussian")
        if self.min_cell_count < 1 or self.dp_rows_per_patient < 1 or self.max_rows < 1:
            raise ValueError("min_cell_count, dp_rows_per_patient and max_rows must be at least 1")
        unknown = set(self.allowed_analyses) - set(CATALOGUE)
        if unknown:
            raise ValueError(f"unknown analyses in policy: {', '.join(sorted(unknown))}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> NodePolicy:
        """Build from node.toml's `[query]` table; unknown keys are refused, not ignored."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(m) - known)
        if extra:
            raise ValueError(f"unknown [query] setting(s): {', '.join(extra)}")
        kw = dict(m)
        if "allowed_analyses" in kw:
            kw["allowed_analyses"] = tuple(kw["allowed_analyses"])
        return cls(**kw)

    def effective_k(self, permit_k: int | None) -> int:
        """The stricter of the centre's and the permit's minimum cell count."""
        return max(self.min_cell_count, permit_k or 0)

    def survival_method(self) -> str:
        if self.survival_counts != "auto":
            return self.survival_counts
        return "round" if self.mode == "threshold" else "cell_key"


@dataclass
class Release:
    """The values and flags this centre publishes, and what was done to them (for its audit log)."""

    values: list[int]
    flags: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


def exact_release(spec: AnalysisSpec, raw: Raw) -> Release:
    """The exact values (mode "none"): what the other modes start from."""
    return Release(values(raw), [1] + [0] * (len(spec.flags) - 1), {"mode": "none"})


def values(raw: Raw) -> list[int]:
    """Exact values in the spec's layout."""
    if isinstance(raw, RawCounts):
        return [c.n for c in raw.cells]
    if isinstance(raw, RawSummary):
        return [raw.n.n, raw.sum_x, raw.sum_xx, raw.missing.n, *(c.n for c in raw.bins)]
    out: list[int] = []
    for g in raw.groups:
        for series in (g.entered, g.events, g.censored):
            out.extend(c.n for c in series)
    return out


def protect(spec: AnalysisSpec, raw: Raw, *, k: int, policy: NodePolicy) -> Release:
    """Apply the node's rules (module docstring) in cell-key, threshold or exact mode."""
    if policy.mode == "none":
        return exact_release(spec, raw)
    zeros = [0] * spec.n_values
    meta: dict[str, Any] = {"mode": policy.mode, "k": k, "rows": raw.total}
    if raw.total < k:
        return Release(zeros, [1] + [1] * (len(spec.flags) - 1),
                       {**meta, "suppressed": "cohort below k", "cells_suppressed": spec.n_values})
    if isinstance(raw, RawCounts):
        return _table(raw.cells, spec, k, policy, meta)
    if isinstance(raw, RawSummary):
        assert isinstance(spec, SummarySpec)
        return _summary(raw, spec, k, policy, meta)
    assert isinstance(spec, SurvivalSpec)
    return _survival(raw, spec, k, policy, meta)


def _table(cells: list[Cell], spec: AnalysisSpec, k: int, policy: NodePolicy, meta: dict[str, Any]) -> Release:
    if policy.mode == "threshold":
        small = sum(1 for c in cells if 0 < c.n < k)
        if small:
            return Release([0] * len(cells), [1, 1], {**meta, "suppressed": f"{small} cell(s) below k",
                                                      "cells_suppressed": len(cells)})
        return Release([c.n for c in cells], [1, 0], meta)
    out = [ptable.perturb(c.n, c.key) for c in cells]
    return Release(out, [1, 0], {**meta, "cells_perturbed": sum(1 for c in cells if c.n > 0)})


def _summary(raw: RawSummary, spec: SummarySpec, k: int, policy: NodePolicy, meta: dict[str, Any]) -> Release:
    flags = [1, 0, 0]
    coded = code_tails(raw.bins, k)
    if coded is None:       # fewer than k rows in the bins: no tail can be coded, the table is withheld
        table = Release([0] * (1 + len(raw.bins)), [1, 1], {**meta, "suppressed": "bins below k",
                                                            "cells_suppressed": 1 + len(raw.bins)})
    else:
        table = _table([raw.missing, *coded], spec, k, policy, meta)
    if table.flags[1]:
        flags[2] = 1
    # Withheld with the table too: n released exactly beside a withheld `missing` would give it away
    # (count − n) in threshold mode.
    if raw.n.n < k or table.flags[1]:
        head = [0, 0, 0]
        flags[1] = 1
    else:
        n = raw.n.n if policy.mode == "threshold" else ptable.perturb(raw.n.n, raw.n.key)
        head = [n, raw.sum_x, raw.sum_xx]
    out = {**table.meta, "moments_withheld": bool(flags[1])}
    out["cells_suppressed"] = out.get("cells_suppressed", 0) + 3 * flags[1]
    if policy.mode == "cell_key" and not flags[1]:
        out["cells_perturbed"] = out.get("cells_perturbed", 0) + 1      # n
    return Release(head + table.values, flags, out)


def code_tails(bins: list[Cell], k: int) -> list[Cell] | None:
    """Bottom- and top-code the quantile bins on the true counts: the lowest bins are merged into
    the first bin at which the cumulative count reaches k, likewise from the top, so no released
    tail bin rests on fewer than k rows (never min or max). None when the bins hold fewer than k
    rows in all (then nothing of them can be released)."""
    if not bins:
        return []
    out = [EMPTY] * len(bins)
    if sum(c.n for c in bins) < k:
        return None
    lo = _reaches(bins, k)
    hi = len(bins) - 1 - _reaches(bins[::-1], k)
    if hi <= lo:                           # the tails overlap: everything in one bin
        merged = EMPTY
        for c in bins:
            merged = merged + c
        out[lo] = merged
        return out
    bottom = top = EMPTY
    for c in bins[:lo + 1]:
        bottom = bottom + c
    for c in bins[hi:]:
        top = top + c
    out[lo] = bottom
    out[lo + 1:hi] = bins[lo + 1:hi]
    out[hi] = top
    return out


def _reaches(bins: list[Cell], k: int) -> int:
    """Index of the first bin at which the cumulative true count reaches k (the bins hold ≥ k)."""
    acc = 0
    for i, c in enumerate(bins):
        acc += c.n
        if acc >= k:
            return i
    raise AssertionError("the bins hold fewer than k rows")


def _survival(raw: RawSurvival, spec: SurvivalSpec, k: int, policy: NodePolicy, meta: dict[str, Any]) -> Release:
    method = policy.survival_method()
    out: list[int] = []
    group_flags: list[int] = []
    tails: dict[str, int] = {}
    suppressed = perturbed = 0
    for name, g in zip(spec.groups, raw.groups, strict=True):
        if g.total < k:
            out.extend([0] * (3 * spec.n_edges))
            suppressed += 3 * spec.n_edges
            group_flags.append(1)   # also for an empty group: the flag must not tell 0 from 1…k−1
            continue
        censored = tail_censor(g, k)
        if censored.tail_censored_at is not None:
            tails[name] = censored.tail_censored_at * spec.step_days
        for series in (censored.entered, censored.events, censored.censored):
            out.extend(_publish_cumulative(series, k, method))
            perturbed += sum(1 for c in series if c.n > 0)
        group_flags.append(0)
    return Release(out, [1, 0, *group_flags],
                   {**meta, "survival_counts": method, "tail_censored_at_day": tails,
                    "suppressed_groups": sum(group_flags), "cells_suppressed": suppressed,
                    "cells_perturbed": perturbed})


def tail_censor(g: GroupSurvival, k: int) -> GroupSurvival:
    """From the first interval whose number at risk is below k, report every remaining patient
    (later entrants included) as censored in that interval, with no further events."""
    a, d, c = g.entered, g.events, g.censored
    for j in range(len(a)):
        removed = d[j - 1].n + c[j - 1].n if j else 0
        if a[j].n - removed < k:
            everyone = a[-1]
            before = d[j - 1] if j else EMPTY
            tail = len(a) - j
            return GroupSurvival(a[:j] + [everyone] * tail, d[:j] + [before] * tail,
                                 c[:j] + [everyone - before] * tail, tail_censored_at=j)
    return g


def _publish_cumulative(series: list[Cell], k: int, method: str) -> list[int]:
    """A cumulative count series, perturbed or rounded, and kept non-decreasing."""
    if method == "round":
        return [roundmid(c.n, k) for c in series]
    out, top = [], 0
    for c in series:
        top = max(top, ptable.perturb(c.n, c.key))
        out.append(top)
    return out


def roundmid(value: int, k: int) -> int:
    """Round to the midpoint of its block of k: 1…k → k − ⌊k/2⌋, k+1…2k → 2k − ⌊k/2⌋; 0 stays 0."""
    if value <= 0:
        return 0
    return math.ceil(value / k) * k - k // 2


def check_allowed(policy: NodePolicy, analysis: str) -> None:
    if analysis not in policy.allowed_analyses:
        raise QueryError("PERMISSION_DENIED", f"this centre's policy does not allow {analysis}", "analysis")
