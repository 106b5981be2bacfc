"""The store's side of every analysis: the cohort's rows read as exact cells, in one SQL pass.

An analysis' local step (oncofed.analyses) asks a `Reader` for grouped cells or survival rows;
`StoreReader` answers with one grouped aggregate per call (COUNT and SUM of record keys, GROUP BY
the analysis' fields) over the compiled cohort, so it stays one pass over the rows at a million
tumours and Python only touches the groups. Identifiers come from the dictionary via `quote()`;
every value — the cohort's and the lattice's — is a bound parameter.

Survival outcomes are derived here at query time (DESIGN §6), with the query's cutoff date c (day
numbers; all times in days):

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
(entrants at time 0 included).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from oncofed.analyses.base import SurvivalQuestion, SurvivalRow
from oncofed.analyses.cells import Cell
from oncofed.dictionary import Dictionary
from oncofed.node.store.encoding import code_ordinals, day_number
from oncofed.node.store.schema import RECORD_KEY, TUMOURS, quote

Restrict = tuple[str, tuple[Any, ...]] | None
Statement = tuple[str, list[Any]]
_AGG = f"COUNT(*), SUM({quote(RECORD_KEY)})"


class StoreReader:
    """The node's `oncofed.analyses.base.Reader` over one compiled cohort (and, under DP, the
    per-patient restriction). `statements` keeps what ran, for the benchmark's direct-SQL side."""

    def __init__(self, conn: sqlite3.Connection, d: Dictionary, where: str, params: Sequence[Any],
                 cohort_fields: frozenset[str], restrict: Restrict = None) -> None:
        self.conn, self.d = conn, d
        self.where, self.params, self.cohort_fields, self.restrict = where, tuple(params), cohort_fields, restrict
        self.statements: list[Statement] = []

    def groups(self, fields: Sequence[str]) -> list[tuple[tuple[Any, ...], Cell]]:
        sql, params = grouped_statement(fields, self.where, self.params, self.restrict)
        self.statements.append((sql, params))
        decoders = [_level_positions(self.d, f) for f in fields]
        out = []
        for row in self.conn.execute(sql, params).fetchall():
            values = tuple(v if dec is None else (None if v is None else dec.get(v))
                           for v, dec in zip(row[:-2], decoders, strict=True))
            out.append((values, Cell(int(row[-2]), int(row[-1] or 0))))
        return out

    def survival(self, question: SurvivalQuestion) -> list[SurvivalRow]:
        sql, params = survival_statement(question, self.d, self.where, self.params, self.cohort_fields,
                                         self.restrict)
        self.statements.append((sql, params))
        dec = _level_positions(self.d, question.group_field) if question.group_field else None
        out = []
        for g, alpha, kappa, ev, n, keys in self.conn.execute(sql, params).fetchall():
            group = None if dec is None or g is None else dec.get(g)
            out.append(SurvivalRow(group, int(alpha), None if kappa is None else int(kappa), bool(ev),
                                   Cell(int(n), int(keys or 0))))
        return out


def _level_positions(d: Dictionary, name: str) -> dict[Any, int] | None:
    """Stored value → position among a categorical field's codes (None: not categorical)."""
    f = d.fields[name]
    if f.type == "boolean":
        return {0: 0, 1: 1}
    if not f.is_categorical:
        return None
    return {ordinal: ordinal - 1 for ordinal in code_ordinals(f).values()}


def _where(where: str, params: Sequence[Any], restrict: Restrict) -> tuple[str, list[Any]]:
    clause, out = f"({where})", list(params)
    if restrict is not None:
        clause += f" AND ({restrict[0]})"
        out.extend(restrict[1])
    return clause, out


def grouped_statement(fields: Sequence[str], where: str, params: Sequence[Any],
                      restrict: Restrict = None) -> Statement:
    """SELECT the fields, COUNT(*) and the record-key sum over the cohort, grouped by the fields."""
    clause, out = _where(where, params, restrict)
    cols = tuple(quote(f) for f in fields)
    select = ", ".join((*cols, _AGG))
    group = f" GROUP BY {', '.join(cols)}" if cols else ""
    return f"SELECT {select} FROM {TUMOURS} WHERE {clause}{group}", out


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


def survival_statement(question: SurvivalQuestion, d: Dictionary, where: str, params: Sequence[Any],
                       cohort_fields: frozenset[str], restrict: Restrict = None, *, rowids: bool = False) -> Statement:
    """SQL grouping the cohort by (group ordinal, α, κ, event) with counts and key sums; with
    `rowids`, the same rows' ids instead, as one group_concat (the release ledger's view of what
    the answer rests on: oncofed.node.store.rowsets)."""
    c = day_number(question.cutoff)
    step, m = question.step_days, question.n_edges - 1
    role_here = code_ordinals(d.fields["centre_role"])["diagnosed_here"]
    inc, death, vital, link, vs, role, first, dco = _q(
        "incidence_date", "death_date", "vital_status_date", "linkage_closure_date", "vs_source",
        "centre_role", "first_contact_date", "dco")
    group = quote(question.group_field) if question.group_field else "0"
    b = _Sql()
    if rowids:
        b.add("SELECT group_concat(rid) FROM (SELECT ")
    else:
        b.add("SELECT g, CASE WHEN e = 0 THEN 0 ELSE e / ? + 1 END AS a, "
              "CASE WHEN t > ? THEN NULL ELSE (t + ? - 1) / ? END AS k, ev, COUNT(*), SUM(rk) FROM (SELECT ",
              step, m * step, step, step)
    b.add(f"{group} AS g, ")
    if question.outcome == "OS":
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
          f"THEN {first} - {origin} ELSE 0 END AS e, {quote(RECORD_KEY)} AS rk, rowid AS rid ", role_here)
    b.add(f"FROM {TUMOURS} WHERE ({where})", *params)
    b.add(f" AND {dco} = 0")
    if "tumour_seq" not in cohort_fields:
        b.add(f" AND {quote('tumour_seq')} = 1")
    if question.outcome == "RFS":
        yes = code_ordinals(d.fields["disease_free_after_treatment"])["yes"]
        b.add(f" AND {quote('disease_free_after_treatment')} = ? AND {origin} IS NOT NULL", yes)
    if restrict is not None:
        b.add(f" AND ({restrict[0]})", *restrict[1])
    b.add(") WHERE t IS NOT NULL AND t >= 0 AND (e = 0 OR e < t) AND (e = 0 OR e / ? + 1 <= ?)", step, m)
    if not rowids:
        b.add(" GROUP BY 1, 2, 3, 4")
    return b.sql(), b.params
