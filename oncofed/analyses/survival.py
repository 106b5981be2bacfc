"""What kaplan_meier and logrank share: the lattice layout, the local step, the disclosure step.

Layout: per group (the group field's levels asked for — by default its codes then (missing) —
or one group "all") cumulative entries A_j, events D_j and censorings C_j at the public lattice
edges g_j = j·step, j = 0 … m; then one value, the cohort's rows of the outcome's population left
out for want of a follow-up end (`excluded_no_followup`); flags (centres, suppressed,
suppressed:<group>…). Intervals: 0 is the instant 0, j ≥ 1 is (g_{j−1}, g_j]. Outcomes are
derived at query time by the node (oncofed.node.store.outcomes); left truncation: a patient is
at risk in the intervals α ≤ j ≤ κ.

Disclosure (`protect`): a group below k is withheld (its flag set — also for an empty group, so
the flag cannot tell 0 from 1…k−1); once a group's number at risk falls below k all its
remaining patients are reported censored at that edge and nothing after it (tail censoring).
Then the release is built so that the table is consistent and the log-rank stable
(`survival_release.py`):
the node perturbs (cell key, or rounds to the midpoint of blocks of k) the cumulative entries,
the cumulative events and — instead of censorings — each interval's *number at risk*, a set of
rows with its own cell key; the censorings are what makes the three agree, so every derived
number at risk is one perturbed count (not the difference of three) and
at risk = entered − events − censored to date holds exactly, with no negative count, down to 0
where the centre stopped reporting. DP: the per-interval entries, events and censorings (two of
which move per row: L1 = 2L, L2 = √2·L) and the excluded count; the same consistency step then
runs on the noisy series (post-processing: no further cost).
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
from oncofed.analyses.cells import EMPTY, Cell, GroupSurvival, RawSurvival, cumulative
from oncofed.analyses.survival_release import consistent_from_noisy, perturb, publish_group
from oncofed.dictionary import Dictionary, Field
from oncofed.query.errors import QueryError, invalid
from oncofed.query.values import ALL, MISSING, categorical_field, code_value, exact_day, levels_of
from oncofed.v1 import query_pb2 as pb

DEFAULT_STEP_DAYS = 30
DEFAULT_HORIZON_DAYS = 3660
MAX_HORIZON_DAYS = 36_600
OUTCOMES = {pb.OUTCOME_OS: "OS", pb.OUTCOME_RFS: "RFS"}
SURVIVAL_COMPONENTS = ("entered", "events", "censored")


@dataclass(frozen=True)
class SurvivalSpec:
    """Per group: cumulative entries, events and censorings at edges 0, step, …, horizon; then
    the excluded count. `positions` are the groups' positions among the field's levels."""

    kind: str                  # "kaplan_meier" or "logrank"
    outcome: str               # "OS" or "RFS"
    cutoff: dt.date
    step_days: int
    n_edges: int
    group_field: str | None
    groups: tuple[str, ...]
    positions: tuple[int, ...] = ()
    levels_chosen: bool = False
    n_levels: int = 0          # the group field's levels, codes then missing (0: as many as groups)

    @property
    def flags(self) -> tuple[str, ...]:
        return ("centres", "suppressed", *(f"suppressed:{g}" for g in self.groups))

    @property
    def horizon_days(self) -> int:
        return (self.n_edges - 1) * self.step_days

    @property
    def n_values(self) -> int:
        return 3 * self.n_edges * len(self.groups) + 1

    def edge_days(self) -> list[int]:
        return [j * self.step_days for j in range(self.n_edges)]

    def fields(self) -> tuple[str, ...]:
        return (self.group_field,) if self.group_field else ()

    def group_index(self, position: int | None) -> int | None:
        """The group a row falls in, from its code's position (None: missing); None: not asked."""
        if self.group_field is None:
            return 0
        last = (self.n_levels or len(self.groups)) - 1
        at = last if position is None or not 0 <= position < last else position
        if not self.positions:
            return at
        return self.positions.index(at) if at in self.positions else None


class SurvivalAnalysis(Analysis[SurvivalSpec, RawSurvival]):
    """The node side of both survival analyses; each subclass adds its finaliser."""

    needs_group = False
    title = "survival analysis"

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
            if group.at_query:
                raise invalid(f"{path}.group_by", f"{group.name} is the outcome's own status: it cannot group "
                              "a survival analysis")
        elif self.needs_group:
            raise invalid(f"{path}.group_by", f"a {self.title} needs a group_by field")
        elif msg.group_levels:
            raise invalid(f"{path}.group_levels", "levels need a group_by field")
        groups, positions = _levels(group, list(msg.group_levels), f"{path}.group_levels", self.needs_group)
        return SurvivalSpec(kind=self.kind, outcome=outcome, cutoff=cutoff, step_days=step, n_edges=n_edges,
                            group_field=group.name if group else None, groups=groups, positions=positions,
                            levels_chosen=bool(msg.group_levels),
                            n_levels=len(levels_of(group)) if group else 0)

    def check(self, spec: SurvivalSpec, d: Dictionary, grants: Grants) -> None:
        """The permit must name the outcome. A 1-day lattice gives exact event times: only with
        the permit's exact dates and a centre policy that allows them; otherwise the centre's
        coarsest step applies."""
        if grants.local_admin:
            return
        if grants.outcomes is not None and spec.outcome.lower() not in grants.outcomes:
            raise QueryError("PERMISSION_DENIED", f"the permit does not allow the outcome {spec.outcome} "
                             f"(it names {', '.join(sorted(grants.outcomes)) or 'none'})",
                             f"analysis.{spec.kind}.outcome")
        check_lattice(spec.step_days, grants, f"analysis.{spec.kind}.lattice.step_days")

    def local(self, spec: SurvivalSpec, reader: Reader, *, clamp: bool) -> RawSurvival:
        n_edges, n_groups = spec.n_edges, len(spec.groups)
        entries = [[EMPTY] * n_edges for _ in range(n_groups)]
        events = [[EMPTY] * n_edges for _ in range(n_groups)]
        censored = [[EMPTY] * n_edges for _ in range(n_groups)]
        excluded = EMPTY
        question = SurvivalQuestion(spec.outcome, spec.cutoff, spec.step_days, n_edges, spec.group_field,
                                    spec.positions)
        for row in reader.survival(question):
            gi = spec.group_index(row.group)
            if gi is None:
                continue
            if row.excluded:
                excluded = excluded + row.cell
                continue
            entries[gi][row.alpha] = entries[gi][row.alpha] + row.cell
            if row.kappa is not None:
                target = events if row.event else censored
                target[gi][row.kappa] = target[gi][row.kappa] + row.cell
        return RawSurvival([GroupSurvival(cumulative(entries[i]), cumulative(events[i]), cumulative(censored[i]))
                            for i in range(n_groups)], excluded)

    def total(self, raw: RawSurvival) -> int:
        return raw.total

    def exact(self, spec: SurvivalSpec, raw: RawSurvival) -> list[int]:
        out: list[int] = []
        for g in raw.groups:
            for series in (g.entered, g.events, g.censored):
                out.extend(c.n for c in series)
        return [*out, raw.excluded.n]

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
            values, cells = publish_group(censored, k, method, rules.survival_table)
            out.extend(values)
            perturbed += cells
            group_flags.append(0)
        out.append(_publish_count(raw.excluded, k, method, rules.survival_table))
        return Release(out, [1, 0, *group_flags],
                       {**meta, "survival_counts": method, "survival_table": rules.survival_table,
                        "tail_censored_at_day": tails, "excluded_no_followup": raw.excluded.n,
                        "suppressed_groups": sum(group_flags), "cells_suppressed": suppressed,
                        "cells_perturbed": perturbed + (raw.excluded.n > 0)})

    def dp_blocks(self, spec: SurvivalSpec, raw: RawSurvival, rows_per_patient: int) -> list[Block]:
        L = rows_per_patient
        increments: list[int] = []
        for g in raw.groups:
            for series in (g.entered, g.events, g.censored):
                prev = 0
                for c in series:
                    increments.append(c.n - prev)
                    prev = c.n
        # one row moves two increments (entry, exit) or, when excluded, the excluded count alone
        return [Block([*increments, raw.excluded.n], 2 * L, 2**0.5 * L)]

    def dp_values(self, spec: SurvivalSpec, noisy: list[list[int]]) -> list[int]:
        e = spec.n_edges
        values, excluded = noisy[0][:-1], noisy[0][-1]
        out: list[int] = []
        for start in range(0, len(values), 3 * e):
            series = []
            for part in range(3):
                acc, cum = 0, []
                for x in values[start + part * e:start + (part + 1) * e]:
                    acc += x
                    cum.append(acc)
                series.append(cum)
            out.extend(consistent_from_noisy(*series))
        return [*out, max(excluded, 0)]

    def plausible(self, spec: SurvivalSpec, values: list[int]) -> bool:
        """Cumulative counts: non-negative and non-decreasing along the lattice."""
        e = spec.n_edges
        series = [values[i:i + e] for i in range(0, len(values), e)]
        return all(s[0] >= 0 and all(b >= a for a, b in itertools.pairwise(s)) for s in series)

    def head(self, spec: SurvivalSpec, flags: dict[str, int]) -> dict[str, Any]:
        return {"suppressed_centres": flags["suppressed"],
                "suppressed_groups": {g: flags[f"suppressed:{g}"] for g in spec.groups if flags[f"suppressed:{g}"]}}


def check_lattice(step_days: int, grants: Grants, path: str) -> None:
    """A lattice step the permit and the centre's policy allow: 1 day (exact event times) only with
    the permit's exact dates and a policy that allows exact survival times, else at least the
    centre's coarsest step. Shared by every analysis on the lattice (survival curves, models)."""
    if step_days == 1:
        if not grants.exact_times:
            raise QueryError("PERMISSION_DENIED", "a 1-day lattice (exact event times) needs a permit with "
                             "exact dates and a centre policy that allows exact survival times", path)
    elif step_days < grants.min_step_days:
        raise QueryError("PERMISSION_DENIED", f"this centre's lattice steps are at least "
                         f"{grants.min_step_days} days", path)


def _levels(group: Field | None, asked: list[str], path: str,
            needs_two: bool) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The groups (level names) and their positions among the field's levels."""
    if group is None:
        return (ALL,), ()
    every = levels_of(group)
    if not asked:
        return every, ()
    names: list[str] = []
    for i, text in enumerate(asked):
        level = MISSING if text == MISSING else code_value(group, text, f"{path}[{i}]")
        if level in names:
            raise invalid(f"{path}[{i}]", f"level {text!r} is named twice")
        names.append(level)
    if needs_two and len(names) < 2:
        raise invalid(path, "a log-rank test compares at least two levels")
    return tuple(names), tuple(every.index(n) for n in names)


def _publish_count(cell: Cell, k: int, method: str, table: str) -> int:
    if method == "round":
        return disclosure.roundmid(cell.n, k)
    return perturb(cell, table)


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


def excluded_of(spec: SurvivalSpec, values: list[int]) -> int:
    """The summed count of rows left out for want of a follow-up end (the vector's last value)."""
    return values[3 * spec.n_edges * len(spec.groups)]


def lattice_table(spec: SurvivalSpec, entered: list[int], events: list[int],
                  censored: list[int]) -> list[dict[str, int]]:
    """Per interval: time (its closing edge), entered, at_risk, events, censored.

    at risk in interval j: n_j = A_j − D_{j−1} − C_{j−1} (entrants up to g_j, minus those removed
    before the interval); events d_j = D_j − D_{j−1}, censorings c_j = C_j − C_{j−1}. A node's
    release is consistent by construction; the clamps (0 ≤ d_j ≤ n_j, c_j ≤ n_j − d_j) only
    guard against a vector that is not (a faulty or malicious centre).
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


LEFT_TRUNCATION_NOTE = ("numbers at risk rise where patients enter follow-up after the origin (left truncation): "
                        "tumours this centre did not diagnose (referred, follow-up only) are at risk from the "
                        "first interval after their first contact here, not from diagnosis")
TAIL_NOTE = ("each table ends where the last centre stopped reporting: a centre reports a group's remaining "
             "patients as censored once fewer than k are at risk, and nothing after")


def survival_notes(spec: SurvivalSpec, values: list[int], late_entries: int,
                   ended_early: bool = False) -> dict[str, Any]:
    """What a survival result says besides its statistic: rows left out, left truncation, and
    (ended_early: a table stops before the horizon) where the tables end."""
    excluded = excluded_of(spec, values)
    out: dict[str, Any] = {"excluded_no_followup": excluded, "late_entries": late_entries}
    notes = [TAIL_NOTE] if ended_early else []
    if late_entries:
        notes.append(LEFT_TRUNCATION_NOTE)
    if excluded:
        notes.append(f"{excluded} tumour(s) of the {spec.outcome} population left out: no follow-up end "
                     "(RFS: no last_disease_assessment_date and passive follow-up only)")
    out["notes"] = notes
    return out
