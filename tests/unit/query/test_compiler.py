"""The cohort compiler refuses everything that does not fit the dictionary or the permit, names the
offending part, and never puts a researcher's text into SQL."""

from __future__ import annotations

import sqlite3

import pytest

from oncofed import dictionary as dictmod
from oncofed.node.query.compiler import compile_cohort
from oncofed.node.store.schema import create_tumour_table
from oncofed.query import QueryError
from oncofed.query.textform import cohort_from

D = dictmod.load()


def compile_text(node, allowed=None, **kw):
    return compile_cohort(cohort_from(node, "cohort"), D, allowed, **kw)


@pytest.mark.parametrize(("node", "path", "fragment"), [
    ({"field": "colour", "equals": "red"}, "cohort.field", "unknown field"),
    ({"field": "birth_date", "from": "1960"}, "cohort.field", "unknown field"),
    ({"field": "patient_pid", "equals": "ab"}, "cohort.field", "identifier"),
    ({"field": "age_at_incidence", "equals": "old"}, "cohort.equals", "not an integer"),
    ({"field": "age_at_incidence", "in": ["50", "130"]}, "cohort.in[1]", "outside"),
    ({"field": "her2", "prefix": "p"}, "cohort.prefix", "prefix does not fit code"),
    ({"field": "stage_summary", "from": "localised"}, "cohort", "range does not fit code"),
    ({"field": "incidence_date", "in": ["2018-01"]}, "cohort.in", "does not fit date"),
    ({"and": [{"field": "sex", "equals": "2"}, {"field": "her2", "in": ["pos", "maybe"]}]},
     "cohort.and[1].in[1]", "not a code of her2"),
    ({"field": "topography", "equals": "C50.7"}, "cohort.equals", "not an ICD-O-3 topography"),
    ({"field": "topography", "prefix": "C5%"}, "cohort.prefix", "not a topography prefix"),
    ({"field": "icd10", "prefix": "C50' OR 1=1 --"}, "cohort.prefix", "not an ICD-10 prefix"),
    ({"field": "morphology", "equals": "850"}, "cohort.equals", "morphology"),
    ({"field": "incidence_date", "from": "2018-03-02"}, "cohort.from", "to the day"),
    ({"field": "incidence_date", "from": "2018-13"}, "cohort.from", "not a calendar date"),
    ({"field": "incidence_date", "from": "2019", "to": "2018"}, "cohort", "after"),
    ({"not": {"or": [{"field": "dco", "equals": "maybe"}]}}, "cohort.not.or[0].equals", "boolean"),
])
def test_refusals_name_the_offending_part(node, path, fragment):
    with pytest.raises(QueryError) as exc:
        compile_text(node)
    assert exc.value.code == "INVALID_ARGUMENT"
    assert exc.value.path == path and fragment in exc.value.message, exc.value.message


def test_fields_outside_the_permit_are_refused_and_none_means_the_local_admin():
    node = {"and": [{"field": "sex", "equals": "2"}, {"field": "er", "equals": "pos"}]}
    with pytest.raises(QueryError) as exc:
        compile_text(node, allowed=frozenset({"sex"}))
    assert exc.value.path == "cohort.and[1].field" and "not allowed by the permit" in exc.value.message
    assert compile_text(node, allowed=frozenset({"sex", "er"})).fields == {"sex", "er"}
    assert compile_text(node, allowed=None).fields == {"sex", "er"}
    with pytest.raises(QueryError):
        compile_text(node, allowed=frozenset())     # an empty allow-list allows nothing


def test_depth_and_size_limits():
    deep = {"field": "sex", "equals": "2"}
    for _ in range(8):
        deep = {"not": deep}
    with pytest.raises(QueryError, match="deeper than 8") as exc:
        compile_text(deep)
    assert exc.value.path == "cohort" + ".not" * 8
    assert compile_text(deep["not"]).depth == 8
    wide = {"or": [{"field": "sex", "equals": "2"}] * 64}
    with pytest.raises(QueryError, match="more than 64 nodes") as exc:
        compile_text(wide)
    assert exc.value.path == "cohort.or[63]"  # the root is node 1
    assert compile_text({"or": [{"field": "sex", "equals": "2"}] * 63}).nodes == 64


def test_values_are_bound_parameters_and_identifiers_come_from_the_dictionary():
    c = compile_text({"and": [{"field": "icd10", "prefix": "C50"}, {"field": "her2", "in": ["pos", "low"]},
                              {"field": "incidence_date", "from": "2018-01", "to": "2018-12"},
                              {"field": "topography", "prefix": "C5"}]})
    assert "C50" not in c.where and "pos" not in c.where and "2018" not in c.where
    assert c.where.count("?") == len(c.params)
    assert c.params == ("C50", "C51", 3, 2, 17532, 17896, 500, 599)
    conn = sqlite3.connect(":memory:")
    create_tumour_table(conn, D)
    sql = f"EXPLAIN QUERY PLAN SELECT count(*) FROM tumours WHERE {c.where}"  # noqa: S608 (compiled, bound)
    plan = " ".join(r[3] for r in conn.execute(sql, c.params))
    assert "USING" in plan and "INDEX" in plan   # the cohort is answered through an index


def test_exact_dates_flag_allows_days():
    c = compile_text({"field": "incidence_date", "equals": "2018-03-02"}, exact_dates=True)
    assert c.params == (17592, 17592)
    assert compile_text({"field": "incidence_date", "equals": "2018-02"}).params == (17563, 17590)


def test_empty_cohort_selects_everything():
    assert compile_cohort(None, D, frozenset()).where == "1"
