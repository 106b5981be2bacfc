"""The text form of a query: JSON and TOML parse to the same QueryBody, errors name the offending
part, and a body written back to text parses to itself."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed import dictionary as dictmod
from oncofed.query import QueryError, loads, to_mapping
from oncofed.query.textform import from_mapping
from oncofed.v1 import query_pb2 as pb

D = dictmod.load()

EXAMPLE = {
    "cohort": {"and": [{"field": "topography", "prefix": "C50"}, {"field": "incidence_date", "from": "2018-01"},
                       {"field": "her2", "in": ["pos"]}]},
    "analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}},
}

TOML = """
[analysis.kaplan_meier]
outcome = "OS"
cutoff = 2025-12-31
by = "stage_summary"

[[cohort.and]]
field = "topography"
prefix = "C50"

[[cohort.and]]
field = "incidence_date"
from = "2018-01"

[[cohort.and]]
field = "her2"
in = ["pos"]
"""


def test_json_example_from_the_brief_parses_to_the_expected_message():
    body = loads(json.dumps(EXAMPLE))
    items = body.cohort.all_of.items
    assert items[0].prefix == pb.Prefix(field="topography", prefix="C50")
    assert items[1].range.lower == "2018-01" and not items[1].range.HasField("upper")
    assert list(items[2].in_set.values) == ["pos"]
    km = body.analysis.kaplan_meier
    assert (km.outcome, km.cutoff, km.group_by) == (pb.OUTCOME_OS, "2025-12-31", "stage_summary")


def test_toml_and_json_give_the_same_body():
    assert loads(TOML) == loads(json.dumps(EXAMPLE))


def test_dictionary_reference_is_filled_from_the_loaded_dictionary():
    body = loads('{"analysis": "count"}', dictionary=D)
    assert (body.dictionary.name, body.dictionary.version) == (D.name, D.version)
    assert body.analysis.WhichOneof("kind") == "count"


@pytest.mark.parametrize(("doc", "path"), [
    ({"cohort": {"and": [{"field": "sex", "equals": "2"}, {"field": "her2", "in": "pos"}]}, "analysis": "count"},
     "cohort.and[1].in"),
    ({"cohort": {"or": [{"field": "sex"}]}, "analysis": "count"}, "cohort.or[0]"),
    ({"cohort": {"not": {"field": "sex", "equals": "2", "in": ["1"]}}, "analysis": "count"}, "cohort.not"),
    ({"cohort": {"field": "sex", "equal": "2"}, "analysis": "count"}, "cohort"),
    ({"cohort": {"and": []}, "analysis": "count"}, "cohort.and"),
    ({"cohort": {"and": [{"field": "er", "in": ["pos", {"x": 1}]}]}, "analysis": "count"}, "cohort.and[0].in[1]"),
    ({"analysis": {"kaplan_meier": {"outcome": "PFS", "cutoff": "2025-12-31"}}}, "analysis.kaplan_meier.outcome"),
    ({"analysis": {"crosstab": {"fields": "sex"}}}, "analysis.crosstab.fields"),
    ({"analysis": {"median": {}}}, "analysis"),
    ({"cohort": {"field": "sex", "equals": "2"}}, "analysis"),
    ({"analysis": "count", "nonce": "00ff"}, "nonce"),
    ({"analysis": "count", "colour": "red"}, "query"),
])
def test_errors_name_the_offending_part(doc, path):
    with pytest.raises(QueryError) as exc:
        from_mapping(doc)
    assert exc.value.code == "INVALID_ARGUMENT"
    assert exc.value.path == path, exc.value.message


def test_malformed_json_and_toml_are_query_errors():
    with pytest.raises(QueryError, match="not valid JSON"):
        loads('{"analysis": ')
    with pytest.raises(QueryError, match="not valid TOML"):
        loads("analysis = [")


def test_numbers_and_booleans_become_dictionary_text():
    body = from_mapping({"cohort": {"and": [{"field": "age_at_incidence", "from": 50, "to": 69},
                                            {"field": "dco", "equals": False}]}, "analysis": "count"})
    rng, eq = body.cohort.all_of.items
    assert (rng.range.lower, rng.range.upper, eq.equals.value) == ("50", "69", "0")


_leaf = st.one_of(
    st.builds(lambda f, v: {"field": f, "equals": v}, st.sampled_from(["sex", "her2", "er"]), st.text(max_size=5)),
    st.builds(lambda f, v: {"field": f, "in": v}, st.sampled_from(["grade", "cT"]),
              st.lists(st.text(max_size=4), min_size=1, max_size=3)),
    st.builds(lambda v: {"field": "topography", "prefix": v}, st.sampled_from(["C5", "C50", "C50.4"])),
    st.builds(lambda lo: {"field": "incidence_date", "from": lo}, st.sampled_from(["2018-01", "2019"])),
    st.builds(lambda hi: {"field": "age_at_incidence", "to": hi}, st.sampled_from(["70", "80"])),
    st.builds(lambda b: {"field": "er", "null": b}, st.booleans()),
)
_tree = st.recursive(_leaf, lambda kids: st.one_of(
    st.builds(lambda xs: {"and": xs}, st.lists(kids, min_size=1, max_size=3)),
    st.builds(lambda xs: {"or": xs}, st.lists(kids, min_size=1, max_size=3)),
    st.builds(lambda x: {"not": x}, kids)), max_leaves=8)
_analysis = st.sampled_from([
    {"count": {}}, {"crosstab": {"fields": ["sex", "her2"]}}, {"histogram": {"field": "age_at_incidence"}},
    {"summary": {"field": "age_at_incidence", "scale_bits": 4, "bound": 100.0, "unit_bins": True,
                 "quantiles": [0.5]}},
    {"logrank": {"outcome": "RFS", "cutoff": "2024-06-30", "step_days": 7, "horizon_days": 700, "by": "er"}},
])


@settings(max_examples=60, deadline=None)
@given(_tree, _analysis, st.integers(0, 2**40), st.binary(min_size=16, max_size=16))
def test_text_form_round_trips(cohort, analysis, issued, nonce):
    doc = {"cohort": cohort, "analysis": analysis, "issued_at": issued, "nonce": nonce.hex(), "targets": ["centre-a"]}
    body = from_mapping(doc)
    assert from_mapping(to_mapping(body)) == body
    assert from_mapping(json.loads(json.dumps(to_mapping(body)))) == body


def test_one_text_one_serialisation_even_with_explicit_defaults():
    """Sub-messages are always set, so an explicit 0 and an omitted key give the same bytes (and
    so the same preview hash), and the text form round-trips."""
    plain = loads('{"analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31"}}}')
    zero = loads('{"analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "step_days": 0}}}')
    assert plain.SerializeToString() == zero.SerializeToString()
    assert from_mapping(to_mapping(zero)) == zero
    summary = loads('{"analysis": {"summary": {"field": "age_at_incidence", "bound": 0}}}')
    assert summary.analysis.summary.HasField("fixed_point")
    assert from_mapping(to_mapping(summary)) == summary


def test_unknown_analysis_keys_are_named_whatever_their_order():
    for text in ('{"analysis": {"count": {"zz": 1, "aa": 2}}}', '{"analysis": {"count": {"aa": 2, "zz": 1}}}'):
        with pytest.raises(QueryError, match="unknown key 'aa'"):
            loads(text)
    with pytest.raises(QueryError, match="give 'by' or 'group_by', not both"):
        loads('{"analysis": {"kaplan_meier": {"group_by": "sex", "by": "er", "outcome": "OS", '
              '"cutoff": "2025-12-31"}}}')
