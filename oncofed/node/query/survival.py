"""Survival outcomes derived at query time, counted on the query's public lattice.

Outcomes follow DESIGN §6, with the query's cutoff date c (day numbers; all times in days):

- OS: origin incidence_date; event = death on or before c; otherwise censored at
  min(c, linkage_closure_date when vs_source is passive, else vital_status_date). DCO excluded.
- RFS: only disease_free_after_treatment = yes with a surgery date; origin surgery_start_date;
  event = the first of recurrence or death on or before c; otherwise censored at
  min(last_disease_assessment_date, c) (rows without an assessment date are left out).
- Both: the first primary (tumour_seq = 1) unless the cohort names tumour_seq itself; rows whose
  time is negative (origin after the cutoff) are left out.
- Left truncation: for tumours this centre did not diagnose (referred, follow-up only) entry e is
  the first contact, in days after the origin (0 when earlier); a row with e > 0 is kept only when
  e < T (otherwise it was never at risk).

Lattice (edges g_j = j·step, j = 0 … m): interval 0 is the instant 0, interval j ≥ 1 is
(g_{j−1}, g_j]. A row with time T falls in interval κ = ⌈T/step⌉ (none when T > g_m), and enters
at α = 0 when e = 0, else α = ⌊e/step⌋ + 1 (the first interval that starts at or after e). It is
at risk in intervals α ≤ j ≤ κ: on a 1-day lattice that is lifelines' rule, entry < t ≤ T
(entrants at time 0 included). The node releases per group the cumulative counts
entered[j] = #(α ≤ j), events[j] = #(event, κ ≤ j), censored[j] = #(no event, κ ≤ j).
"""

from __future__ import annotations

from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.federation.query.spec import SurvivalSpec
from oncofed.node.query.cells import EMPTY, Cell, GroupSurvival, RawSurvival, cumulative
from oncofed.node.query.compiler import CompiledCohort
from oncofed.node.store.encoding import code_ordinals, day_number
from oncofed.node.store.recordkeys import RECORD_KEY_COLUMN
from oncofed.node.store.schema import TUMOURS, quote


class _Sql:
    """Builds a statement and its positional parameters in textual order."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.params: list[Any] = []

    def add(self, text: str, *params: Any) -> _Sql:
        self.text.append(text)
        self.params.extend(params)
        return self

    def sql(self) -> str:
        return "".join(self.text)


def _q(*names: str) -> list[str]:
    return [quote(n) for n in names]


def survival_statement(spec: SurvivalSpec, d: Dictionary, cohort: CompiledCohort,
                       restrict: tuple[str, tuple[Any, ...]] | None = None) -> tuple[str, list[Any]]:
    """SQL grouping the cohort by (group ordinal, α, κ, event) with counts and key sums."""
    c = day_number(spec.cutoff)
    step, m = spec.step_days, spec.n_edges - 1
    role_here = code_ordinals(d.fields["centre_role"])["diagnosed_here"]
    inc, death, vital, link, vs, role, first, dco = _q(
        "incidence_date", "death_date", "vital_status_date", "linkage_closure_date", "vs_source",
        "centre_role", "first_contact_date", "dco")
    group = quote(spec.group_field) if spec.group_field else "0"
    b = _Sql()
    b.add("SELECT g, CASE WHEN e = 0 THEN 0 ELSE e / ? + 1 END AS a, "
          "CASE WHEN t > ? THEN NULL ELSE (t + ? - 1) / ? END AS k, ev, COUNT(*), SUM(rk) FROM (SELECT ",
          step, m * step, step, step)
    b.add(f"{group} AS g, ")
    if spec.outcome == "OS":
        passive = code_ordinals(d.fields["vs_source"])["passive"]
        b.add(f"CASE WHEN {death} IS NOT NULL AND {death} <= ? THEN {death} - {inc} "
              f"ELSE MIN(?, CASE WHEN {vs} = ? AND {link} IS NOT NULL THEN {link} ELSE {vital} END) - {inc} "
              "END AS t, ", c, c, passive)
        b.add(f"CASE WHEN {death} IS NOT NULL AND {death} <= ? THEN 1 ELSE 0 END AS ev, ", c)
        origin = inc
    else:
        rec, surg, last = _q("recurrence_date", "surgery_start_date", "last_disease_assessment_date")
        rec_in = f"({rec} IS NOT NULL AND {rec} <= ?)"
        dth_in = f"({death} IS NOT NULL AND {death} <= ?)"
        b.add(f"CASE WHEN {rec_in} AND {dth_in} THEN MIN({rec}, {death}) - {surg} "
              f"WHEN {rec_in} THEN {rec} - {surg} WHEN {dth_in} THEN {death} - {surg} "
              f"ELSE MIN({last}, ?) - {surg} END AS t, ", c, c, c, c, c)
        b.add(f"CASE WHEN {rec_in} OR {dth_in} THEN 1 ELSE 0 END AS ev, ", c, c)
        origin = surg
    b.add(f"CASE WHEN {role} <> ? AND {first} IS NOT NULL AND {first} > {origin} "
          f"THEN {first} - {origin} ELSE 0 END AS e, {quote(RECORD_KEY_COLUMN)} AS rk ", role_here)
    b.add(f"FROM {TUMOURS} WHERE ({cohort.where})", *cohort.params)
    b.add(f" AND {dco} = 0")
    if "tumour_seq" not in cohort.fields:
        b.add(f" AND {quote('tumour_seq')} = 1")
    if spec.outcome == "RFS":
        yes = code_ordinals(d.fields["disease_free_after_treatment"])["yes"]
        b.add(f" AND {quote('disease_free_after_treatment')} = ? AND {origin} IS NOT NULL", yes)
    if restrict is not None:
        b.add(f" AND ({restrict[0]})", *restrict[1])
    b.add(") WHERE t IS NOT NULL AND t >= 0 AND (e = 0 OR e < t) AND (e = 0 OR e / ? + 1 <= ?) "
          "GROUP BY 1, 2, 3, 4", step, m)
    return b.sql(), b.params


def count_survival(rows: list[tuple[Any, ...]], spec: SurvivalSpec, d: Dictionary) -> RawSurvival:
    """Cumulative lattice counts per group from the grouped rows of `survival_statement`."""
    n_edges, n_groups = spec.n_edges, len(spec.groups)
    index = _group_index(spec, d)
    entries = [[EMPTY] * n_edges for _ in range(n_groups)]
    events = [[EMPTY] * n_edges for _ in range(n_groups)]
    censored = [[EMPTY] * n_edges for _ in range(n_groups)]
    for g, alpha, kappa, ev, n, keys in rows:
        gi = index.get(g, n_groups - 1)
        cell = Cell(int(n), int(keys or 0))
        entries[gi][alpha] = entries[gi][alpha] + cell
        if kappa is not None:
            target = events if ev else censored
            target[gi][kappa] = target[gi][kappa] + cell
    return RawSurvival([
        GroupSurvival(cumulative(entries[i]), cumulative(events[i]), cumulative(censored[i]))
        for i in range(n_groups)
    ])


def _group_index(spec: SurvivalSpec, d: Dictionary) -> dict[Any, int]:
    """Stored group value → index in spec.groups (NULL and anything unknown: the last group)."""
    if spec.group_field is None:
        return {0: 0}
    f = d.fields[spec.group_field]
    if f.type == "boolean":
        return {0: 0, 1: 1}
    return {ordinal: ordinal - 1 for ordinal in code_ordinals(f).values()}
