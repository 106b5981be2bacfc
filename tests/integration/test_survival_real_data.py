"""Survival on a real public dataset, loaded through the real ingest path: GBSG2 (686 women;
lifelines.datasets.load_gbsg2, mapped by real_data.py). Exact answers equal lifelines; the
recurrence-free-survival fallback keeps the censored patients an extract without assessment
dates would lose, and the rows it cannot place are counted; under the default policy the
released tables are consistent and the log-rank χ² moves little over perturbation keys."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_gbsg2
from lifelines.statistics import logrank_test
from real_data import BREAST_EXTENSION, CUTOFF, seeded_node, write_gbsg2

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise_query, parse_analysis
from oncofed.analyses.survival import group_blocks, lattice_table
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.query import decode
from oncofed.query.textform import from_mapping

D = dictmod.load(BREAST_EXTENSION)
EXACT = NodePolicy(mode="none", max_values=400_000)
KM_DAYS = {"outcome": "RFS", "cutoff": CUTOFF, "step_days": 1, "horizon_days": 2700}
LOGRANK = {"outcome": "RFS", "cutoff": CUTOFF, "by": "hormone_therapy", "levels": ["yes", "no"]}
GBSG2 = load_gbsg2()


def load(tmp_path: Path, name: str, **variant: str):
    node = open_node(init_node(tmp_path / name, f"centre-{name}", BREAST_EXTENSION).root)
    result = node.ingest(write_gbsg2(tmp_path / f"{name}.csv", **variant))
    return node, result


def run(node, doc, policy=EXACT):
    body = from_mapping(doc, dictionary=D)
    return finalise_query(body, D, answer(node, body, None, policy=policy).vector)


def test_rfs_equals_lifelines_and_the_fallback_keeps_every_censored_patient(tmp_path):
    kmf = KaplanMeierFitter().fit(GBSG2.time, GBSG2.cens)
    assert kmf.median_survival_time_ == 1807
    censored = int((GBSG2.cens == 0).sum())
    for variant in ({"followup": "assessment"}, {"followup": "vital_status"}):
        node, ingest = load(tmp_path, variant["followup"].replace("_", "-"), **variant)
        # an extract without assessment dates is warned about at ingest (the fallback applies)
        assert bool(ingest.warnings) == (variant["followup"] == "vital_status")
        if ingest.warnings:
            assert ingest.warnings[0].startswith(f"{censored} disease-free tumour(s)")
            assert "left out" not in ingest.warnings[0]
        out = run(node, {"analysis": {"kaplan_meier": KM_DAYS}})
        curve = out["curves"]["all"]
        assert curve["median"] == 1807 and out["excluded_no_followup"] == 0
        points = {p["time"]: p["survival"] for p in curve["points"]}
        for t, s in zip(kmf.survival_function_.index, kmf.survival_function_.iloc[:, 0], strict=True):
            if t:
                assert points[int(t)] == pytest.approx(s, abs=1e-12)
        assert sum(p["censored"] for p in curve["points"]) == censored
        node.close()


def test_rows_the_fallback_cannot_place_are_counted_not_silently_dropped(tmp_path):
    """Passive follow-up says nothing about recurrence: without an assessment date such a row has
    no end of follow-up. It is left out — and counted in the ingest warning, the local meta and
    the result (released: perturbed like any count)."""
    node, ingest = load(tmp_path, "passive", followup="vital_status", vs_source="passive")
    censored = int((GBSG2.cens == 0).sum())
    assert f"{censored} under passive follow-up only" in ingest.warnings[0]
    body = from_mapping({"analysis": {"kaplan_meier": KM_DAYS}}, dictionary=D)
    ans = answer(node, body, None, policy=EXACT)
    assert ans.meta["rows"] == 686
    out = finalise_query(body, D, ans.vector)
    assert out["excluded_no_followup"] == censored and any(str(censored) in n for n in out["notes"])
    assert sum(p["censored"] for p in out["curves"]["all"]["points"]) == 0     # only events are left
    protected = answer(node, body, None, policy=NodePolicy())
    assert protected.meta["excluded_no_followup"] == censored                  # exact, for the audit log
    released = finalise_query(body, D, protected.vector)["excluded_no_followup"]
    assert abs(released - censored) <= 1 and released > 0
    node.close()


def test_logrank_by_hormone_therapy_equals_lifelines_and_receptor_levels_are_stored(tmp_path):
    node, _ = load(tmp_path, "lr")
    out = run(node, {"analysis": {"logrank": {**LOGRANK, "step_days": 1, "horizon_days": 2700}}})
    yes, no = GBSG2[GBSG2.horTh == "yes"], GBSG2[GBSG2.horTh == "no"]
    ref = logrank_test(yes.time, no.time, yes.cens, no.cens)
    assert out["groups"] == ["yes", "no"] and out["statistic"] == pytest.approx(ref.test_statistic, rel=1e-9)
    assert out["observed"] == {"yes": int(yes.cens.sum()), "no": int(no.cens.sum())}
    for field, column in (("er_fmol", "estrec"), ("pr_fmol", "progrec")):
        summary = run(node, {"analysis": {"summary": {"field": field, "quantiles": [0.5]}}})
        assert summary["n"] == 686 and summary["mean"] == pytest.approx(GBSG2[column].mean(), rel=1e-12)
        assert summary["sd"] == pytest.approx(np.std(GBSG2[column], ddof=1), rel=1e-9)
    node.close()


def consistent_tables(spec, values):
    """Every released group table: at risk = entered − events − censored to date, no count
    negative, nothing at risk after a group's last reported edge."""
    for a, d, c in group_blocks(spec, values).values():
        table = lattice_table(spec, a, d, c)
        at_risk, prev = 0, (0, 0, 0)
        for j, row in enumerate(table):
            assert a[j] >= prev[0] and d[j] >= prev[1] and c[j] >= prev[2]
            at_risk = a[j] - (d[j - 1] + c[j - 1] if j else 0)
            assert row["at_risk"] == at_risk >= d[j] - prev[1] + c[j] - prev[2] >= 0
            prev = (a[j], d[j], c[j])
        last = max((j for j, r in enumerate(table) if r["at_risk"]), default=-1)
        assert all(r["at_risk"] == 0 for r in table[last + 1:])
        assert a[-1] - d[-1] - c[-1] >= 0


@pytest.mark.slow
def test_logrank_spread_over_30_perturbation_keys_is_at_most_0_3(tmp_path):
    """The issue's target on real data of ~700 patients: SD(χ²) ≤ 0.3 over 30 perturbation keys
    under the default policy. Keys are SHA-256 of a label (bench/survival_noise.py uses the same),
    so the figure is reproducible; the code before this change gave SD 0.73 on these keys (0.84
    on random ones), the counts table (variance 1) with consistent tables 0.60."""
    csv_path = write_gbsg2(tmp_path / "gbsg2.csv")
    body = from_mapping({"analysis": {"logrank": LOGRANK}}, dictionary=D)
    spec = parse_analysis(body.analysis, D)
    chi2: dict[str, list[float]] = {"survival": [], "counts": []}
    for i in range(30):
        node = seeded_node(tmp_path / f"n{i}", f"centre-{i}", csv_path, f"oncofed/bench/survival-noise/{i}")
        for table in chi2:
            ans = answer(node, body, None, policy=NodePolicy(survival_table=table))
            values = [decode(v) for v in ans.values]
            consistent_tables(spec, values)
            chi2[table].append(finalise_query(body, D, ans.vector)["statistic"])
        node.close()
    sd = {t: statistics.stdev(xs) for t, xs in chi2.items()}
    print(f"log-rank χ² over 30 keys: survival table mean {statistics.mean(chi2['survival']):.3f} "
          f"SD {sd['survival']:.3f}; counts table SD {sd['counts']:.3f}")
    assert sd["survival"] <= 0.3
    assert sd["survival"] < sd["counts"] < 0.73
    assert abs(statistics.mean(chi2["survival"]) - 8.56) < 0.5       # exact on the lattice: 8.56


def test_the_ingest_command_prints_the_follow_up_warning(tmp_path):
    from click.testing import CliRunner

    from oncofed.cli import main

    csv_path = write_gbsg2(tmp_path / "extract.csv", followup="vital_status", vs_source="passive")
    runner = CliRunner()
    node_dir = tmp_path / "node"
    assert runner.invoke(main, ["node", "init", str(node_dir), "--id", "centre-w",
                                "--extension", str(BREAST_EXTENSION)]).exit_code == 0
    res = runner.invoke(main, ["node", "ingest", str(csv_path), "-n", str(node_dir), "--no-progress"])
    assert res.exit_code == 0, res.output
    censored = int((GBSG2.cens == 0).sum())
    assert f"warning: {censored} disease-free tumour(s)" in res.output and "left out of it" in res.output
