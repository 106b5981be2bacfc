"""What kaplan_meier and logrank share: the lattice layout, the local step, the disclosure step.

Layout, per group (the group field's codes then (missing), or one group "all"): cumulative
entries A_j, events D_j and censorings C_j at the public lattice edges g_j = j·step, j = 0 … m;
flags (centres, suppressed, suppressed:<group>…). Intervals: 0 is the instant 0, j ≥ 1 is
(g_{j−1}, g_j]. Outcomes are derived at query time by the node (DESIGN §6; the reader's
`survival`); left truncation: a patient is at risk in the intervals α ≤ j ≤ κ.

Disclosure: a group below k is withheld (its flag set — also for an empty group, so the flag
cannot tell 0 from 1…k−1); once a group's number at risk falls below k all its remaining patients
are reported censored at that edge (tail censoring); then every cumulative series is cell-key
perturbed and made monotone, or rounded to the midpoint of blocks of k. DP: the per-interval
entries, events and censorings, two of which move per row (L1 = 2L, L2 = √2·L); the cumulative
vector is their running sum (post-processing: no further cost).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from oncofed.analyses import disclosure
from oncofed.analyses.base import Analysis, Block, Grants, Reader, Release, Rules, SurvivalQuestion
from oncofed.analyses.cells import EMPTY, GroupSurvival, RawSurvival, cumulative
from oncofed.dictionary import Dictionary, Field
from oncofed.query.errors import QueryError, invalid
from oncofed.query.values import ALL, categorical_field, exact_day, levels_of
from oncofed.v1 import query_pb2 as pb

DEFAULT_STEP_DAYS = 30
DEFAULT_HORIZON_DAYS = 3660
MAX_HORIZON_DAYS = 36_600
OUTCOMES = {pb.OUTCOME_OS: "OS", pb.OUTCOME_RFS: "RFS"}
SURVIVAL_COMPONENTS = ("entered", "events", "censored")


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


class SurvivalAnalysis(Analysis[SurvivalSpec, RawSurvival]):
    """The node side of both survival analyses; each subclass adds its finaliser."""

    needs_group = False

    def parse(self, msg: Message, d: Dictionary, allowed: Collection[str] | None, path: str) -> SurvivalSpec:
        assert isinstance(msg, pb.KaplanMeier | pb.LogRank)
        outcome = OUTCOMES.get(msg.outcome)
        if outcome is None:
            raise invalid(f"{path}.outcome", "outcome must be OS or RFS")
        cutoff = exact_day(msg.cutoff, f"{path}.cutoff")
        step = msg.lattice.step_days or DEFAULT_STEP_DAYS
        horizon = msg.lattice.horizon_days or DEFAULT_HORIZON_DAYS
        if horizon > MAX_HORIZON_DAYS:
            raise invalid(f"{path}.lattice.horizon_days", f"horizon {horizon} exceeds {MAX_HORIZON_DAYS} days")
        if step > horizon:
            raise invalid(f"{path}.lattice.step_days", f"step {step} is longer than the horizon {horizon}")
        n_edges = -(-horizon // step) + 1
        group: Field | None = None
        if msg.group_by:
            group = categorical_field(d, msg.group_by, f"{path}.group_by", allowed)
        elif self.needs_group:
            raise invalid(f"{path}.group_by", f"a {self.title} needs a group_by field")
        groups = levels_of(group) if group else (ALL,)
        return SurvivalSpec(kind=self.kind, outcome=outcome, cutoff=cutoff, step_days=step, n_edges=n_edges,
                            group_field=group.name if group else None, groups=groups)

    title = "survival analysis"

    def check(self, spec: SurvivalSpec, d: Dictionary, grants: Grants) -> None:
        """A 1-day lattice gives exact event times: only with the permit's exact dates and a
        centre policy that allows them; otherwise the centre's coarsest step applies."""
        if grants.local_admin:
            return
        path = f"analysis.{spec.kind}.lattice.step_days"
        if spec.step_days == 1:
            if not grants.exact_times:
                raise QueryError("PERMISSION_DENIED", "a 1-day lattice (exact event times) needs a permit with "
                                 "exact dates and a centre policy that allows exact survival times", path)
        elif spec.step_days < grants.min_step_days:
            raise QueryError("PERMISSION_DENIED", f"this centre's lattice steps are at least "
                             f"{grants.min_step_days} days", path)

    def local(self, spec: SurvivalSpec, reader: Reader, *, clamp: bool) -> RawSurvival:
        n_edges, n_groups = spec.n_edges, len(spec.groups)
        entries = [[EMPTY] * n_edges for _ in range(n_groups)]
        events = [[EMPTY] * n_edges for _ in range(n_groups)]
        censored = [[EMPTY] * n_edges for _ in range(n_groups)]
        question = SurvivalQuestion(spec.outcome, spec.cutoff, spec.step_days, n_edges, spec.group_field)
        for row in reader.survival(question):
            g = row.group
            gi = g if g is not None and 0 <= g < n_groups - 1 else n_groups - 1
            if spec.group_field is None:
                gi = 0
            entries[gi][row.alpha] = entries[gi][row.alpha] + row.cell
            if row.kappa is not None:
                target = events if row.event else censored
                target[gi][row.kappa] = target[gi][row.kappa] + row.cell
        return RawSurvival([GroupSurvival(cumulative(entries[i]), cumulative(events[i]), cumulative(censored[i]))
                            for i in range(n_groups)])

    def total(self, raw: RawSurvival) -> int:
        return raw.total

    def exact(self, spec: SurvivalSpec, raw: RawSurvival) -> list[int]:
        out: list[int] = []
        for g in raw.groups:
            for series in (g.entered, g.events, g.censored):
                out.extend(c.n for c in series)
        return out

    def protect(self, spec: SurvivalSpec, raw: RawSurvival, rules: Rules, meta: dict[str, Any]) -> Release:
        k, method = rules.k, rules.survival_counts
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
                out.extend(disclosure.publish_cumulative(series, k, method))
                perturbed += sum(1 for c in series if c.n > 0)
            group_flags.append(0)
        return Release(out, [1, 0, *group_flags],
                       {**meta, "survival_counts": method, "tail_censored_at_day": tails,
                        "suppressed_groups": sum(group_flags), "cells_suppressed": suppressed,
                        "cells_perturbed": perturbed})

    def dp_blocks(self, spec: SurvivalSpec, raw: RawSurvival, rows_per_patient: int) -> list[Block]:
        L = rows_per_patient
        increments: list[int] = []
        for g in raw.groups:
            for series in (g.entered, g.events, g.censored):
                prev = 0
                for c in series:
                    increments.append(c.n - prev)
                    prev = c.n
        return [Block(increments, 2 * L, 2**0.5 * L)]

    def dp_values(self, spec: SurvivalSpec, noisy: list[list[int]]) -> list[int]:
        out: list[int] = []
        e = spec.n_edges
        for start in range(0, len(noisy[0]), e):
            acc = 0
            for x in noisy[0][start:start + e]:
                acc += x
                out.append(acc)
        return out

    def plausible(self, spec: SurvivalSpec, values: list[int]) -> bool:
        """Cumulative counts: non-negative and non-decreasing along the lattice."""
        e = spec.n_edges
        series = [values[i:i + e] for i in range(0, len(values), e)]
        return all(s[0] >= 0 and all(b >= a for a, b in itertools.pairwise(s)) for s in series)

    def head(self, spec: SurvivalSpec, flags: dict[str, int]) -> dict[str, Any]:
        return {"suppressed_centres": flags["suppressed"],
                "suppressed_groups": {g: flags[f"suppressed:{g}"] for g in spec.groups if flags[f"suppressed:{g}"]}}


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


def group_blocks(spec: SurvivalSpec, values: list[int]) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """The summed vector split per group into its (entered, events, censored) series."""
    e = spec.n_edges
    out = {}
    for gi, g in enumerate(spec.groups):
        o = gi * 3 * e
        out[g] = (values[o:o + e], values[o + e:o + 2 * e], values[o + 2 * e:o + 3 * e])
    return out


def lattice_table(spec: SurvivalSpec, entered: list[int], events: list[int],
                  censored: list[int]) -> list[dict[str, int]]:
    """Per interval: time (its closing edge), entered, at_risk, events, censored.

    at risk in interval j: n_j = A_j − D_{j−1} − C_{j−1} (entrants up to g_j, minus those removed
    before the interval); events d_j = D_j − D_{j−1}, censorings c_j = C_j − C_{j−1} (perturbed
    counts are clamped so that 0 ≤ d_j ≤ n_j).
    """
    rows = []
    prev_a = prev_d = prev_c = 0
    for j in range(spec.n_edges):
        a, d_cum, c_cum = max(entered[j], prev_a), max(events[j], prev_d), max(censored[j], prev_c)
        n = max(a - prev_d - prev_c, 0)
        d = min(d_cum - prev_d, n)
        c = min(c_cum - prev_c, n - d)
        rows.append({"time": j * spec.step_days, "entered": a - prev_a, "at_risk": n, "events": d, "censored": c})
        prev_a, prev_d, prev_c = a, d_cum, c_cum
    return rows
