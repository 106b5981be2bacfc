"""The store's side of every analysis: the cohort's rows read as exact cells, in one SQL pass.

An analysis' local step (oncofed.analyses) asks a `Reader` for grouped cells or survival rows
(or, for a model, its complete cases: design_reads.py);
`StoreReader` answers with one grouped aggregate per call (COUNT and SUM of record keys, GROUP BY
the analysis' fields) over the compiled cohort, so it stays one pass over the rows at a million
tumours and Python only touches the groups. Identifiers come from the dictionary via `quote()`;
every value — the cohort's and the lattice's — is a bound parameter.

Survival outcomes and the derived status fields are defined once, in `outcomes.py` (OS, RFS,
the RFS follow-up fallback, left truncation, status at a cutoff). A derived status field is an
expression, not a column: it is selected and grouped like a column, its cutoff bound.

Lattice (edges g_j = j·step, j = 0 … m): interval 0 is the instant 0, interval j ≥ 1 is
(g_{j−1}, g_j]. A row with time T falls in interval κ = ⌈T/step⌉ (none when T > g_m), and enters
at α = 0 when e = 0, else α = ⌊e/step⌋ + 1 (the first interval that starts at or after e). It is
at risk in intervals α ≤ j ≤ κ: on a 1-day lattice that is lifelines' rule, entry < t ≤ T
(entrants at time 0 included). Rows of the first primary (tumour_seq = 1, unless the cohort names
tumour_seq itself) whose time is negative (origin after the cutoff) are left out, and so are
rows with e ≥ T (never at risk); rows with no follow-up end come back flagged `excluded`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from oncofed.analyses.base import DesignQuestion, DesignRows, SurvivalQuestion, SurvivalRow
from oncofed.analyses.cells import Cell
from oncofed.dictionary import Dictionary
from oncofed.node.store.design_reads import read_design
from oncofed.node.store.encoding import code_ordinals, day_number
from oncofed.node.store.outcomes import Expr, outcome_sql, status_sql
from oncofed.node.store.schema import RECORD_KEY, TUMOURS, quote
from oncofed.node.store.substitution import RowChange, merge_signed, signed_statement

Restrict = tuple[str, tuple[Any, ...]] | None
Statement = tuple[str, list[Any]]
_AGG = f"COUNT(*), SUM({quote(RECORD_KEY)})"


class StoreReader:
    """The node's `oncofed.analyses.base.Reader` over one compiled cohort (and, under DP, the
    per-patient restriction). `status_cutoff` is the query's cutoff of the derived status fields
    (None when it names none). `statements` keeps what ran, for the benchmark's direct-SQL side."""

    def __init__(self, conn: sqlite3.Connection, d: Dictionary, where: str, params: Sequence[Any],
                 cohort_fields: frozenset[str], restrict: Restrict = None,
                 status_cutoff: dt.date | None = None, change: RowChange | None = None) -> None:
        self.conn, self.d = conn, d
        self.where, self.params, self.cohort_fields, self.restrict = where, tuple(params), cohort_fields, restrict
        self.status_cutoff = status_cutoff
        self.change = change
        self.statements: list[Statement] = []

    def _rows(self, build: Callable[[str, Sequence[Any]], Statement], width: int, grouped: bool) -> list[Any]:
        """Run a grouped statement over the cohort, or (with a release ledger's `change`) over its
        substituted rows as `signed_statement` and `merge_signed` give them."""
        if self.change is None:
            sql, params = build(self.where, self.params)
            self.statements.append((sql, params))
            return self.conn.execute(sql, params).fetchall()
        sql, params = signed_statement(build, self.where, self.params, self.change)
        self.statements.append((sql, params))
        return merge_signed(self.conn.execute(sql, params).fetchall(), width, grouped=grouped)

    def column(self, name: str) -> Expr:
        """A field as SQL: its column, or the expression of a status derived at the cutoff."""
        if not self.d.fields[name].at_query:
            return quote(name), []
        if self.status_cutoff is None:
            raise ValueError(f"{name} needs the query's status_cutoff")  # the engine refuses first
        return status_sql(self.d, name, day_number(self.status_cutoff))

    def groups(self, fields: Sequence[str]) -> list[tuple[tuple[Any, ...], Cell]]:
        derived = {f: self.column(f) for f in fields if self.d.fields[f].at_query}
        rows = self._rows(lambda w, ps: grouped_statement(fields, w, ps, self.restrict, derived), len(fields),
                          grouped=bool(fields))
        decoders = [_level_positions(self.d, f) for f in fields]
        out = []
        for row in rows:
            values = tuple(v if dec is None else (None if v is None else dec.get(v))
                           for v, dec in zip(row[:-2], decoders, strict=True))
            out.append((values, Cell(int(row[-2]), int(row[-1] or 0))))
        return out

    def survival(self, question: SurvivalQuestion) -> list[SurvivalRow]:
        rows = self._rows(lambda w, ps: survival_statement(question, self.d, w, ps, self.cohort_fields, self.restrict),
                          5, grouped=True)
        dec = _level_positions(self.d, question.group_field) if question.group_field else None
        out = []
        for g, alpha, kappa, ev, excluded, n, keys in rows:
            group_at = None if dec is None or g is None else dec.get(g)
            out.append(SurvivalRow(group_at, int(alpha), None if kappa is None else int(kappa), bool(ev),
                                   Cell(int(n), int(keys or 0)), excluded=bool(excluded)))
        return out

    def design(self, question: DesignQuestion) -> DesignRows:
        """A model's complete cases (oncofed.node.store.design_reads), read once per fit."""
        rows, statement = read_design(self.conn, self.d, question, self.where, self.params, self.cohort_fields,
                                      self.restrict, change=self.change)
        self.statements.append(statement)
        return rows


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
                      restrict: Restrict = None, derived: Mapping[str, Expr] | None = None) -> Statement:
    """SELECT the fields (a derived field as its expression), COUNT(*) and the record-key sum
    over the cohort, grouped by the fields (by position, so each expression is written once)."""
    derived = derived or {}
    select: list[str] = []
    out: list[Any] = []
    for f in fields:
        sql, p = derived.get(f, (quote(f), []))
        select.append(sql)
        out.extend(p)
    clause, where_params = _where(where, params, restrict)
    out.extend(where_params)
    group = f" GROUP BY {', '.join(str(i) for i in range(1, len(fields) + 1))}" if fields else ""
    return f"SELECT {', '.join((*select, _AGG))} FROM {TUMOURS} WHERE {clause}{group}", out


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


def survival_statement(question: SurvivalQuestion, d: Dictionary, where: str, params: Sequence[Any],
                       cohort_fields: frozenset[str], restrict: Restrict = None, *, rowids: bool = False) -> Statement:
    """SQL grouping the cohort by (group ordinal, α, κ, event, excluded) with counts and key sums;
    with `rowids`, the same rows' ids instead, as one group_concat (the release ledger's view of
    what the answer rests on: oncofed.node.store.rowsets). Only the question's levels are read."""
    step, m = question.step_days, question.n_edges - 1
    o = outcome_sql(d, question.outcome, day_number(question.cutoff))
    b = _Sql()
    if rowids:
        b.add("SELECT group_concat(rid) FROM (SELECT ")
    else:
        b.add("SELECT g, CASE WHEN e = 0 THEN 0 ELSE e / ? + 1 END AS a, "
              "CASE WHEN t > ? THEN NULL ELSE (t + ? - 1) / ? END AS k, ev, t IS NULL AS x, COUNT(*), SUM(rk) "
              "FROM (SELECT ", step, m * step, step, step)
    b.add(f"{quote(question.group_field) if question.group_field else '0'} AS g, ")
    b.add(f"{o.time[0]} AS t, ", *o.time[1])
    b.add(f"{o.event[0]} AS ev, ", *o.event[1])
    b.add(f"{o.entry[0]} AS e, {quote(RECORD_KEY)} AS rk, rowid AS rid ", *o.entry[1])
    b.add(f"FROM {TUMOURS} WHERE ({where})", *params)
    b.add(f" AND {o.population[0]}", *o.population[1])
    if "tumour_seq" not in cohort_fields:
        b.add(f" AND {quote('tumour_seq')} = 1")
    if restrict is not None:
        b.add(f" AND ({restrict[0]})", *restrict[1])
    b.add(") WHERE (t IS NULL OR (t >= 0 AND (e = 0 OR e < t) AND (e = 0 OR e / ? + 1 <= ?)))", step, m)
    if question.group_field and question.levels:
        values, missing = _level_values(d, question.group_field, question.levels)
        tests = [f"g IN ({', '.join('?' * len(values))})"] if values else []
        tests += ["g IS NULL"] if missing else []
        b.add(f" AND ({' OR '.join(tests)})", *values)
    if not rowids:
        b.add(" GROUP BY 1, 2, 3, 4, 5")
    return b.sql(), b.params


def _level_values(d: Dictionary, name: str, levels: Sequence[int]) -> tuple[list[int], bool]:
    """The stored values of the levels at these positions (codes, then missing), and whether
    missing is one of them."""
    stored = {pos: value for value, pos in (_level_positions(d, name) or {}).items()}
    return [stored[p] for p in levels if p in stored], any(p not in stored for p in levels)
