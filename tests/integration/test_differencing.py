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
from differencing_attack import Ask, count_attack, crosstab_attack, summary_attack, u_of, unique_targets
from node_fed_helpers import make_fed, query_body, signed

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise_query
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.node.store.ledger import Participation
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
    assert control.rate >= 0.6 and control.rate > out.baseline_rate + 0.2   # cell key: ≈ 0.87 expected


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


def ledger_counts(node: Any) -> tuple[int, int]:
    entries = node.conn.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]
    releases = node.conn.execute("SELECT count(*) FROM ledger_entries WHERE release_id IS NULL").fetchone()[0]
    return int(entries), int(releases)


def test_the_same_rows_stay_answerable_and_a_near_duplicate_is_the_earlier_rows(centre: Any) -> None:
    """Newton-style: the identical row set under new parameters is computed afresh; a cohort one
    row away under new parameters is computed over the earlier release's rows (threshold: exact)."""
    ask = asker(centre, "threshold")
    target = unique_targets(centre["rows"], 1, lambda r: r["topography"].startswith("C50")
                            and r["tumour_size_mm"] is not None)[0]
    plain = {"summary": {"field": "tumour_size_mm"}}
    scaled = {"summary": {"field": "tumour_size_mm", "scale_bits": 3}}
    v0, r0 = ask(BREAST, plain)
    v3, r3 = ask(BREAST, scaled)
    assert v3 != v0 and v3[1] == 8 * v0[1] and r3["n"] == r0["n"]          # same rows, new parameters
    without = {"and": [BREAST, {"not": u_of(target)}]}
    w3, _ = ask(without, scaled)
    assert w3 == v3                                   # near duplicate, same analysis: the same bytes
    w5, r5 = ask(without, {"summary": {"field": "tumour_size_mm", "scale_bits": 5}})
    assert w5[1] == 32 * v0[1] and r5["n"] == r0["n"]  # new parameters: still over the earlier rows


def test_rows_an_analysis_never_reads_do_not_pad_the_distance(centre: Any) -> None:
    """Kaplan–Meier reads first primaries only: removing the target and every later primary
    changes the cohort by ~130 rows but the rows read by one — still a near duplicate."""
    fed, d = centre["fed"], centre["d"]
    permit = fed.permit(centre["trust"], analyses=["kaplan_meier"], fields=[*FIELDS, "tumour_seq"], min_cell_count=10,
                        outcomes=["os"])
    pipeline = AnsweringPipeline(centre["node"], centre["verifier"], policy("cell_key"))
    target = unique_targets(centre["rows"], 1, lambda r: r["tumour_seq"] == 1 and r["dco"] == 0
                            and r["topography"].startswith("C50"))[0]
    later = sum(1 for r in centre["rows"] if r["tumour_seq"] > 1)
    assert later >= 2 * 10
    km = {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31"}}
    padded = {"and": [{"not": u_of(target)}, {"field": "tumour_seq", "equals": 1}]}

    def ask(cohort: dict[str, Any] | None) -> list[int]:
        body = query_body(permit, targets=(CENTRE,), d=d)
        body.ClearField("cohort")
        if cohort is not None:
            body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
        body.analysis.CopyFrom(analysis_from(km, "analysis"))
        return pipeline.answer_envelope(signed(fed.identities["res-1"], body)).vector

    everyone = ask(None)
    assert ask(padded) == everyone


def test_dp_and_the_local_admin_are_not_ledgered(centre: Any) -> None:
    from oncofed.node.answering import preview
    from oncofed.query.textform import from_mapping

    fed, d, node = centre["fed"], centre["d"], centre["node"]
    before = ledger_counts(node)
    permit = fed.permit(centre["trust"], analyses=["count"], fields=FIELDS, min_cell_count=10, epsilon=5.0)
    pipeline = AnsweringPipeline(node, centre["verifier"], policy("cell_key"))
    vectors = []
    for _ in range(2):
        body = query_body(permit, targets=(CENTRE,), d=d)
        body.epsilon = 0.5
        vectors.append(pipeline.answer_envelope(signed(fed.identities["res-1"], body)).vector)
    preview(node, from_mapping({"analysis": "count"}, dictionary=d), policy=policy("cell_key"))
    assert ledger_counts(node) == before                 # DP permits stay as they are: fresh noise, paid ε


def test_the_audit_log_looks_the_same_on_every_ledger_path(centre: Any) -> None:
    """A fresh release and one served from the ledger leave the same entries (event, decision,
    counters' presence); only the local detail names the ledger's decision."""
    from oncofed.query import query_hash

    fed, d = centre["fed"], centre["d"]
    permit = fed.permit(centre["trust"], analyses=["count"], fields=FIELDS, min_cell_count=10)
    pipeline = AnsweringPipeline(centre["node"], centre["verifier"], policy("cell_key"))
    target = unique_targets(centre["rows"], 1, lambda r: True)[0]
    entries = []
    for cohort in (None, {"not": u_of(target)}):
        body = query_body(permit, targets=(CENTRE,), d=d)
        body.ClearField("cohort")
        if cohort is not None:
            body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
        envelope = signed(fed.identities["res-1"], body)
        pipeline.answer_envelope(envelope)
        entries.append(pipeline.verifier.audit.entries(query_hash=query_hash(envelope)))
    fresh, served = entries
    shape = [[(e.event, e.decision, e.reason, e.who, e.analysis) for e in es] for es in entries]
    assert shape[0] == shape[1] and [s[:2] for s in shape[0]] == [("query.verify", "accepted"),
                                                                 ("query.answer", "answered")]
    assert (fresh[-1].detail["ledger"], served[-1].detail["ledger"]) == ("new", "near_duplicate")
    assert served[-1].detail["ledger_release"] == fresh[-1].detail["ledger_entry"]


def test_the_participant_set_is_kept_with_the_release(centre: Any) -> None:
    """The federation's hook: the same release answered under another participant set (with no
    abstentions, D26) is flagged for the caller; under the same set it is the stored bytes."""
    fed, d, node = centre["fed"], centre["d"], centre["node"]
    permit = fed.permit(centre["trust"], analyses=["count"], fields=FIELDS, min_cell_count=10)
    target = unique_targets(centre["rows"], 1, lambda r: True)[0]
    flags, vectors = [], []
    s1, s2 = Participation.of(["centre-a", "centre-b", "centre-c"]), Participation.of(["centre-a", "centre-b"])
    for cohort, participants in ((None, s1), ({"not": u_of(target)}, s1), (None, s2)):
        body = query_body(permit, targets=(CENTRE,), d=d)
        body.ClearField("cohort")
        if cohort is not None:
            body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
        verified = centre["verifier"].verify(signed(fed.identities["res-1"], body))
        ans = answer(node, verified.body, verified.permit, policy=policy("cell_key"), query_hash=verified.query_hash,
                     participants=participants)
        flags.append(ans.meta["ledger_other_participants"])
        vectors.append(ans.vector)
    assert flags == [False, False, True]
    assert vectors[0] == vectors[1] == vectors[2]


def test_when_the_rows_of_the_release_are_unknown_only_its_stored_answer_or_nothing_goes_out(
        centre: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from oncofed.node.store import ledger as ledgermod

    ask = asker(centre, "threshold")
    target = unique_targets(centre["rows"], 1, lambda r: r["topography"].startswith("C50"))[0]
    before, _ = ask(BREAST, "count")
    monkeypatch.setattr(ledgermod, "MAX_DECODES", 0)                  # the next near duplicate: unknown rows
    without = {"and": [BREAST, {"not": u_of(target)}]}
    same, _ = ask(without, "count")
    assert same == before                                             # the stored answer of the release
    _, result = ask(without, {"crosstab": {"fields": ["stage_summary"]}})
    assert result["suppressed_centres"] == 1 and result["total"] == 0  # never an answer over the cohort's own rows
