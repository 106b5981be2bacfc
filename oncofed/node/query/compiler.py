"""The cohort compiler: a cohort tree → one parameterised SQL condition over `tumours`.

Everything a researcher writes is checked against the data dictionary and the permit before any
SQL exists: unknown fields, identifiers, values of the wrong type, codes not in the dictionary,
operators that do not fit the field, fields the permit does not allow, trees deeper or larger than
the limits. Column names come only from the dictionary (via `schema.quote`); every value reaches
SQLite as a bound parameter, never as text in the statement.

Semantics (the property test checks them against an independent evaluator): a comparison with a
missing value is false, and `not` selects exactly the rows its subtree does not select, so the
condition is two-valued although SQL's is three-valued. Values are encoded as the store encodes
them (decision D3): codes as ordinals, dates as day numbers, topography as site×10 + subsite.
Ranges on indexed fields compile to `BETWEEN`/`>=`/`<=` so SQLite can use the store's indexes.
A status derived at the query's cutoff (`os_status_at_cutoff`, `rfs_status_at_cutoff`) compiles
to its expression from oncofed.node.store.outcomes, the cutoff bound like every value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from oncofed.dictionary import Dictionary, Field
from oncofed.node.store.encoding import code_ordinals, day_number, topography_code
from oncofed.node.store.outcomes import status_sql
from oncofed.node.store.schema import quote
from oncofed.query import values as V
from oncofed.query.errors import invalid
from oncofed.query.nesting import MAX_COHORT_DEPTH
from oncofed.v1 import query_pb2 as pb

MAX_DEPTH = 8
MAX_NODES = 64
MAX_IN_VALUES = 256
_RANGE_TYPES = frozenset({"integer", "decimal", "date", "morphology"})
_PREFIX_TYPES = frozenset({"topography", "morphology", "icd10"})


@dataclass(frozen=True)
class CompiledCohort:
    """A cohort as SQL: `WHERE {where}` with `params` bound in order."""

    where: str
    params: tuple[Any, ...]
    fields: frozenset[str]
    nodes: int
    depth: int


def compile_cohort(cohort: pb.Cohort | None, dictionary: Dictionary, allowed_fields: frozenset[str] | None,
                   *, exact_dates: bool = False, max_depth: int = MAX_DEPTH,
                   max_nodes: int = MAX_NODES, status_cutoff: dt.date | None = None) -> CompiledCohort:
    """Check and compile a cohort; an absent or empty root selects every tumour.

    `allowed_fields` is the permit's field list; None means the centre's own admin (every
    stored field). `status_cutoff` is the query's cutoff of derived status fields. Raises
    QueryError(INVALID_ARGUMENT) naming the offending part.
    """
    # The contract's limit bounds the recursion below whatever a policy says.
    c = _Compiler(dictionary, allowed_fields, exact_dates, min(max_depth, MAX_COHORT_DEPTH), max_nodes,
                  status_cutoff)
    if cohort is None or cohort.WhichOneof("node") is None:
        return CompiledCohort("1", (), frozenset(), 0, 0)
    sql = c.node(cohort, "cohort", 1)
    return CompiledCohort(sql, tuple(c.params), frozenset(c.fields), c.nodes, c.max_seen)


class _Compiler:
    def __init__(self, d: Dictionary, allowed: Collection[str] | None, exact_dates: bool,
                 max_depth: int, max_nodes: int, status_cutoff: dt.date | None = None) -> None:
        self.d = d
        self.status_cutoff = status_cutoff
        self.allowed = allowed
        self.exact_dates = exact_dates
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.params: list[Any] = []
        self.fields: set[str] = set()
        self.nodes = 0
        self.max_seen = 0

    def node(self, c: pb.Cohort, path: str, depth: int) -> str:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise invalid(path, f"the cohort has more than {self.max_nodes} nodes")
        if depth > self.max_depth:
            raise invalid(path, f"the cohort is nested deeper than {self.max_depth} levels")
        self.max_seen = max(self.max_seen, depth)
        kind = c.WhichOneof("node")
        if kind == "all_of" or kind == "any_of":
            items = getattr(c, kind).items
            word = "and" if kind == "all_of" else "or"
            if not items:
                raise invalid(f"{path}.{word}", "an empty list")
            parts = [self.node(x, f"{path}.{word}[{i}]", depth + 1) for i, x in enumerate(items)]
            return "(" + f" {word.upper()} ".join(parts) + ")"
        if kind == "negate":
            inner = self.node(c.negate, f"{path}.not", depth + 1)
            # NOT of a three-valued condition would drop rows where it is NULL (a missing value):
            # COALESCE makes "not" the complement of the selected rows.
            return f"(NOT COALESCE({inner}, 0))"
        if kind is None:
            raise invalid(path, "an empty cohort node")
        return self.leaf(c, kind, path)

    # ------------------------------------------------------------------ leaves

    def leaf(self, c: pb.Cohort, kind: str, path: str) -> str:
        if kind in ("is_null", "not_null"):
            f = self.field(getattr(c, kind), f"{path}.field")
            return f"{self.column(f, path)} IS {'' if kind == 'is_null' else 'NOT '}NULL"
        msg = getattr(c, kind)
        f = self.field(msg.field, f"{path}.field")
        if f.at_query and kind in ("range", "prefix"):
            raise invalid(path, f"{f.name} is a code field: use equals or in")
        col = self.column(f, path)
        if kind == "equals":
            p = f"{path}.equals"
            if f.type == "date":
                first, last = V.period(msg.value, p, exact_dates=self.exact_dates)
                return self.between(col, day_number(first), day_number(last))
            if f.type == "decimal":
                return self.compare(col, "=", V.decimal(f, msg.value, p))
            return self.compare(col, "=", self.scalar(f, msg.value, p))
        if kind == "in_set":
            return self.in_set(f, col, list(msg.values), f"{path}.in")
        if kind == "range":
            return self.range(f, col, msg, path)
        return self.prefix(f, col, msg.prefix, f"{path}.prefix")

    def field(self, name: str, path: str) -> Field:
        f = V.lookup_field(self.d, name, path, self.allowed)
        self.fields.add(f.name)
        return f

    def column(self, f: Field, path: str) -> str:
        """The field's column, or a derived status' expression — its parameters are bound here,
        before the leaf's values, as the expression comes first in every leaf's text."""
        if not f.at_query:
            return quote(f.name)
        if self.status_cutoff is None:
            raise invalid("status_cutoff", f"{f.name} (at {path}) is derived at the query's status_cutoff: give one")
        sql, params = status_sql(self.d, f.name, day_number(self.status_cutoff))
        self.params.extend(params)
        return sql
    def scalar(self, f: Field, text: str, path: str) -> Any:
        """One value for = and IN, encoded as the store holds it."""
        if f.type == "code":
            return code_ordinals(f)[V.code_value(f, text, path)]
        if f.type == "boolean":
            return int(V.code_value(f, text, path))
        if f.type == "integer":
            return V.integer(f, text, path, check_range=True)
        if f.type == "topography":
            return topography_code(V.topography(self.d, text, path))
        if f.type == "morphology":
            return V.morphology(f, text, path)
        if f.type == "icd10":
            return V.icd10(text, path)
        raise invalid(path, f"'in' does not fit {f.type} field {f.name!r} (use from/to)")

    def in_set(self, f: Field, col: str, values: list[str], path: str) -> str:
        if not values:
            raise invalid(path, "an empty list")
        if len(values) > MAX_IN_VALUES:
            raise invalid(path, f"more than {MAX_IN_VALUES} values")
        if f.type in ("date", "decimal"):
            raise invalid(path, f"'in' does not fit {f.type} field {f.name!r} (use from/to)")
        encoded = list(dict.fromkeys(self.scalar(f, v, f"{path}[{i}]") for i, v in enumerate(values)))
        self.params.extend(encoded)
        return f"{col} IN ({', '.join('?' * len(encoded))})"

    def range(self, f: Field, col: str, r: pb.Range, path: str) -> str:
        if f.type not in _RANGE_TYPES:
            raise invalid(path, f"a range does not fit {f.type} field {f.name!r} (use equals or in)")
        if not r.HasField("lower") and not r.HasField("upper"):
            raise invalid(path, "a range needs 'from', 'to' or both")
        lo = self.bound(f, r.lower, f"{path}.from", upper=False) if r.HasField("lower") else None
        hi = self.bound(f, r.upper, f"{path}.to", upper=True) if r.HasField("upper") else None
        if lo is not None and hi is not None:
            if lo > hi:
                raise invalid(path, f"'from' ({r.lower}) is after 'to' ({r.upper})")
            return self.between(col, lo, hi)
        return self.compare(col, ">=", lo) if lo is not None else self.compare(col, "<=", hi)

    def bound(self, f: Field, text: str, path: str, *, upper: bool) -> int | float:
        if f.type == "date":
            first, last = V.period(text, path, exact_dates=self.exact_dates)
            return day_number(last if upper else first)
        if f.type == "decimal":
            return V.decimal(f, text, path)
        if f.type == "morphology":
            return V.morphology(f, text, path)
        return V.integer(f, text, path, check_range=False)

    def prefix(self, f: Field, col: str, text: str, path: str) -> str:
        if f.type not in _PREFIX_TYPES:
            raise invalid(path, f"a prefix does not fit {f.type} field {f.name!r} "
                          "(prefixes are for topography, morphology and icd10)")
        if f.type == "topography":
            if not V.TOPOGRAPHY_PREFIX.match(text):
                raise invalid(path, f"{text!r} is not a topography prefix (write C5, C50 or C50.4)")
            digits = text[1:].replace(".", "")
            width = 3 - len(digits)          # site*10+subsite has three digits
            lo = int(digits) * 10**width
            return self.between(col, lo, lo + 10**width - 1)
        if f.type == "morphology":
            if not V.MORPHOLOGY_PREFIX.match(text):
                raise invalid(path, f"{text!r} is not a morphology prefix (1–4 digits, e.g. 850)")
            width = 4 - len(text)
            lo = int(text) * 10**width
            return self.between(col, lo, lo + 10**width - 1)
        if not V.ICD10_PREFIX.match(text):
            raise invalid(path, f"{text!r} is not an ICD-10 prefix (write C, C5, C50, D0 or C50.4)")
        # [prefix, prefix with its last character incremented): an index range, and exactly
        # the codes that start with the prefix (codes are [A-Z] digits '.' digit).
        self.params.extend((text, text[:-1] + chr(ord(text[-1]) + 1)))
        return f"({col} >= ? AND {col} < ?)"

    def compare(self, col: str, op: str, value: Any) -> str:
        self.params.append(value)
        return f"{col} {op} ?"

    def between(self, col: str, lo: Any, hi: Any) -> str:
        self.params.extend((lo, hi))
        return f"{col} BETWEEN ? AND ?"
