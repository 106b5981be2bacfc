"""The engine on real node directories with ingested synthetic data: with disclosure control off,
every finalised statistic equals the same statistic computed directly (Python, numpy, lifelines)
on the same rows, for one centre and for three centres' vectors summed; with it on, answers are
stable, small cohorts are flagged inside the vector, and KM stays close to the exact curve."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise_query
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.query import sum_vectors
from oncofed.query.textform import from_mapping
from oncofed.synth import write_all

D = dictmod.load()
EXACT = NodePolicy(mode="none", max_values=400_000)
CUTOFF = "2025-12-31"


@pytest.fixture(scope="module")
def centres(tmp_path_factory):
    """Three nodes (one synthetic centre each) and each node's decoded rows."""
    root = tmp_path_factory.mktemp("fed")
    files = write_all(root / "csv", centres=3, patients=500, seed=2024, dictionary=D)
    out = []
    for f in files:
        paths = init_node(root / f.centre.lower(), f"centre-{f.centre.lower()}")
        node = open_node(paths.root)
        node.ingest(f.path)
        cur = node.conn.execute("SELECT * FROM tumours_labelled")
        names = [c[0] for c in cur.description]
        out.append((node, [dict(zip(names, r, strict=True)) for r in cur.fetchall()]))
    yield out
    for node, _ in out:
        node.close()


def run(nodes, doc, policy=EXACT, permit=None):
    body = from_mapping(doc, dictionary=D)
    vectors = [answer(n, body, permit, policy=policy).vector for n in nodes]
    return finalise_query(body, D, sum_vectors(vectors))


def pick(centres, which):
    chosen = centres[:1] if which == 1 else centres
    return [n for n, _ in chosen], [r for _, rows in chosen for r in rows]


BREAST_SINCE_2010 = {"and": [{"field": "topography", "prefix": "C50"}, {"field": "incidence_date", "from": "2010-01"}]}


def in_breast_since_2010(r):
    return r["topography"].startswith("C50") and r["incidence_date"] >= "2010-01-01"


@pytest.mark.parametrize("which", [1, 3])
def test_count_crosstab_histogram_equal_direct_counts(centres, which):
    nodes, rows = pick(centres, which)
    sel = [r for r in rows if in_breast_since_2010(r)]
    assert run(nodes, {"cohort": BREAST_SINCE_2010, "analysis": "count"})["count"] == len(sel) > 50
    ct = run(nodes, {"cohort": BREAST_SINCE_2010, "analysis": {"crosstab": {"fields": ["stage_summary", "her2"]}}})
    want = Counter((r["stage_summary"] or "(missing)", r["her2"] or "(missing)") for r in sel)
    got = {(c["levels"]["stage_summary"], c["levels"]["her2"]): c["count"] for c in ct["cells"]}
    assert {k: v for k, v in got.items() if v} == dict(want)
    assert ct["margins"]["her2"]["pos"] == sum(1 for r in sel if r["her2"] == "pos")
    hist = run(nodes, {"analysis": {"histogram": {"field": "age_at_incidence"}}})
    edges = D.fields["age_at_incidence"].bins
    counts, _ = np.histogram([r["age_at_incidence"] for r in rows], bins=edges)
    assert [b["count"] for b in hist["bins"]] == counts.tolist() and hist["centres"] == which


@pytest.mark.parametrize("which", [1, 3])
def test_summary_equals_numpy(centres, which):
    nodes, rows = pick(centres, which)
    out = run(nodes, {"cohort": {"field": "sex", "equals": "2"},
                      "analysis": {"summary": {"field": "age_at_incidence", "unit_bins": True, "scale_bits": 3,
                                               "quantiles": [0.1, 0.25, 0.5, 0.75, 0.9]}}})
    xs = np.array([r["age_at_incidence"] for r in rows if r["sex"] == "2"], dtype=float)
    assert out["n"] == len(xs)
    assert (out["mean"], out["variance"], out["sd"]) == pytest.approx((xs.mean(), xs.var(ddof=1), xs.std(ddof=1)),
                                                                      rel=1e-12)
    assert [q["value"] for q in out["quantiles"]] == pytest.approx(np.quantile(xs, [0.1, 0.25, 0.5, 0.75, 0.9]),
                                                                    abs=1e-12)


def _date(s):
    return dt.date.fromisoformat(s) if s else None


def os_rows(rows, cutoff=CUTOFF):
    """(T, event, entry, row) by DESIGN §6, written from the rules, for lifelines."""
    c = dt.date.fromisoformat(cutoff)
    out = []
    for r in rows:
        if r["dco"] == 1 or r["tumour_seq"] != 1:
            continue
        inc, death = _date(r["incidence_date"]), _date(r["death_date"])
        if death and death <= c:
            t, e = (death - inc).days, 1
        else:
            last = _date(r["linkage_closure_date"]) if r["vs_source"] == "passive" and r["linkage_closure_date"] \
                else _date(r["vital_status_date"])
            t, e = (min(c, last) - inc).days, 0
        first = _date(r["first_contact_date"])
        entry = (first - inc).days if r["centre_role"] != "diagnosed_here" and first and first > inc else 0
        if t < 0 or (entry > 0 and entry >= t):
            continue
        out.append((t, e, entry, r))
    return out


def rfs_rows(rows, cutoff=CUTOFF):
    c = dt.date.fromisoformat(cutoff)
    out = []
    for r in rows:
        if r["dco"] == 1 or r["tumour_seq"] != 1 or r["disease_free_after_treatment"] != "yes":
            continue
        origin = _date(r["surgery_start_date"])
        if origin is None:
            continue
        events = [d for d in (_date(r["recurrence_date"]), _date(r["death_date"])) if d and d <= c]
        if events:
            t, e = (min(events) - origin).days, 1
        elif r["last_disease_assessment_date"]:
            t, e = (min(_date(r["last_disease_assessment_date"]), c) - origin).days, 0
        else:
            continue
        first = _date(r["first_contact_date"])
        entry = (first - origin).days if r["centre_role"] != "diagnosed_here" and first and first > origin else 0
        if t < 0 or (entry > 0 and entry >= t):
            continue
        out.append((t, e, entry, r))
    return out


def assert_curve_equals_lifelines(curve, data):
    kmf = KaplanMeierFitter().fit([d[0] for d in data], [d[1] for d in data], entry=[d[2] for d in data])
    points = {p["time"]: p for p in curve["points"]}
    ci = kmf.confidence_interval_
    checked = 0
    for t, s, lo, hi in zip(kmf.survival_function_.index, kmf.survival_function_.iloc[:, 0], ci.iloc[:, 0],
                            ci.iloc[:, 1], strict=True):
        if int(t) in points:
            p = points[int(t)]
            assert p["survival"] == pytest.approx(s, abs=1e-12)
            assert (p["ci_lower"], p["ci_upper"]) == pytest.approx((lo, hi), abs=1e-12)
            checked += 1
    assert checked > 20
    median = kmf.median_survival_time_
    assert curve["median"] == (int(median) if math.isfinite(median) else None)


@pytest.mark.parametrize("which", [1, 3])
def test_kaplan_meier_on_a_one_day_lattice_equals_lifelines(centres, which):
    nodes, rows = pick(centres, which)
    out = run(nodes, {"analysis": {"kaplan_meier": {"outcome": "OS", "cutoff": CUTOFF, "step_days": 1,
                                                    "horizon_days": 7700, "by": "stage_summary"}}})
    assert out["estimator"] == "product-limit" and out["ci"]["transform"] == "log-log"
    data = os_rows(rows)
    assert any(d[2] > 0 for d in data)          # left truncation is exercised
    for stage in ("localised", "regional", "distant"):
        assert_curve_equals_lifelines(out["curves"][stage], [d for d in data if d[3]["stage_summary"] == stage])


def test_rfs_on_a_one_day_lattice_equals_lifelines(centres):
    nodes, rows = pick(centres, 3)
    out = run(nodes, {"analysis": {"kaplan_meier": {"outcome": "RFS", "cutoff": CUTOFF, "step_days": 1,
                                                    "horizon_days": 7700}}})
    assert_curve_equals_lifelines(out["curves"]["all"], rfs_rows(rows))


@pytest.mark.parametrize("which", [1, 3])
def test_logrank_on_a_one_day_lattice_equals_lifelines(centres, which):
    nodes, rows = pick(centres, which)
    here = {"field": "centre_role", "equals": "diagnosed_here"}     # lifelines' log-rank has no left truncation
    out = run(nodes, {"cohort": here, "analysis": {"logrank": {"outcome": "OS", "cutoff": CUTOFF, "step_days": 1,
                                                               "horizon_days": 7700, "by": "stage_summary"}}})
    data = [d for d in os_rows(rows) if d[3]["centre_role"] == "diagnosed_here" and d[3]["stage_summary"]]
    ref = multivariate_logrank_test([d[0] for d in data], [d[3]["stage_summary"] for d in data], [d[1] for d in data])
    assert out["statistic"] == pytest.approx(ref.test_statistic, rel=1e-12)
    assert out["p_value"] == pytest.approx(ref.p_value, rel=1e-9)
    assert out["df"] == ref.degrees_of_freedom and "grouped on lattice G" in out["test"]
    two = run(nodes, {"cohort": {"and": [here, {"field": "sex", "in": ["1", "2"]}]},
                      "analysis": {"logrank": {"outcome": "OS", "cutoff": CUTOFF, "step_days": 1,
                                               "horizon_days": 7700, "by": "sex"}}})
    m = [d for d in data if d[3]["sex"] == "1"]
    f = [d for d in data if d[3]["sex"] == "2"]
    ref2 = logrank_test([d[0] for d in m], [d[0] for d in f], [d[1] for d in m], [d[1] for d in f])
    assert two["statistic"] == pytest.approx(ref2.test_statistic, rel=1e-12) and two["df"] == 1


def test_group_levels_give_the_same_curves_for_the_levels_asked_and_nothing_else(centres):
    nodes, _ = pick(centres, 3)
    km = {"outcome": "OS", "cutoff": CUTOFF, "step_days": 1, "horizon_days": 7700, "by": "stage_summary"}
    every = run(nodes, {"analysis": {"kaplan_meier": km}})
    two = run(nodes, {"analysis": {"kaplan_meier": {**km, "levels": ["distant", "localised"]}}})
    assert list(two["curves"]) == ["distant", "localised"] and two["levels"] == ["distant", "localised"]
    for g in two["curves"]:
        assert two["curves"][g] == every["curves"][g]


def test_same_rows_give_one_value_however_often_or_however_phrased(centres):
    node = centres[0][0]
    policy = NodePolicy(mode="cell_key", min_cell_count=5)
    plain = from_mapping({"cohort": {"field": "topography", "prefix": "C50"}, "analysis": "count"})
    values = {answer(node, plain, None, policy=policy).values[0] for _ in range(1000)}
    subsites = [f"C50.{d}" for d in D.topography_sites["C50"]]
    rephrased = [
        {"field": "topography", "in": subsites},
        {"not": {"not": {"and": [{"field": "topography", "prefix": "C5"}, {"field": "topography", "prefix": "C50"}]}}},
        {"or": [{"field": "topography", "prefix": "C50"}, {"and": [{"field": "topography", "prefix": "C50"},
                                                                    {"field": "sex", "equals": "1"}]}]},
    ]
    for cohort in rephrased:
        body = from_mapping({"cohort": cohort, "analysis": "count"})
        values.add(answer(node, body, None, policy=policy).values[0])
    assert len(values) == 1
    exact = answer(node, plain, None, policy=EXACT).values[0]
    assert abs(values.pop() - exact) <= 2


def test_small_cohort_is_an_all_suppressed_vector_not_a_refusal(centres):
    node, rows = centres[0]
    old = sorted(r["incidence_date"] for r in rows)[:3]
    body = from_mapping({"cohort": {"field": "incidence_date", "to": old[-1][:7]}, "analysis": "count"})
    ans = answer(node, body, None, policy=NodePolicy(min_cell_count=50))
    assert ans.vector == [0, 1, 1]
    assert ans.meta["suppressed"] == "cohort below k"


@pytest.fixture(scope="module")
def big_centre(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    f = write_all(root / "csv", centres=1, patients=3000, seed=77, dictionary=D)[0]
    node = open_node(init_node(root / "node", "centre-big").root)
    node.ingest(f.path)
    yield node
    node.close()


@pytest.mark.parametrize("survival_counts", ["cell_key", "round"])
def test_kaplan_meier_with_k5_on_a_30_day_lattice_stays_close_to_the_exact_curve(big_centre, survival_counts):
    """Noise of ±2 (or rounding to blocks of 5) moves S by about 2/n: within 0.03 for curves of a few
    hundred patients or more; smaller groups (the 'unknown' stage, ~60 here) are not held to it."""
    policy = NodePolicy(mode="cell_key", min_cell_count=5, survival_counts=survival_counts)
    compared = 0
    for by in (None, "stage_summary", "sex"):
        km = {"outcome": "OS", "cutoff": CUTOFF, **({"by": by} if by else {})}
        exact = run([big_centre], {"analysis": {"kaplan_meier": km}})
        protected = run([big_centre], {"analysis": {"kaplan_meier": km}}, policy)
        for group, curve in exact["curves"].items():
            if curve["points"][0]["at_risk"] < 200:
                continue
            pts = {p["time"]: p["survival"] for p in protected["curves"][group]["points"]}
            assert len(pts) == len(curve["points"]) == 123
            for p in curve["points"]:
                assert abs(pts[p["time"]] - p["survival"]) <= 0.03, (by, group, p["time"])
                compared += 1
    assert compared == 123 * 6


def test_record_keys_are_written_at_ingest_and_missing_ones_repaired(tmp_path):
    from oncofed.keys.cellkey import RecordKeyer
    from oncofed.keys.secrets import load_secret_file

    first, extra = write_all(tmp_path / "csv", centres=2, patients=40, seed=1, dictionary=D)
    node = open_node(init_node(tmp_path / "node", "centre-keys").root)
    node.ingest(first.path)
    answer(node, from_mapping({"analysis": "count"}), None, policy=EXACT)
    node.ingest(extra.path)
    keyer = RecordKeyer(load_secret_file(node.paths.secret("perturbation.key")))
    rows = node.conn.execute("SELECT tumour_id, record_key FROM tumours").fetchall()
    assert rows and all(k == keyer.record_key(t) for t, k in rows), "ingest writes every record key"
    # a store made before keys were written at ingest: the engine fills them, identically
    node.conn.execute("UPDATE tumours SET record_key = NULL WHERE rowid % 2 = 0")
    answer(node, from_mapping({"analysis": "count"}), None, policy=EXACT)
    assert node.conn.execute("SELECT tumour_id, record_key FROM tumours").fetchall() == rows
    node.close()


def test_cli_preview_prints_text_and_json(centres, tmp_path):
    from click.testing import CliRunner

    from oncofed.cli import main

    node = centres[0][0]
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"cohort": BREAST_SINCE_2010, "analysis": {"crosstab": {"fields": ["her2"]}}}))
    res = CliRunner().invoke(main, ["node", "query", str(q), "-n", str(node.paths.root), "--json", "--vector"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["result"]["analysis"] == "crosstab" and data["disclosure"]["mode"] == "cell_key"
    assert len(data["vector"]) == 5 + 2
    res = CliRunner().invoke(main, ["node", "query", str(q), "-n", str(node.paths.root), "--exact"])
    assert res.exit_code == 0 and "exact (not for release)" in res.output and "her2" in res.output
    q.write_text('{"analysis": {"crosstab": {"fields": ["her2", "colour"]}}}')
    res = CliRunner().invoke(main, ["node", "query", str(q), "-n", str(node.paths.root)])
    assert res.exit_code == 2 and "analysis.crosstab.fields[1]" in res.output
    # both previews that ran are in the audit log, as the local admin's, and the chain verifies
    shown = json.loads(
        CliRunner().invoke(main, ["node", "audit", "show", "--json", "-n", str(node.paths.root)]).output)
    local = [e for e in shown if e["event"] == "query.local"]
    expected = [("local-admin", "crosstab", "answered")] * 2
    assert [(e["who"], e["analysis"], e["decision"]) for e in local[-2:]] == expected
    assert {"her2", "topography"} <= set(local[-1]["fields"])
    assert CliRunner().invoke(main, ["node", "audit", "verify", "-n", str(node.paths.root)]).exit_code == 0


def test_worked_examples_in_the_docs_are_the_exact_output(tmp_path):
    """docs/queries.md promises the exact output of every worked example: regenerate them."""
    import re
    from pathlib import Path

    from click.testing import CliRunner

    from oncofed.cli import main

    doc = (Path(__file__).resolve().parents[2] / "docs" / "queries.md").read_text("utf-8")
    block = r"((?:(?!```).)*)"          # a fenced block's content, never crossing a fence
    examples = re.findall(rf"```(json|toml)\n{block}```\n\n`oncofed node query q/(\S+) -n demo-node --exact`\n\n"
                          rf"```text\n{block}```", doc, flags=re.S)
    assert len(examples) == 7
    f = write_all(tmp_path / "data", centres=1, patients=3000, seed=7, dictionary=D)[0]
    node_dir = init_node(tmp_path / "demo-node", "centre-a").root
    with open_node(node_dir) as node:
        node.ingest(f.path)
    runner = CliRunner()
    for _, query_text, name, expected in examples:
        q = tmp_path / name
        q.write_text(query_text)
        res = runner.invoke(main, ["node", "query", str(q), "-n", str(node_dir), "--exact"])
        assert res.exit_code == 0, res.output
        assert res.output == expected, name
