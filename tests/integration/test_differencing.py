"""Issue 8's differencing attacks against a real node (synthetic centre, breast-network extension,
signed queries through the answering pipeline, real keys and SQLite), under cell key and
threshold disclosure: over 24 targets, two answers whose cohorts differ by the target alone are the
same bytes, so the attacker does exactly as well as guessing the most common level. Controls: the
same attack with the release ledger bypassed (engine `differencing=False`, after the same
verification) names the targets' stage — the attack is real and these tests can fail."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from differencing_attack import Ask, count_attack, crosstab_attack, summary_attack, unique_targets
from node_fed_helpers import make_fed, query_body, signed

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise_query
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.node.verify import QueryVerifier
from oncofed.query.textform import analysis_from, cohort_from
from oncofed.synth import write_all

CENTRE = "centre-a"
TARGETS = 24
FIELDS = ["sex", "age_at_incidence", "incidence_date", "topography", "stage_summary", "tumour_size_mm"]
STAGES = ["localised", "regional", "distant"]          # the attacker asks these; "unknown" by elimination
BREAST = {"field": "topography", "prefix": "C50"}


def policy(mode: str) -> NodePolicy:
    return NodePolicy(mode=mode, rate_per_minute=100_000, rate_per_day=1_000_000)


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base: Path = tmp_path_factory.mktemp("differencing")
    ext = dictmod.bundled_extensions()[0]
    d = dictmod.load(ext)
    f = write_all(base / "csv", 1, 3000, 8, d)[0]
    node = open_node(init_node(base / CENTRE, CENTRE, extension=ext).root)
    node.ingest(f.path)
    cur = node.conn.execute("SELECT * FROM tumours_labelled")
    names = [c[0] for c in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    fed = make_fed(base, centres=(CENTRE,), researchers=("res-1",))
    trust = fed.attach(node.paths.store, CENTRE)
    verifier = QueryVerifier.for_node(node)
    yield {"node": node, "rows": rows, "fed": fed, "trust": trust, "verifier": verifier, "d": d}
    verifier.close()
    trust.close()
    node.close()


def asker(centre: Any, mode: str, *, ledger: bool = True) -> Ask:
    """Signed queries under a fresh permit (a scope of its own) through the answering pipeline;
    `ledger=False` verifies the same way, then calls the engine around the release ledger."""
    fed, d = centre["fed"], centre["d"]
    permit = fed.permit(centre["trust"], analyses=["count", "crosstab", "summary"], fields=FIELDS, min_cell_count=10)
    pipeline = AnsweringPipeline(centre["node"], centre["verifier"], policy(mode))

    def ask(cohort: dict[str, Any] | None, analysis: Any) -> tuple[list[int], dict[str, Any]]:
        body = query_body(permit, targets=(CENTRE,), d=d)
        body.ClearField("cohort")
        if cohort is not None:
            body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
        body.analysis.CopyFrom(analysis_from(analysis, "analysis"))
        envelope = signed(fed.identities["res-1"], body)
        if ledger:
            vector = pipeline.answer_envelope(envelope).vector
        else:
            verified = pipeline.verifier.verify(envelope)
            vector = answer(centre["node"], verified.body, verified.permit, policy=pipeline.policy,
                            query_hash=verified.query_hash, differencing=False).vector
        return vector, finalise_query(body, d, vector)

    return ask


def most_common(rows: list[dict[str, Any]], field: str) -> Any:
    return Counter(r[field] for r in rows if r[field] is not None).most_common(1)[0][0]


@pytest.mark.parametrize("mode", ["cell_key", "threshold"])
def test_crosstab_differencing_learns_nothing(centre: Any, mode: str) -> None:
    rows = centre["rows"]
    targets = unique_targets(rows, TARGETS, lambda r: True)
    mode_stage = most_common(rows, "stage_summary")
    out = crosstab_attack(asker(centre, mode), None, targets, "stage_summary", mode_stage)
    assert out.unchanged == TARGETS                  # the two answers are the same bytes
    assert out.successes == out.baseline             # ... so the attacker only has the baseline guess
    control = crosstab_attack(asker(centre, mode, ledger=False), None, targets, "stage_summary", mode_stage)
    assert control.unchanged == 0 if mode == "threshold" else control.unchanged < TARGETS
    assert control.rate >= 0.85 and control.rate > out.baseline_rate + 0.2


@pytest.mark.parametrize("mode", ["cell_key", "threshold"])
def test_count_differencing_learns_nothing(centre: Any, mode: str) -> None:
    rows = centre["rows"]
    targets = unique_targets(rows, TARGETS, lambda r: r["topography"].startswith("C18"))
    mode_stage = most_common(rows, "stage_summary")
    out = count_attack(asker(centre, mode), None, targets, "stage_summary", STAGES, mode_stage)
    assert out.unchanged == TARGETS
    assert out.successes == out.baseline
    if mode == "threshold":   # exact counts: the control names every target's stage
        control = count_attack(asker(centre, mode, ledger=False), None, targets, "stage_summary", STAGES, mode_stage)
        assert control.rate >= 0.9


@pytest.mark.parametrize("mode", ["cell_key", "threshold"])
def test_summary_differencing_learns_nothing(centre: Any, mode: str) -> None:
    rows = centre["rows"]
    breast = [r for r in rows if r["topography"].startswith("C50")]
    targets = unique_targets(rows, TARGETS, lambda r: r["topography"].startswith("C50")
                             and r["tumour_size_mm"] is not None)
    mode_size = most_common(breast, "tumour_size_mm")
    out = summary_attack(asker(centre, mode), BREAST, targets, "tumour_size_mm", mode_size)
    assert out.unchanged == TARGETS
    assert out.successes == out.baseline
    control = summary_attack(asker(centre, mode, ledger=False), BREAST, targets, "tumour_size_mm", mode_size)
    if mode == "threshold":   # Σx exact: the difference is the target's size
        assert control.rate == 1.0
    else:                     # Σx under the magnitude perturbation: the difference is noise
        assert control.rate <= out.baseline_rate + 0.1
