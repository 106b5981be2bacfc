"""Survival options in the contract: group levels (text form, parsing, answer size), the status
cutoff, and what a permit must say about outcomes and field names."""

from __future__ import annotations

import pytest

from oncofed import dictionary as dictmod
from oncofed.analyses import Grants, analysis, parse_analysis
from oncofed.query import QueryError, loads, to_mapping
from oncofed.query.textform import from_mapping
from oncofed.query.vector import n_total

D = dictmod.load()
LR = {"outcome": "OS", "cutoff": "2025-12-31", "by": "grade"}


def spec_of(doc):
    return parse_analysis(from_mapping({"analysis": doc}).analysis, D)


def test_levels_are_written_as_text_or_numbers_and_round_trip():
    body = loads('status_cutoff = 2024-06-30\n[analysis.logrank]\noutcome = "RFS"\ncutoff = 2025-12-31\n'
                 'by = "grade"\nlevels = [3, 1]\n')
    assert list(body.analysis.logrank.group_levels) == ["3", "1"] and body.status_cutoff == "2024-06-30"
    text = to_mapping(body)
    assert text["analysis"]["logrank"]["levels"] == ["3", "1"] and text["status_cutoff"] == "2024-06-30"
    assert from_mapping(text) == body


def test_levels_choose_the_groups_in_the_order_given():
    every = spec_of({"logrank": LR})
    assert every.groups == (*D.fields["grade"].codes, "(missing)") and not every.levels_chosen
    two = spec_of({"logrank": {**LR, "levels": ["3", "(missing)"]}})
    assert two.groups == ("3", "(missing)") and two.positions == (2, 9) and two.levels_chosen
    assert two.n_values == 3 * two.n_edges * 2 + 1
    assert [two.group_index(p) for p in (2, None, 0, 8)] == [0, 1, None, None]
    assert every.group_index(None) == 9 and every.group_index(4) == 4
    boolean = spec_of({"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "dco", "levels": ["true"]}})
    assert boolean.groups == ("1",)


@pytest.mark.parametrize(("doc", "path", "match"), [
    ({"logrank": {**LR, "levels": ["1", "x"]}}, "analysis.logrank.group_levels[1]", "not a code of grade"),
    ({"logrank": {**LR, "levels": ["1", "1"]}}, "analysis.logrank.group_levels[1]", "named twice"),
    ({"logrank": {**LR, "levels": ["1"]}}, "analysis.logrank.group_levels", "at least two"),
    ({"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "levels": ["1"]}},
     "analysis.kaplan_meier.group_levels", "need a group_by"),
])
def test_bad_levels_are_refused_naming_the_part(doc, path, match):
    with pytest.raises(QueryError, match=match) as exc:
        spec_of(doc)
    assert exc.value.path == path


def test_levels_bring_a_one_day_log_rank_by_grade_under_the_answer_cap():
    day = {**LR, "step_days": 1, "horizon_days": 7700}
    assert n_total(spec_of({"logrank": day})) > 50_000                 # every code + missing: 10 groups
    assert n_total(spec_of({"logrank": {**day, "levels": ["1", "3"]}})) < 50_000


def test_a_survival_analysis_needs_its_outcome_in_the_permit():
    spec = spec_of({"kaplan_meier": {"outcome": "RFS", "cutoff": "2025-12-31"}})
    km = analysis("kaplan_meier")
    km.check(spec, D, Grants(local_admin=False, outcomes=frozenset({"rfs"})))
    with pytest.raises(QueryError, match="outcome RFS") as exc:
        km.check(spec, D, Grants(local_admin=False, outcomes=frozenset({"os"})))
    assert exc.value.code == "PERMISSION_DENIED" and exc.value.path == "analysis.kaplan_meier.outcome"
    km.check(spec, D, Grants(local_admin=True, outcomes=frozenset()))       # the centre's own admin


def test_status_fields_are_queryable_codes_never_stored():
    for name, outcome in (("os_status_at_cutoff", "os"), ("rfs_status_at_cutoff", "rfs")):
        f = D.fields[name]
        assert f.at_query == outcome and f.queryable and not f.store and not f.input and f.is_categorical
        assert name not in {g.name for g in D.stored_fields} | {g.name for g in D.input_fields}
    assert list(D.fields["os_status_at_cutoff"].codes) == ["dead", "alive", "censored"]
    assert list(D.fields["rfs_status_at_cutoff"].codes) == ["recurrence", "death", "event_free", "censored"]


def test_a_derived_at_query_field_must_be_a_code_that_is_neither_read_nor_stored():
    ext = b'[extension]\nname = "x"\nversion = "1"\n[[field]]\nname = "bad"\ntype = "integer"\nat_query = "os"\n' \
          b'input = false\nstore = false\ndescription = "d"\n'
    with pytest.raises(dictmod.DictionaryError, match="derived at query time"):
        dictmod.load(ext)


def test_the_outcomes_a_query_follows_are_found_by_type_and_from_status_fields():
    from oncofed.query.references import referenced_fields, referenced_outcomes

    km = from_mapping({"analysis": {"kaplan_meier": {"outcome": "RFS", "cutoff": "2025-12-31", "by": "cT"}}})
    assert referenced_outcomes(km, D) == {"rfs"} and referenced_fields(km) == {"cT"}
    status = from_mapping({"status_cutoff": "2024-06", "analysis": {"crosstab": {"fields": ["sex"]}},
                           "cohort": {"not": {"field": "os_status_at_cutoff", "equals": "dead"}}})
    assert referenced_outcomes(status, D) == {"os"}
    both = from_mapping({"status_cutoff": "2024-06", "analysis": {"logrank": {
        "outcome": "OS", "cutoff": "2025-12-31", "by": "sex"}},
        "cohort": {"field": "rfs_status_at_cutoff", "in": ["recurrence", "death"]}})
    assert referenced_outcomes(both, D) == {"os", "rfs"}
    assert referenced_outcomes(from_mapping({"analysis": "count"}), D) == set()


def test_a_status_field_cannot_group_a_survival_analysis():
    with pytest.raises(QueryError, match="outcome's own status") as exc:
        spec_of({"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "os_status_at_cutoff"}})
    assert exc.value.path == "analysis.kaplan_meier.group_by"
