"""The rows an answer under the release ledger rests on, as statements SQLite plans well.

The ledger (oncofed.node.store.ledger, D18) answers a cohort C over the rows of a release: C's
own rows with an exact difference applied, (C ∖ removed) ∪ added, a few ids at most. Written as
one condition, `((C) AND rowid NOT IN r) OR rowid IN a`, SQLite scans the whole table for it — no
index on C, no covering index, no folding of a contradictory C — ≈ 0.1–1 µs a row on every
ledgered answer, most of a federated count (measured: bench/query_federated.py, D33). Here the
same rows are three signed parts of one statement: + C exactly as it runs alone, − C's rows among
the removed ids, + the added ids not counted yet; each correction is one rowid lookup per listed
id. Every ledgered answer runs all three parts, an empty difference included, so the statements
are the same on every path of the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

Statement = tuple[str, list[Any]]

_LISTED = "rowid IN (SELECT value FROM json_each(?))"


class RowChange(Protocol):
    """The exact difference between the cohort's rows and the rows to answer over (the release
    ledger's `rowsets.Diff`): row ids to add and to remove."""

    @property
    def add(self) -> tuple[int, ...]: ...
    @property
    def remove(self) -> tuple[int, ...]: ...


def substitution(where: str, params: Sequence[Any], change: RowChange) -> list[tuple[int, str, tuple[Any, ...]]]:
    """The rows (C ∖ removed) ∪ added as three (sign, condition, parameters) parts (see the
    module docstring); exact for any two id lists, overlapping or not."""
    removed, added = json.dumps(list(change.remove)), json.dumps(list(change.add))
    params = tuple(params)
    return [(1, where, params),
            (-1, f"{_LISTED} AND ({where})", (removed, *params)),
            # NULL-safe: a row whose C is NULL was never counted in the first part
            (1, f"{_LISTED} AND NOT coalesce(({where}) AND rowid NOT IN (SELECT value FROM json_each(?)), 0)",
             (added, *params, removed))]


def signed_statement(build: Callable[[str, Sequence[Any]], Statement], where: str, params: Sequence[Any],
                     change: RowChange) -> Statement:
    """One statement over the three parts of `substitution`, each part's rows led by its tag:
    1 for the cohort, −1 for its removed rows, 2 for the added ones."""
    sqls: list[str] = []
    out: list[Any] = []
    for tag, (_, w, ps) in zip((1, -1, 2), substitution(where, params, change), strict=True):
        sql, bound = build(w, ps)
        sqls.append(f"SELECT {tag}, * FROM ({sql})")
        out.extend(bound)
    return " UNION ALL ".join(sqls), out


def merge_signed(rows: Sequence[Sequence[Any]], width: int, *, grouped: bool = True) -> list[tuple[Any, ...]]:
    """Rows of a `signed_statement` over grouped aggregates (tag, `width` group values, count,
    key sum) summed per group: the plain statement's rows over the substituted rows — the
    cohort's groups in their order, then groups only added rows fill; empty groups dropped when
    the statement groups (`grouped`), as GROUP BY drops them. The cohort's groups are indexed on
    every path, so the work grows only with the (few) correction rows."""
    out = [tuple(r[1:]) for r in rows if r[0] == 1]
    index = {r[:width]: i for i, r in enumerate(out)}
    for r in rows:
        if r[0] == 1:
            continue
        sign, key = (-1 if r[0] < 0 else 1), tuple(r[1:1 + width])
        n, keys = sign * int(r[1 + width]), sign * int(r[2 + width] or 0)
        i = index.get(key)
        if i is None:
            index[key] = len(out)
            out.append((*key, n, keys))
        else:
            was = out[i]
            out[i] = (*key, int(was[width]) + n, int(was[width + 1] or 0) + keys)
    return [r for r in out if r[width] or not grouped]
