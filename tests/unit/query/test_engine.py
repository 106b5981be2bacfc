"""The engine's gate: what a permit and the centre's policy allow, checked before any row is read;
differential privacy charged before release; rate limits; k from the permit only tightens."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from conftest import valid_row, write_csv

from oncofed.analyses import finalise_query
from oncofed.node.node import open_node
from oncofed.node.query import engine
from oncofed.node.query.policy import NodePolicy
from oncofed.node.store.budgets import PrivacyLedger
from oncofed.query import QueryError, decode
from oncofed.query.textform import from_mapping

ALL = ("count", "crosstab", "summary", "histogram", "kaplan_meier", "logrank")


@dataclass(frozen=True)
class Permit:
    permit_id: str = "proj-1"
    allowed_analyses: tuple[str, ...] = ALL
    allowed_fields: tuple[str, ...] = ("sex", "her2", "topography", "incidence_date", "age_at_incidence",
                                       "stage_summary")
    min_cell_count: int = 5
    epsilon: float | None = None
    allow_exact_dates: bool = False
    allowed_outcomes: tuple[str, ...] = ("os", "rfs")


@pytest.fixture
def node(node_dir, tmp_path):
    rows = [valid_row(i, her2=("pos", "neg", "low")[i % 3], sex="2",
                      incidence_date=f"{2009 + i % 9}-0{1 + i % 9}-15") for i in range(1, 61)]
    rows[0]["her2"] = "unknown"
    n = open_node(node_dir)
    n.ingest(write_csv(tmp_path / "rows.csv", rows))
    yield n
    n.close()


def body(doc):
    from oncofed import dictionary as dictmod

    return from_mapping(doc, dictionary=dictmod.load())


def refuse(node, doc, permit, code, policy=None, match=None):
    with pytest.raises(QueryError, match=match) as exc:
        engine.answer(node, body(doc), permit, policy=policy or NodePolicy())
    assert exc.value.code == code, exc.value.message
    return exc.value


@pytest.fixture
def no_sql(monkeypatch):
    """Fail the test if a refused query reaches the data."""
    def boom(*a, **k):
        raise AssertionError("computed before refusing")
    monkeypatch.setattr(engine.StoreReader, "groups", boom)
    monkeypatch.setattr(engine.StoreReader, "survival", boom)


def test_refusals_come_before_any_row_is_read(node, no_sql):
    p = Permit()
    refuse(node, {"analysis": "count"}, dataclasses.replace(p, allowed_analyses=("crosstab",)), "PERMISSION_DENIED")
    e = refuse(node, {"cohort": {"field": "er", "equals": "pos"}, "analysis": "count"}, p, "INVALID_ARGUMENT")
    assert e.path == "cohort.field"
    e = refuse(node, {"analysis": {"crosstab": {"fields": ["her2", "er"]}}}, p, "INVALID_ARGUMENT")
    assert e.path == "analysis.crosstab.fields[1]"
    refuse(node, {"cohort": {"field": "incidence_date", "from": "2018-01-02"}, "analysis": "count",
                  "exact_dates": True}, p, "PERMISSION_DENIED", match="exact dates")
    km = {"outcome": "OS", "cutoff": "2025-12-31"}
    refuse(node, {"analysis": {"kaplan_meier": {**km, "step_days": 1}}},
           dataclasses.replace(p, allow_exact_dates=True), "PERMISSION_DENIED", match="1-day lattice")
    refuse(node, {"analysis": {"kaplan_meier": {**km, "step_days": 7}}}, p, "PERMISSION_DENIED", match="at least 30")
    refuse(node, {"analysis": {"kaplan_meier": {**km, "step_days": 1, "horizon_days": 36000}}}, None,
           "RESOURCE_EXHAUSTED", match="at most 50000")
    refuse(node, {"analysis": "count", "epsilon": 0.5}, p, "INVALID_ARGUMENT", match="no privacy budget")
    refuse(node, {"analysis": "count"}, dataclasses.replace(p, epsilon=1.0), "INVALID_ARGUMENT", match="state the ε")
    refuse(node, {"analysis": "count"}, p, "PERMISSION_DENIED", NodePolicy(allowed_analyses=("crosstab",)))
    refuse(node, {"analysis": "count"}, p, "FAILED_PRECONDITION", NodePolicy(mode="none"), match="local admin")
    refuse(node, {"analysis": "count", "dictionary": {"name": "oncofed-core", "version": "0.9"}}, p,
           "FAILED_PRECONDITION", match="dictionary")
    refuse(node, {"analysis": {"summary": {"field": "age_at_incidence", "bound": 1e12, "scale_bits": 64}}}, p,
           "OUT_OF_RANGE", match="overflow")


def test_the_local_admin_may_use_every_field_and_exact_times(node):
    ans = engine.answer(node, body({"cohort": {"field": "er", "equals": "pos"}, "analysis": {"kaplan_meier": {
        "outcome": "OS", "cutoff": "2025-12-31", "step_days": 1, "horizon_days": 3000}}}), None,
        policy=NodePolicy(mode="none"))
    assert ans.analysis == "kaplan_meier" and len(ans.vector) == 3 * 3001 + 1 + 3


def test_a_permit_can_only_tighten_k(node):
    doc = {"analysis": {"crosstab": {"fields": ["her2"]}}}
    loose = engine.answer(node, body(doc), Permit(min_cell_count=1), policy=NodePolicy(mode="threshold",
                                                                                         min_cell_count=1))
    assert [decode(v) for v in loose.vector] == [19, 20, 20, 1, 0, 1, 0]     # neg, low, pos, unknown, missing
    assert loose.meta["k"] == 1
    strict = engine.answer(node, body(doc), Permit(min_cell_count=2), policy=NodePolicy(mode="threshold",
                                                                                          min_cell_count=1))
    assert strict.vector == [0, 0, 0, 0, 0, 1, 1] and strict.meta["k"] == 2
    assert (strict.cells_suppressed, loose.cells_suppressed) == (5, 0)      # what the audit log records
    node_wins = engine.answer(node, body(doc), Permit(min_cell_count=1), policy=NodePolicy(mode="threshold",
                                                                                             min_cell_count=2))
    assert node_wins.vector == strict.vector


def test_rate_limit_applies_to_permit_holders(node):
    policy = NodePolicy(rate_per_minute=2)
    q = body({"analysis": "count", "researcher_key_id": "alice"})
    for _ in range(2):
        engine.answer(node, q, Permit(), policy=policy, now=5_000)
    refuse_now = pytest.raises(QueryError, match="per minute")
    with refuse_now:
        engine.answer(node, q, Permit(), policy=policy, now=5_001)
    engine.answer(node, q, None, policy=policy, now=5_001)          # the local admin is not rate limited


def test_differential_privacy_is_charged_before_release_and_never_suppresses(node, monkeypatch):
    permit = Permit(epsilon=1.0, min_cell_count=1000)
    seen = []
    real_groups = engine.StoreReader.groups

    def spy(self, *a, **k):
        seen.append(PrivacyLedger(self.conn).spent("proj-1"))
        return real_groups(self, *a, **k)

    monkeypatch.setattr(engine.StoreReader, "groups", spy)
    q = body({"analysis": "count", "epsilon": 0.25})
    answers = [engine.answer(node, q, permit, policy=NodePolicy()) for _ in range(4)]
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0])                 # charged before computing
    assert all(a.meta["mode"] == "dp" and a.vector[-1] == 0 for a in answers)   # no suppression flag
    assert answers[0].epsilon_spent == 0.25 and answers[0].cells_perturbed == 1
    assert len({decode(a.vector[0]) for a in answers}) > 1               # noisy
    with pytest.raises(QueryError, match="budget") as exc:
        engine.answer(node, q, permit, policy=NodePolicy())
    assert exc.value.code == "RESOURCE_EXHAUSTED" and len(seen) == 4


@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
def test_dp_summary_and_survival_are_finalisable(node, mechanism):
    permit = Permit(permit_id=f"dp-{mechanism}", epsilon=10.0)
    policy = NodePolicy(dp_mechanism=mechanism)
    for doc in ({"analysis": {"summary": {"field": "age_at_incidence", "bound": 120}}, "epsilon": 3.0},
                {"analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31"}}, "epsilon": 3.0}):
        b = body(doc)
        ans = engine.answer(node, b, permit, policy=policy)
        result = finalise_query(b, node.dictionary, ans.vector)
        assert ans.meta["mechanism"] == mechanism and ans.meta["epsilon_spent"] == 3.0
        assert result["centres"] == 1
        b.epsilon = 0
        exact = engine.answer(node, b, None, policy=NodePolicy(mode="none"))
        assert len(ans.vector) == len(exact.vector)
        assert ans.values != exact.values                            # noise was really added
    assert PrivacyLedger(node.conn).spent(f"dp-{mechanism}") == pytest.approx(6.0)


def test_the_centre_caps_the_cells_in_one_answer(node, no_sql):
    """A 3-field crosstab has (|sex|+1)·(|her2|+1)·(|stage|+1) cells and more; a centre that
    releases at most 20 values refuses it before reading a row, and allows a 1-field one."""
    small = dataclasses.replace(NodePolicy(), max_values=20)
    doc = {"analysis": {"crosstab": {"fields": ["sex", "her2", "stage_summary"]}}}
    err = refuse(node, doc, Permit(), "RESOURCE_EXHAUSTED", policy=small, match="at most 20")
    assert err.path == "analysis"
    spec, _ = engine.prepare(node, body({"analysis": {"crosstab": {"fields": ["her2"]}}}), Permit(), small)
    assert spec is not None


AGE_SUMMARY = {"field": "age_at_incidence"}


def test_a_summary_bound_narrower_than_the_dictionary_range_is_refused_outside_dp(node, no_sql):
    """Σx exact under bound 120 and under bound 90 would differ by the outliers' excess: outside DP
    the bound must cover the dictionary range (0–120 for age), decided before any row is read."""
    for permit in (Permit(), None):
        e = refuse(node, {"analysis": {"summary": {**AGE_SUMMARY, "bound": 90}}}, permit, "INVALID_ARGUMENT",
                   policy=NodePolicy(mode="none") if permit is None else None, match="narrower")
        assert e.path == "analysis.summary.fixed_point.bound"


def test_dp_alone_may_clamp_to_a_narrower_bound(node):
    spec, _ = engine.prepare(node, body({"analysis": {"summary": {**AGE_SUMMARY, "bound": 90}}, "epsilon": 1.0}),
                             Permit(epsilon=5.0), NodePolicy())
    assert spec.bound == 90.0
    for bound in (0, 120, 500):                      # the range itself, or wider, is fine outside DP
        engine.answer(node, body({"analysis": {"summary": {**AGE_SUMMARY, "bound": bound}}}), Permit(),
                      policy=NodePolicy())


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5])
def test_quantiles_at_or_beyond_0_and_1_are_refused_never_min_or_max(node, no_sql, q):
    e = refuse(node, {"analysis": {"summary": {**AGE_SUMMARY, "quantiles": [0.5, q]}}}, Permit(), "INVALID_ARGUMENT",
               match="never min or max")
    assert e.path == "analysis.summary.quantiles[1]"


def test_dp_range_is_checked_before_epsilon_is_charged(node, no_sql):
    """A summary whose values could leave OpenDP's integer range is refused from the query and the
    policy alone, before ε is charged (it used to be refused after, depending on the data)."""
    permit = Permit(permit_id="dp-range", epsilon=5.0)
    doc = {"analysis": {"summary": {**AGE_SUMMARY, "bound": 120, "scale_bits": 40}}, "epsilon": 1.0}
    refuse(node, doc, permit, "OUT_OF_RANGE", match="differential privacy")
    assert PrivacyLedger(node.conn).spent("dp-range") == 0


def test_overflow_check_uses_the_public_maximum_rows_and_echoes_no_row_count(node, no_sql):
    """60 rows here would pass; the centre's public maximum (policy.max_rows) decides, and the
    message names no number read from the store."""
    doc = {"analysis": {"summary": {**AGE_SUMMARY, "bound": 1e9, "scale_bits": 40}}}
    e = refuse(node, doc, Permit(), "OUT_OF_RANGE", match="overflow")
    assert "60" not in e.message
    big = NodePolicy(max_rows=10**14)
    small = NodePolicy(max_rows=100)
    refuse(node, {"analysis": {"summary": {**AGE_SUMMARY, "bound": 1e6, "scale_bits": 40}}}, Permit(), "OUT_OF_RANGE",
           policy=big, match="overflow")
    engine.prepare(node, body({"analysis": {"summary": {**AGE_SUMMARY, "bound": 1e6, "scale_bits": 40}}}), Permit(),
                   small)


def test_a_store_beyond_max_rows_is_refused_without_its_size(node, no_sql):
    e = refuse(node, {"analysis": "count"}, Permit(), "FAILED_PRECONDITION", policy=NodePolicy(max_rows=10),
               match="max_rows")
    assert not any(ch.isdigit() for ch in e.message)


@pytest.mark.parametrize("eps", [float("inf"), float("nan"), float("-inf")])
def test_a_non_finite_epsilon_is_refused_before_the_rate_limit(node, eps):
    policy = NodePolicy(rate_per_minute=1)
    q = body({"analysis": "count", "researcher_key_id": "bob"})
    q.epsilon = eps                                   # the wire format carries any double
    for _ in range(3):                                # never takes a rate-limit slot
        with pytest.raises(QueryError, match="finite") as exc:
            engine.answer(node, q, Permit(epsilon=5.0), policy=policy)
        assert exc.value.code == "INVALID_ARGUMENT"
    q.epsilon = 1.0
    engine.answer(node, q, Permit(epsilon=5.0), policy=policy)     # the slot is still free


def test_rate_limit_key_is_normalised(node):
    policy = NodePolicy(rate_per_minute=2)
    for key in ("alice", "ALICE "):
        engine.answer(node, body({"analysis": "count", "researcher_key_id": key}), Permit(), policy=policy, now=9_000)
    with pytest.raises(QueryError, match="per minute"):
        engine.answer(node, body({"analysis": "count", "researcher_key_id": " Alice"}), Permit(), policy=policy,
                      now=9_001)


def test_dp_keeps_at_most_l_rows_per_patient_whatever_their_numbering(node_dir, tmp_path):
    """Patient P has three tumours that all claim tumour_seq 1: `tumour_seq <= L` would keep
    all three; ranking the patient's cohort rows keeps exactly L."""
    from oncofed import dictionary as dictmod
    from oncofed.node.query.compiler import compile_cohort

    rows = [valid_row(i) for i in range(1, 6)]
    rows += [valid_row(100 + j, patient_id="PAT-SAME") for j in range(3)]
    n = open_node(node_dir)
    try:
        n.ingest(write_csv(tmp_path / "p.csv", rows))
        cohort = compile_cohort(None, dictmod.load(), None)
        for limit, expected in ((1, 6), (2, 7), (3, 8)):
            sql, params = engine.per_patient_limit(cohort, limit)
            got = n.conn.execute(f"SELECT count(*) FROM tumours WHERE ({cohort.where}) AND ({sql})",  # noqa: S608
                                 (*cohort.params, *params)).fetchone()[0]
            assert got == expected, (limit, got)
    finally:
        n.close()
