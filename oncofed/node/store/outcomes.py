"""Survival outcomes as SQL, defined once: time, event, entry, population and status at a cutoff.

Outcomes are derived at query time (DESIGN §6) from the row and the query's cutoff date c (day
numbers; all times in days). The survival analyses (cohort_reads.survival_statement), the derived
status fields (`os_status_at_cutoff`, `rfs_status_at_cutoff`) and the ingest summary's warning all
read these expressions, so a status in a crosstab and an event in a Kaplan–Meier curve agree.

- **OS**: origin incidence_date; event = death on or before c; otherwise censored at
  min(c, last contact), the last contact being linkage_closure_date when vs_source is passive
  (and the closure date is given), else vital_status_date. DCO cases are not in the population.
- **RFS**: population disease_free_after_treatment = yes with a surgery date (DCO excluded);
  origin surgery_start_date; event = the first of recurrence or death on or before c; otherwise
  censored at min(c, end of follow-up). The end of follow-up is last_disease_assessment_date;
  **fallback** when it is missing: vital_status_date, but only under active follow-up (vs_source
  active or both) — a contact at which a recurrence would have been recorded. Passive follow-up
  (a death-registry linkage) says nothing about recurrence: such a row without an assessment
  date has no follow-up end and is *excluded*; the analyses count it (`excluded_no_followup`).
- **Entry** (left truncation): for tumours this centre did not diagnose (referred, follow-up
  only), the first contact in days after the origin (0 when earlier or missing).
- **Status at c** (the derived categoricals; codes in the dictionary): OS dead / alive (last
  contact on or after c) / censored (last contact before c), missing when incidence is after c;
  RFS recurrence / death / event_free / censored, missing outside the RFS population, for
  surgery after c, or with no follow-up end.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from oncofed.dictionary import Dictionary
from oncofed.node.store.encoding import code_ordinals
from oncofed.node.store.schema import TUMOURS, quote

Expr = tuple[str, list[Any]]          # SQL text and its bound parameters, in textual order
OUTCOME_OF_STATUS = {"os_status_at_cutoff": "OS", "rfs_status_at_cutoff": "RFS"}


@dataclass(frozen=True)
class OutcomeSql:
    """One outcome's expressions over a row of `tumours` (each with its parameters)."""

    time: Expr          # T: days from origin to event or censoring (NULL: no follow-up end)
    event: Expr         # 1 event, 0 censored
    entry: Expr         # e ≥ 0: days from origin to entry into this centre's follow-up
    population: Expr    # condition: the row is in the outcome's population
    origin: str         # the origin's column


def _q(*names: str) -> list[str]:
    return [quote(n) for n in names]


def _code(d: Dictionary, field: str, code: str) -> int:
    return code_ordinals(d.fields[field])[code]


def last_contact(d: Dictionary) -> Expr:
    """OS censoring date: the linkage closure under passive follow-up, else the vital status date."""
    vs, link, vital = _q("vs_source", "linkage_closure_date", "vital_status_date")
    return (f"(CASE WHEN {vs} = ? AND {link} IS NOT NULL THEN {link} ELSE {vital} END)",
            [_code(d, "vs_source", "passive")])


def rfs_followup_end(d: Dictionary) -> Expr:
    """RFS censoring date: the last disease assessment, else the vital status date under active
    follow-up; NULL under passive follow-up alone (nothing is known about recurrence)."""
    last, vs, vital = _q("last_disease_assessment_date", "vs_source", "vital_status_date")
    return f"COALESCE({last}, CASE WHEN {vs} <> ? THEN {vital} END)", [_code(d, "vs_source", "passive")]


def outcome_sql(d: Dictionary, outcome: str, c: int) -> OutcomeSql:
    """The expressions of outcome "OS" or "RFS" at cutoff day number c."""
    inc, death, role, first, dco = _q("incidence_date", "death_date", "centre_role", "first_contact_date", "dco")
    dead_by = f"({death} IS NOT NULL AND {death} <= ?)"
    if outcome == "OS":
        last, lp = last_contact(d)
        time = (f"CASE WHEN {dead_by} THEN {death} - {inc} ELSE MIN(?, {last}) - {inc} END", [c, c, *lp])
        event = f"CASE WHEN {dead_by} THEN 1 ELSE 0 END", [c]
        population: Expr = f"{dco} = 0", []
        origin = inc
    else:
        rec, surg, dfat = _q("recurrence_date", "surgery_start_date", "disease_free_after_treatment")
        rec_by = f"({rec} IS NOT NULL AND {rec} <= ?)"
        fu, fp = rfs_followup_end(d)
        time = (f"CASE WHEN {rec_by} AND {dead_by} THEN MIN({rec}, {death}) - {surg} "
                f"WHEN {rec_by} THEN {rec} - {surg} WHEN {dead_by} THEN {death} - {surg} "
                f"ELSE MIN({fu}, ?) - {surg} END", [c, c, c, c, *fp, c])
        event = f"CASE WHEN {rec_by} OR {dead_by} THEN 1 ELSE 0 END", [c, c]
        population = (f"{dfat} = ? AND {surg} IS NOT NULL AND {dco} = 0",
                      [_code(d, "disease_free_after_treatment", "yes")])
        origin = surg
    entry = (f"CASE WHEN {role} <> ? AND {first} IS NOT NULL AND {first} > {origin} "
             f"THEN {first} - {origin} ELSE 0 END", [_code(d, "centre_role", "diagnosed_here")])
    return OutcomeSql(time, event, entry, population, origin)


def status_sql(d: Dictionary, field: str, c: int) -> Expr:
    """A derived status field at cutoff day c, as the 1-based ordinal of its code (NULL: missing)."""
    codes = code_ordinals(d.fields[field])
    inc, death = _q("incidence_date", "death_date")
    dead_by = f"({death} IS NOT NULL AND {death} <= ?)"
    if OUTCOME_OF_STATUS[field] == "OS":
        last, lp = last_contact(d)
        return (f"(CASE WHEN {inc} > ? THEN NULL WHEN {dead_by} THEN ? WHEN {last} >= ? THEN ? ELSE ? END)",
                [c, c, codes["dead"], *lp, c, codes["alive"], codes["censored"]])
    rec, surg, dfat = _q("recurrence_date", "surgery_start_date", "disease_free_after_treatment")
    fu, fp = rfs_followup_end(d)
    yes = _code(d, "disease_free_after_treatment", "yes")
    return (f"(CASE WHEN NOT COALESCE({dfat} = ? AND {surg} IS NOT NULL, 0) OR {surg} > ? THEN NULL "
            f"WHEN {rec} IS NOT NULL AND {rec} <= ? AND ({death} IS NULL OR {death} > ? OR {rec} <= {death}) "
            f"THEN ? WHEN {dead_by} THEN ? WHEN {fu} IS NULL THEN NULL WHEN {fu} >= ? THEN ? ELSE ? END)",
            [yes, c, c, c, codes["recurrence"], c, codes["death"], *fp, *fp, c, codes["event_free"],
             codes["censored"]])


def rfs_followup_gaps(conn: sqlite3.Connection, d: Dictionary) -> tuple[int, int]:
    """(RFS-population tumours with no recurrence or death recorded and no last disease
    assessment date — their censoring rests on the fallback —, those of them that have no
    follow-up end at all — passive follow-up only — and so are left out of RFS)."""
    last, vs, rec, death = _q("last_disease_assessment_date", "vs_source", "recurrence_date", "death_date")
    population, params = outcome_sql(d, "RFS", 0).population
    row = conn.execute(f"SELECT COUNT(*), COALESCE(SUM({vs} = ?), 0) FROM {TUMOURS} "
                       f"WHERE {population} AND {last} IS NULL AND {rec} IS NULL AND {death} IS NULL",
                       [_code(d, "vs_source", "passive"), *params]).fetchone()
    return int(row[0]), int(row[1])


def followup_warnings(conn: sqlite3.Connection, d: Dictionary) -> list[str]:
    """The ingest summary's warnings about the whole store after a load: RFS-population tumours
    whose censoring rests on the fallback, or that RFS must leave out (no follow-up end)."""
    missing, excluded = rfs_followup_gaps(conn, d)
    if not missing:
        return []
    out = [f"{missing} disease-free tumour(s) with a surgery date and no recurrence or death recorded have no "
           "last_disease_assessment_date: recurrence-free survival censors them at vital_status_date "
           "(active follow-up)"]
    if excluded:
        out[0] += f"; {excluded} under passive follow-up only have no follow-up end and are left out of it"
    return out
