"""The event status at the query's cutoff as a categorical (os_status_at_cutoff,
rfs_status_at_cutoff) on a real node: the SQL equals the rules written out here in Python, in
cohorts and crosstabs; a crosstab's deaths are a Kaplan–Meier curve's events; a permit must list
the field and allow its outcome, and the verifier refuses a survival outcome the permit lacks."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from node_fed_helpers import make_fed, query_body, signed

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise_query
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.node.verify import QueryVerifier, RequestRefused
from oncofed.query import QueryError
from oncofed.query.textform import analysis_from, cohort_from, from_mapping
from oncofed.synth import write_all

D = dictmod.load()
EXACT = NodePolicy(mode="none", max_values=400_000)


@pytest.fixture(scope="module")
def centre(tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    f = write_all(root / "csv", centres=1, patients=600, seed=42, dictionary=D)[0]
    node = open_node(init_node(root / "node", "centre-s").root)
    node.ingest(f.path)
    cur = node.conn.execute("SELECT * FROM tumours_labelled")
    names = [c[0] for c in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    yield node, rows
    node.close()


def _day(s):
    return dt.date.fromisoformat(s) if s else None


def os_status(r, c):
    """The OS status rules, written out independently of the SQL."""
    if _day(r["incidence_date"]) > c:
        return "(missing)"
    death = _day(r["death_date"])
    if death and death <= c:
        return "dead"
    last = _day(r["linkage_closure_date"]) if r["vs_source"] == "passive" and r["linkage_closure_date"] \
        else _day(r["vital_status_date"])
    return "alive" if last >= c else "censored"


def rfs_status(r, c):
    surgery = _day(r["surgery_start_date"])
    if r["disease_free_after_treatment"] != "yes" or surgery is None or surgery > c:
        return "(missing)"
    rec, death = _day(r["recurrence_date"]), _day(r["death_date"])
    if rec and rec <= c and (death is None or death > c or rec <= death):
        return "recurrence"
    if death and death <= c:
        return "death"
    end = _day(r["last_disease_assessment_date"]) or (_day(r["vital_status_date"]) if r["vs_source"] != "passive"
                                                      else None)
    if end is None:
        return "(missing)"
    return "event_free" if end >= c else "censored"


def run(node, doc, policy=EXACT, permit=None):
    body = from_mapping(doc, dictionary=D)
    return finalise_query(body, D, answer(node, body, permit, policy=policy).vector)


@pytest.mark.parametrize("cutoff", ["2019-06", "2023-12"])
def test_status_fields_equal_the_rules_in_crosstabs_and_cohorts(centre, cutoff):
    node, rows = centre
    y, m = map(int, cutoff.split("-"))
    c = (dt.date(y + m // 12, m % 12 + 1, 1) - dt.timedelta(days=1))           # the month's last day
    out = run(node, {"status_cutoff": cutoff,
                     "analysis": {"crosstab": {"fields": ["os_status_at_cutoff", "rfs_status_at_cutoff"]}}})
    got = {(x["levels"]["os_status_at_cutoff"], x["levels"]["rfs_status_at_cutoff"]): x["count"]
           for x in out["cells"] if x["count"]}
    want = Counter((os_status(r, c), rfs_status(r, c)) for r in rows)
    assert got == dict(want) and len(want) >= 6
    dead = run(node, {"status_cutoff": cutoff, "analysis": "count",
                      "cohort": {"field": "os_status_at_cutoff", "equals": "dead"}})["count"]
    assert dead == sum(1 for r in rows if os_status(r, c) == "dead") > 0
    not_dead = run(node, {"status_cutoff": cutoff, "analysis": "count",
                          "cohort": {"not": {"field": "os_status_at_cutoff", "equals": "dead"}}})["count"]
    assert not_dead == len(rows) - dead                                       # missing included
    missing = run(node, {"status_cutoff": cutoff, "analysis": "count",
                         "cohort": {"field": "rfs_status_at_cutoff", "null": True}})["count"]
    assert missing == sum(1 for r in rows if rfs_status(r, c) == "(missing)")


def test_a_crosstab_of_deaths_is_the_kaplan_meier_count_of_events(centre):
    """Same rules in both: among first primaries diagnosed here (no left truncation), not DCO,
    the deaths by the cutoff are the KM curve's events over a horizon past every follow-up."""
    node, _ = centre
    cohort = {"and": [{"field": "tumour_seq", "equals": "1"}, {"field": "dco", "equals": "0"},
                      {"field": "centre_role", "equals": "diagnosed_here"}]}
    for outcome, field, events in (("OS", "os_status_at_cutoff", ("dead",)),
                                   ("RFS", "rfs_status_at_cutoff", ("recurrence", "death"))):
        km = run(node, {"cohort": cohort, "analysis": {"kaplan_meier": {
            "outcome": outcome, "cutoff": "2022-12-31", "horizon_days": 36_000, "step_days": 90}}})
        table = run(node, {"cohort": cohort, "status_cutoff": "2022-12",
                           "analysis": {"crosstab": {"fields": [field]}}})
        counted = sum(table["margins"][field][e] for e in events)
        assert sum(p["events"] for p in km["curves"]["all"]["points"]) == counted > 10


def test_status_fields_need_a_cutoff_a_code_operator_and_the_permit(centre):
    node, _ = centre

    class Permit:
        permit_id, min_cell_count, epsilon, allow_exact_dates = "p-1", 5, None, False
        allowed_analyses = ("count", "crosstab", "kaplan_meier")
        allowed_fields = ("sex", "os_status_at_cutoff", "rfs_status_at_cutoff")
        allowed_outcomes: tuple[str, ...] = ("os",)

    def refused(doc, permit=None):
        with pytest.raises(QueryError) as exc:
            answer(node, from_mapping(doc, dictionary=D), permit, policy=NodePolicy())
        return exc.value

    crosstab = {"analysis": {"crosstab": {"fields": ["os_status_at_cutoff"]}}}
    assert refused(crosstab).path == "status_cutoff"
    assert refused({"analysis": "count", "cohort": {"field": "os_status_at_cutoff", "equals": "dead"}}).path \
        == "status_cutoff"
    assert "YYYY-MM" in refused({**crosstab, "status_cutoff": "2024-06-30"}).message   # days need exact_dates
    assert "equals or in" in refused({"analysis": "count", "status_cutoff": "2024-06", "cohort": {
        "field": "os_status_at_cutoff", "from": "dead"}}).message
    answer(node, from_mapping({**crosstab, "status_cutoff": "2024-06"}, dictionary=D), Permit(), policy=NodePolicy())
    rfs = refused({"analysis": {"crosstab": {"fields": ["rfs_status_at_cutoff"]}}, "status_cutoff": "2024-06"},
                  Permit())
    assert rfs.code == "PERMISSION_DENIED" and "outcome RFS" in rfs.message
    km = refused({"analysis": {"kaplan_meier": {"outcome": "RFS", "cutoff": "2024-06-30"}}}, Permit())
    assert km.code == "PERMISSION_DENIED" and km.path == "analysis.kaplan_meier.outcome"


def test_the_verifier_refuses_an_outcome_the_permit_does_not_allow(tmp_path):
    fed = make_fed(tmp_path, centres=("centre-a",), researchers=("res-1",))
    node = open_node(init_node(tmp_path / "a", "centre-a").root)
    trust = fed.attach(node.paths.store, "centre-a")
    sha = fed.permit(trust, analyses=["count", "kaplan_meier"], outcomes=["os"],
                     fields=["sex", "topography", "cT", "rfs_status_at_cutoff"])
    trust.close()
    verifier = QueryVerifier.for_node(node)
    try:
        def verify(analysis, status=False):
            body = query_body(sha, targets=("centre-a",))         # a cohort on sex and topography
            body.analysis.CopyFrom(analysis_from(analysis, "analysis"))
            if status:
                body.status_cutoff = "2024-06"
                body.cohort.all_of.items.add().CopyFrom(cohort_from(
                    {"field": "rfs_status_at_cutoff", "equals": "recurrence"}, "cohort"))
            return verifier.verify(signed(fed.identities["res-1"], body))

        assert verify({"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "cT"}}).fields == \
            ("cT", "sex", "topography")                                      # cT is permitted as written
        with pytest.raises(RequestRefused) as exc:
            verify({"kaplan_meier": {"outcome": "RFS", "cutoff": "2025-12-31"}})
        assert exc.value.reason == "outcome_not_allowed" and exc.value.public_message() == "declined: POLICY"
        with pytest.raises(RequestRefused) as exc:                  # the field is listed, its outcome not
            verify("count", status=True)
        assert exc.value.reason == "outcome_not_allowed"
    finally:
        verifier.close()
        node.close()
