"""Compiler equivalence: for random cohorts over random synthetic stores, the compiled SQL selects
exactly the tumours that a plain-Python evaluator selects from the decoded rows of
`tumours_labelled`.

The evaluator below is written from the query semantics in docs/queries.md, not from the compiler:
it works on the people-readable values (ISO dates, 'C50.4', code text) with string prefixes and
comparisons, where the compiler works on the store's integer encodings with index ranges.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from oncofed import dictionary as dictmod
from oncofed.node.node import init_node, open_node
from oncofed.node.query.compiler import compile_cohort
from oncofed.query.errors import QueryError
from oncofed.query.textform import cohort_from
from oncofed.synth import write_all

D = dictmod.load()
SEEDS = (5, 23)

CODE_FIELDS = ["sex", "centre_role", "stage_summary", "her2", "er", "grade", "cT", "cN", "pT", "pM", "vital_status",
               "vs_source",
               "surgery", "recurrence_type", "laterality", "disease_free_after_treatment", "basis_of_diagnosis"]
BOOL_FIELDS = ["dco", "y_prefix"]
INT_FIELDS = {"age_at_incidence": (0, 120), "tumour_seq": (1, 99), "birth_year": (1880, 2100)}
DATE_FIELDS = ["incidence_date", "death_date", "surgery_start_date", "first_contact_date", "recurrence_date",
               "vital_status_date", "linkage_closure_date"]


class Stores(list):
    """The stores, with a short repr (hypothesis prints its arguments when reporting)."""

    def __repr__(self) -> str:
        return f"<{len(self)} synthetic stores>"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two synthetic stores (different seeds, centre profiles and sizes): (SQLite conn, decoded rows)."""
    out = Stores()
    for seed in SEEDS:
        root = tmp_path_factory.mktemp(f"store{seed}")
        files = write_all(root / "csv", centres=2, patients=300 + seed * 10, seed=seed, dictionary=D)
        init_node(root / "node", f"centre-{seed}")
        node = open_node(root / "node")
        for f in files:
            node.ingest(f.path)
        cur = node.conn.execute("SELECT * FROM tumours_labelled")
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        out.append((node, rows))
    yield out
    for node, _ in out:
        node.close()


def selected(node, compiled) -> set[str]:
    sql = f"SELECT tumour_id FROM tumours WHERE {compiled.where}"  # noqa: S608 (the compiler's output is the subject)
    return {r[0] for r in node.conn.execute(sql, compiled.params)}


# ------------------------------------------------------------------ the independent evaluator

def _text(f: str, v: object) -> str:
    return f"{v:04d}" if f == "morphology" else str(v)


def evaluate(node: dict, row: dict) -> bool:
    if "and" in node:
        return all(evaluate(x, row) for x in node["and"])
    if "or" in node:
        return any(evaluate(x, row) for x in node["or"])
    if "not" in node:
        return not evaluate(node["not"], row)
    f = node["field"]
    v = row[f]
    if "null" in node:
        return (v is None) == node["null"]
    if v is None:
        return False
    is_date = f in DATE_FIELDS
    if "equals" in node:
        want = node["equals"]
        return v.startswith(want) if is_date else _text(f, v) == want
    if "in" in node:
        return _text(f, v) in node["in"]
    if "prefix" in node:
        return _text(f, v).startswith(node["prefix"])
    ok = True
    if "from" in node:
        lo = node["from"]
        ok &= v[:len(lo)] >= lo if is_date else int(v) >= int(lo)
    if "to" in node:
        hi = node["to"]
        ok &= v[:len(hi)] <= hi if is_date else int(v) <= int(hi)
    return ok


# ------------------------------------------------------------------ random cohorts

def _codes(f):
    return st.sampled_from(list(D.fields[f].codes))


_month = st.builds(lambda y, m: f"{y}-{m:02d}", st.integers(2003, 2027), st.integers(1, 12))
_period = st.one_of(_month, st.integers(2003, 2027).map(str))
_topo = st.sampled_from(["C50.4", "C50.8", "C61.9", "C18.7", "C34.1", "C44.5", "C56.9", "C20.9", "C44.3"])
_morph = st.sampled_from(["8500", "8140", "8070", "8720", "8520", "8041", "9680"])
_icd = st.sampled_from(["C50.4", "C61", "C18.7", "C34.1", "C43.5", "D05.1", "C56", "C20", "D03.9"])


def _leaf_for(f: str):
    if f in CODE_FIELDS:
        return st.one_of(_codes(f).map(lambda v: {"field": f, "equals": v}),
                         st.lists(_codes(f), min_size=1, max_size=3).map(lambda vs: {"field": f, "in": vs}))
    if f in BOOL_FIELDS:
        return st.sampled_from(["0", "1"]).map(lambda v: {"field": f, "equals": v})
    if f in INT_FIELDS:
        lo, hi = INT_FIELDS[f]
        val = st.integers(lo, hi).map(str)
        return st.one_of(val.map(lambda v: {"field": f, "equals": v}),
                         st.lists(val, min_size=1, max_size=3).map(lambda vs: {"field": f, "in": vs}),
                         st.tuples(st.integers(lo - 5, hi), st.integers(0, 40)).map(
                             lambda t: {"field": f, "from": str(t[0]), "to": str(t[0] + t[1])}),
                         val.map(lambda v: {"field": f, "from": v}), val.map(lambda v: {"field": f, "to": v}))
    if f in DATE_FIELDS:
        return st.one_of(_period.map(lambda v: {"field": f, "equals": v}),
                         _period.map(lambda v: {"field": f, "from": v}), _period.map(lambda v: {"field": f, "to": v}),
                         st.tuples(_period, _period).map(sorted).map(
                             lambda t: {"field": f, "from": t[0], "to": t[1]}))
    if f == "topography":
        return st.one_of(_topo.map(lambda v: {"field": f, "equals": v}),
                         st.lists(_topo, min_size=1, max_size=3).map(lambda vs: {"field": f, "in": vs}),
                         st.tuples(_topo, st.sampled_from([2, 3, 5])).map(
                             lambda t: {"field": f, "prefix": t[0][:t[1]]}))
    if f == "morphology":
        return st.one_of(_morph.map(lambda v: {"field": f, "equals": v}),
                         st.tuples(_morph, st.integers(1, 4)).map(lambda t: {"field": f, "prefix": t[0][:t[1]]}),
                         st.tuples(st.integers(8000, 9900), st.integers(0, 600)).map(
                             lambda t: {"field": f, "from": str(t[0]), "to": str(min(t[0] + t[1], 9993))}))
    return st.one_of(_icd.map(lambda v: {"field": f, "equals": v}),
                     st.lists(_icd, min_size=1, max_size=3).map(lambda vs: {"field": f, "in": vs}),
                     st.tuples(_icd, st.integers(1, 5)).map(lambda t: {"field": f, "prefix": t[0][:t[1]]}))


ALL_FIELDS = [*CODE_FIELDS, *BOOL_FIELDS, *INT_FIELDS, *DATE_FIELDS, "topography", "morphology", "icd10"]
_null = st.tuples(st.sampled_from(ALL_FIELDS), st.booleans()).map(lambda t: {"field": t[0], "null": t[1]})
_leaf = st.one_of(st.sampled_from(ALL_FIELDS).flatmap(_leaf_for), _null)
_tree = st.recursive(_leaf, lambda kids: st.one_of(
    st.lists(kids, min_size=1, max_size=4).map(lambda xs: {"and": xs}),
    st.lists(kids, min_size=1, max_size=4).map(lambda xs: {"or": xs}),
    kids.map(lambda x: {"not": x})), max_leaves=10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(cohort=_tree, which=st.integers(0, len(SEEDS) - 1))
def test_compiled_sql_selects_exactly_what_the_evaluator_selects(stores, cohort, which):
    node, rows = stores[which]
    try:
        compiled = compile_cohort(cohort_from(cohort, "cohort"), D, None)
    except QueryError as exc:
        assume("deeper than" not in exc.message and "more than" not in exc.message)
        raise
    got = selected(node, compiled)
    want = {r["tumour_id"] for r in rows if evaluate(cohort, r)}
    assert got == want


def test_the_stores_are_varied(stores):
    """The equivalence test means little on data without missing values, several sites, both roles."""
    for _, rows in stores:
        assert len(rows) > 500
        assert any(r["pT"] is None for r in rows) and any(r["her2"] == "pos" for r in rows)
        assert len({r["topography"][:3] for r in rows}) > 5
        assert {r["centre_role"] for r in rows} >= {"diagnosed_here", "referred"}


def test_evaluator_and_sql_agree_on_a_hand_written_cohort(stores):
    node, rows = stores[0]
    cohort = {"and": [{"field": "topography", "prefix": "C50"}, {"field": "incidence_date", "from": "2018-01"},
                      {"not": {"field": "pT", "in": ["T1c", "T2"]}}]}
    compiled = compile_cohort(cohort_from(cohort, "cohort"), D, None)
    got = selected(node, compiled)
    want = {r["tumour_id"] for r in rows if evaluate(cohort, r)}
    assert got == want and len(want) > 10
    assert any(r["pT"] is None for r in rows if r["tumour_id"] in want)   # `not` keeps missing values
