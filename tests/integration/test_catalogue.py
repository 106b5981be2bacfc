"""The catalogue test: every analysis in the catalogue, asked of three real nodes holding different
synthetic centres through the node's one answering pipeline (signed envelope → verify → local step
→ disclosure → vector → audit), summed mod 2^128 and finalised, equals the same analysis computed
on the pooled rows — exactly for integers, within 1e-9 relative for reals — under a policy that
releases exact cells (threshold mode with k = 1). No analysis can join the catalogue without an
example here (the first test), and so without passing it."""

from __future__ import annotations

from typing import Any

import pytest
from node_fed_helpers import make_fed, query_body, signed
from regression_reference import fedavg_updates, node_rows
from result_compare import assert_close

from oncofed import dictionary as dictmod
from oncofed.analyses import KINDS, finalise_query
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.node.verify import QueryVerifier
from oncofed.query import sum_vectors
from oncofed.query.textform import analysis_from, cohort_from
from oncofed.synth import write_all
from oncofed.v1 import query_pb2 as pb

CENTRES = ("centre-a", "centre-b", "centre-c")
FIELDS = ["sex", "topography", "stage_summary", "her2", "er", "age_at_incidence", "grade", "cT", "pN",
          "os_status_at_cutoff", "rfs_status_at_cutoff"]
CUTOFF = "2025-12-31"
#: Examples per catalogue entry, on the fields above: the analysis, or a mapping with the query's
#: "analysis" and optionally its "cohort" and "status_cutoff".
EXAMPLES: dict[str, list[Any]] = {
    "count": ["count",
              {"analysis": "count", "status_cutoff": "2024-06",
               "cohort": {"and": [{"field": "os_status_at_cutoff", "equals": "dead"},
                                  {"field": "cT", "in": ["T2", "T3"]}]}}],
    "crosstab": [{"crosstab": {"fields": ["stage_summary", "her2"]}},
                 {"analysis": {"crosstab": {"fields": ["os_status_at_cutoff", "rfs_status_at_cutoff", "pN"]}},
                  "status_cutoff": "2022-12"}],
    "summary": [{"summary": {"field": "age_at_incidence", "unit_bins": True}}],
    "histogram": [{"histogram": {"field": "age_at_incidence"}}],
    "kaplan_meier": [{"kaplan_meier": {"outcome": "OS", "cutoff": CUTOFF, "by": "stage_summary"}},
                     {"kaplan_meier": {"outcome": "RFS", "cutoff": CUTOFF, "by": "grade",
                                       "levels": ["3", "1", "(missing)"], "step_days": 60}}],
    "logrank": [{"logrank": {"outcome": "OS", "cutoff": CUTOFF, "by": "stage_summary"}},
                {"logrank": {"outcome": "RFS", "cutoff": CUTOFF, "by": "her2", "levels": ["neg", "pos"]}},
                {"analysis": {"logrank": {"outcome": "OS", "cutoff": CUTOFF, "by": "cT",
                                          "levels": ["T1", "T2", "T3"]}},
                 "cohort": {"field": "os_status_at_cutoff", "in": ["dead", "alive"]}, "status_cutoff": "2023-01"}],
    # One round of each model, at coefficients away from 0 (β = beta / 2^8).
    "logistic": [{"logistic": {"outcome": "her2", "positive": ["pos"], "beta_scale_bits": 8, "round": 2,
                               "covariates": ["age_at_incidence", "stage_summary", "er"],
                               "beta": [-256, 3, 25, -12, 40, 9, -30, 5]}},
                 {"logistic": {"survival": "RFS", "cutoff": CUTOFF, "horizon_days": 1000, "beta_scale_bits": 8,
                               "covariates": ["age_at_incidence", "her2"], "beta": [-100, 1, 20, -10, 5]}}],
    "cox": [{"cox": {"outcome": "OS", "cutoff": CUTOFF, "beta_scale_bits": 8, "round": 3,
                     "covariates": ["age_at_incidence", "stage_summary", "er"], "beta": [5, 60, 150, -20, 10, -8, 3]}},
            {"cox": {"outcome": "RFS", "cutoff": CUTOFF, "ties": "BRESLOW", "covariates": ["her2"]}}],
    # ten yearly baselines (log-hazards per day near −8.6), then age and three stage dummies
    "poisson": [{"poisson": {"outcome": "OS", "cutoff": CUTOFF, "beta_scale_bits": 8, "round": 2,
                             "covariates": ["age_at_incidence", "stage_summary"],
                             "beta": [-2200] * 10 + [3, 60, 150, 20]}},
                {"poisson": {"outcome": "RFS", "cutoff": CUTOFF, "step_days": 730, "horizon_days": 2920,
                             "covariates": ["her2"]}}],
    # risk-set sums at each point of a 90-day lattice, with a common offset near xᵀβ at the means
    "cox_pooled": [{"cox_pooled": {"outcome": "OS", "cutoff": CUTOFF, "beta_scale_bits": 8, "round": 2,
                                   "step_days": 90, "horizon_days": 3600, "offset": 200,
                                   "covariates": ["age_at_incidence", "stage_summary"], "beta": [3, 60, 150, 20]}},
                   {"cox_pooled": {"outcome": "RFS", "cutoff": CUTOFF, "ties": "BRESLOW", "covariates": ["her2"]}}],
    # a FedAvg round from weights away from 0: local epochs, clipped, then a mini-batched one
    "fedavg": [{"fedavg": {"outcome": "her2", "positive": ["pos"], "beta_scale_bits": 8, "round": 2,
                           "covariates": ["age_at_incidence", "stage_summary"], "beta": [-256, 3, 25, -12, 40],
                           "learning_rate": 2.0, "local_epochs": 3, "clip_norm": 0.2}},
               {"fedavg": {"survival": "OS", "cutoff": CUTOFF, "horizon_days": 1826, "covariates": ["er"],
                           "batch_size": 64, "seed": 11, "round": 1}}],
}
#: The models' sums are reals, rounded to fixed point at each centre: equal to the pooled ones
#: within rounding, not bit for bit (their counts are exact).
MODELS = ("logistic", "cox", "poisson", "cox_pooled")
CASES = [(kind, i) for kind, examples in EXAMPLES.items() for i in range(len(examples))]
EXACT = NodePolicy(mode="threshold", min_cell_count=1, rate_per_minute=1_000, allow_pooled_cox=True)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("catalogue")
    d = dictmod.load()
    files = write_all(base / "csv", len(CENTRES), 400, 20261201, d)
    fed = make_fed(base, centres=CENTRES, researchers=("res-1",))
    pipelines, nodes, permits = {}, [], {}
    for centre, f in zip(CENTRES, files, strict=True):
        node = open_node(init_node(base / centre, centre).root)
        node.ingest(f.path)
        trust = fed.attach(node.paths.store, centre)
        permits[centre] = fed.permit(trust, analyses=list(KINDS), fields=FIELDS, min_cell_count=1,
                                     outcomes=["os", "rfs"])
        trust.close()
        pipelines[centre] = AnsweringPipeline(node, QueryVerifier.for_node(node), EXACT)
        nodes.append(node)
    pooled = open_node(init_node(base / "pooled", "pooled").root)
    for f in files:
        pooled.ingest(f.path)
    yield {"fed": fed, "pipelines": pipelines, "permits": permits, "pooled": pooled, "d": d}
    for p in pipelines.values():
        p.verifier.close()
    for n in (*nodes, pooled):
        n.close()


def test_every_catalogue_entry_has_an_example() -> None:
    assert set(EXAMPLES) == set(KINDS)


def _example(body: Any, example: Any) -> None:
    """Put one example's analysis, cohort and status cutoff into a query body."""
    doc = example if isinstance(example, dict) and "analysis" in example else {"analysis": example}
    body.analysis.CopyFrom(analysis_from(doc["analysis"], "analysis"))
    if "cohort" in doc:
        body.cohort.CopyFrom(cohort_from(doc["cohort"], "cohort"))
    body.status_cutoff = doc.get("status_cutoff", "")


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_federated_answer_equals_the_pooled_statistic(federation: dict[str, Any], kind: str, i: int) -> None:
    fed, d = federation["fed"], federation["d"]
    vectors = []
    for centre, pipeline in federation["pipelines"].items():
        body = query_body(federation["permits"][centre], targets=CENTRES, d=d)
        _example(body, EXAMPLES[kind][i])
        ans = pipeline.answer_envelope(signed(fed.identities["res-1"], body))
        assert ans.analysis == kind and ans.meta["mode"] == "threshold"
        vectors.append(ans.vector)
    federated = finalise_query(body, d, sum_vectors(vectors))
    if kind == "cox":       # stratified by centre: the sum over centres is not the pooled rows' model
        check_stratified_cox(federation, body, federated)
        return
    if kind == "fedavg":    # the sum of each centre's own local update, not the pooled rows' update
        check_fedavg(federation, body, federated)
        return
    exact = answer(federation["pooled"], body, None, policy=NodePolicy(mode="none"))
    pooled = finalise_query(body, d, exact.vector)
    assert federated["centres"] == len(CENTRES) and pooled["centres"] == 1
    federated["centres"] = pooled["centres"]
    # A centre flags a group it holds fewer than k rows of — with k = 1, a group it holds none of
    # (the flag must not tell 0 from 1…k−1); the exact pooled answer flags nothing.
    empty = federated.pop("suppressed_groups", {})
    shown = pooled.pop("suppressed_groups", {})
    assert shown == {}
    for group, centres in empty.items():     # flagged at every centre: no rows anywhere
        if centres == len(CENTRES):
            assert group not in pooled.get("curves", {}) and group not in pooled.get("groups", [])
    assert_close(federated, pooled)
    if kind in MODELS:
        assert federated["withheld_centres"] == 0, "the example must pass every centre's gates"
        summed = sum_vectors(vectors)
        assert [summed[i] for i in (0, 1, exact.n_values - 1)] == [exact.values[i] for i in (0, 1, -1)]
    else:
        assert sum_vectors(vectors)[:exact.n_values] == exact.values       # the summed vector is the pooled one
    assert any(exact.values), "the example must select rows"


def centre_rows(federation: dict[str, Any], body: Any) -> dict[str, Any]:
    """Each centre's complete cases for the body's model, read by its node (the same reads the
    answers rest on); the reference statistics below are statsmodels', not ours."""
    from oncofed.analyses import parse_analysis
    from oncofed.node.query.compiler import compile_cohort
    from oncofed.node.store.cohort_reads import StoreReader

    spec = parse_analysis(body.analysis, federation["d"])
    out = {}
    for centre, pipeline in federation["pipelines"].items():
        node = pipeline.node
        cohort = compile_cohort(body.cohort, node.dictionary, None)
        out[centre] = StoreReader(node.conn, node.dictionary, cohort.where, cohort.params,
                                  cohort.fields).design(spec.question)
    return {"spec": spec, "rows": out}


def check_stratified_cox(federation: dict[str, Any], body: Any, federated: dict[str, Any]) -> None:
    """The summed round equals statsmodels' PHReg(ties='efron', strata=centre) score, information
    and log partial likelihood at the query's β, over the centres' rows."""
    import numpy as np
    import statsmodels.api as sm

    from oncofed.analyses.design import matrix

    got = centre_rows(federation, body)
    spec = got["spec"]
    xs, ts, es, strata = [], [], [], []
    for i, rows in enumerate(got["rows"].values()):
        xs.append(matrix(spec.design, rows.values))
        ts.append(rows.time)
        es.append(rows.event)
        strata.append(np.full(rows.n, i))
    x, t, e, g = (np.concatenate(a) for a in (xs, ts, es, strata))
    entry = np.concatenate([r.entry for r in got["rows"].values()])
    late = entry > 0
    # statsmodels counts a row at risk at t ≥ entry; ours (and lifelines') at t > entry: the same
    # risk sets when statsmodels' entries sit half a day later (times are whole days).
    model = sm.PHReg(t, x, status=e, strata=g, ties="efron", entry=np.where(late, entry + 0.5, 0.0))
    beta = np.asarray(spec.beta)
    assert federated["withheld_centres"] == 0, federated
    assert federated["n"] == len(t) and federated["events"] == int(e.sum()) and federated["events"] > 10
    assert federated["loglik"] == pytest.approx(model.loglike(beta), rel=1e-10)
    assert np.allclose(federated["gradient"], model.score(beta), rtol=1e-9, atol=1e-9)
    assert np.allclose(federated["information"], -model.hessian(beta), rtol=1e-9, atol=1e-9)




def check_fedavg(federation: dict[str, Any], body: Any, federated: dict[str, Any]) -> None:
    """The summed round holds statsmodels' log-likelihood at the round's weights over every
    centre's rows, their expected correct classifications, and the sum of the updates the pure local step
    gives on each centre's rows (read by its node)."""
    import numpy as np
    import statsmodels.api as sm

    from oncofed.analyses import parse_analysis

    spec = parse_analysis(body.analysis, federation["d"])
    m = spec.model
    f = body.analysis.fedavg
    as_logistic = pb.Analysis(logistic=pb.Logistic(outcome=f.outcome, positive=list(f.positive), event=f.event,
                                                   covariates=list(f.covariates), reference=list(f.reference)))
    nodes = {c: p.node for c, p in federation["pipelines"].items()}
    _, frame = node_rows(nodes, as_logistic, body.cohort if body.HasField("cohort") else None, federation["d"])
    x = sm.add_constant(frame[m.design.names()].to_numpy(float), has_constant="add")
    y = frame["y"].to_numpy(float)
    beta = np.asarray(m.beta)
    assert federated["withheld_centres"] == 0 and federated["n"] == len(y) > 100
    assert federated["loglik"] == pytest.approx(sm.Logit(y, x).loglike(beta), abs=3 * 2.0**-16)
    p = 1 / (1 + np.exp(-(x @ beta)))
    assert federated["correct"] == pytest.approx(float(np.sum(np.where(y == 1, p, 1 - p))),
                                                 abs=len(nodes) * 2.0**-16)
    updates = fedavg_updates(spec, frame)
    assert np.allclose(federated["update_sum"], np.sum(updates, axis=0), rtol=0, atol=3 * 2.0**-spec.scale_bits)
    assert np.abs(federated["update_sum"]).max() > 1e-3


def test_every_answer_is_audited_with_the_verified_query_hash(federation: dict[str, Any]) -> None:
    pipeline = federation["pipelines"]["centre-a"]
    body = query_body(federation["permits"]["centre-a"], targets=CENTRES, d=federation["d"])
    envelope = signed(federation["fed"].identities["res-1"], body)
    ans = pipeline.answer_envelope(envelope)
    from oncofed.query import query_hash

    entries = pipeline.verifier.audit.entries(query_hash=query_hash(envelope))
    assert [(e.event, e.decision) for e in entries] == [("query.verify", "accepted"), ("query.answer", "answered")]
    assert ans.query_hash == query_hash(envelope)


def test_a_refusal_after_verification_is_audited_and_goes_out_coarse(federation: dict[str, Any]) -> None:
    """A store beyond its policy's max_rows is the node's own state: the audit log names the fine
    reason, the caller learns only BUSY, and no figure of the store is in the message."""
    from oncofed.node.service.errors import public_error
    from oncofed.query import query_hash
    from oncofed.query.refusals import Refusal

    live = federation["pipelines"]["centre-b"]
    small = AnsweringPipeline(live.node, live.verifier, NodePolicy(mode="threshold", min_cell_count=1, max_rows=5))
    body = query_body(federation["permits"]["centre-b"], targets=CENTRES, d=federation["d"])
    envelope = signed(federation["fed"].identities["res-1"], body)
    with pytest.raises(Refusal) as exc:
        small.answer_envelope(envelope)
    assert exc.value.reason == "store_over_policy"
    assert public_error(exc.value).message == "declined: BUSY"
    last = live.verifier.audit.entries(query_hash=query_hash(envelope))[-1]
    assert (last.event, last.decision, last.reason) == ("query.answer", "refused", "store_over_policy")


@pytest.mark.parametrize(("kind", "i"), CASES)
def test_every_result_is_one_table(federation: dict[str, Any], kind: str, i: int) -> None:
    """The table of each kind (CSV export, `to_pandas`): a crosstab's cells, a histogram's or a
    summary's bins, each survival curve's points, a log-rank's groups, else one row of scalars."""
    from oncofed.federation.client.tables import rows_of

    body = query_body(federation["permits"]["centre-a"], targets=CENTRES, d=federation["d"])
    _example(body, EXAMPLES[kind][i])
    result = finalise_query(body, federation["d"],
                            answer(federation["pooled"], body, None, policy=NodePolicy(mode="none")).vector)
    rows = rows_of(result)
    assert rows and all(isinstance(r, dict) for r in rows)
    if kind == "crosstab":
        fields = result["fields"]
        assert [list(r) for r in rows] == [[*fields, "count"]] * len(result["cells"])
        assert sum(r["count"] for r in rows) == result["total"]
    elif kind in ("histogram", "summary") and result.get("bins"):
        assert rows == result["bins"] and rows is not result["bins"]
    elif kind == "kaplan_meier":
        by = result.get("group_by") or "group"
        assert len(rows) == sum(len(c["points"]) for c in result["curves"].values())
        assert {r[by] for r in rows} == set(result["curves"])
    elif kind == "logrank":
        assert [r["group"] for r in rows] == list(result["groups"])
        assert [(r["observed"], r["expected"]) for r in rows] == \
            [(result["observed"][g], result["expected"][g]) for g in result["groups"]]
    else:
        assert len(rows) == 1 and rows[0]["analysis"] == kind
        assert all(rows[0][k] == v for k, v in result.items() if isinstance(v, int | float | str | type(None)))
        assert not any(isinstance(v, dict | list) for v in rows[0].values())
