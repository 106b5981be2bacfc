"""The release ledger's substituted rows (oncofed.node.store.substitution) on a real node: every
analysis of the catalogue answered over (C ∖ removed) ∪ added by the three-part statements gives
the very vector the one-condition form `((C) AND rowid NOT IN r) OR rowid IN a` gives — for any id
lists, overlapping, absent from the table or not — and SQLite plans the cohort part exactly as the
cohort alone, the corrections as rowid lookups."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from test_catalogue import CUTOFF, EXAMPLES

from oncofed import dictionary as dictmod
from oncofed.analyses import analysis, parse_analysis, release
from oncofed.node.node import Node, init_node, open_node
from oncofed.node.query.compiler import CompiledCohort, compile_cohort
from oncofed.node.query.engine import status_cutoff
from oncofed.node.query.policy import NodePolicy
from oncofed.node.store.cohort_reads import StoreReader, grouped_statement
from oncofed.node.store.recordkeys import ensure_record_keys
from oncofed.node.store.rowsets import Diff
from oncofed.node.store.substitution import signed_statement
from oncofed.query.textform import analysis_from, cohort_from
from oncofed.query.vector import encode
from oncofed.synth import write_all
from oncofed.v1 import query_pb2 as pb

COHORTS: list[Any] = [
    None,
    {"and": [{"field": "topography", "prefix": "C50"}, {"field": "incidence_date", "from": "2015-01"}]},
    {"and": [{"field": "sex", "equals": "1"}, {"field": "sex", "equals": "2"}]},       # empty
    {"field": "her2", "equals": "pos"},                                                 # NULL for most rows
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("substitution")
    d = dictmod.load()
    made = write_all(base / "csv", 1, 1500, 11, d)
    n = open_node(init_node(base / "centre-a", "centre-a").root)
    n.ingest(made[0].path)
    from oncofed.node.query.engine import _keyer
    ensure_record_keys(n.conn, n.dictionary, _keyer(n))
    yield n
    n.close()


def _old_form(cohort: CompiledCohort, diff: Diff) -> tuple[str, tuple[Any, ...]]:
    """The one-condition form the ledger ran before (the reference here)."""
    return (f"((({cohort.where}) AND rowid NOT IN (SELECT value FROM json_each(?))) "  # noqa: S608 - compiled cohort
            f"OR rowid IN (SELECT value FROM json_each(?)))",
            (*cohort.params, json.dumps(list(diff.remove)), json.dumps(list(diff.add))))


def _cases() -> list[tuple[str, int, int]]:
    return [(kind, i, j) for kind, examples in EXAMPLES.items() for i in range(len(examples))
            for j in range(len(COHORTS))]


@pytest.mark.parametrize(("kind", "i", "j"), _cases())
def test_the_substituted_rows_answer_as_the_one_condition_form(node: Node, kind: str, i: int, j: int) -> None:
    example = EXAMPLES[kind][i]
    body = pb.QueryBody()
    if isinstance(example, dict) and "analysis" in example:
        body.analysis.CopyFrom(analysis_from(example["analysis"], "analysis"))
        cohort_text = example.get("cohort", COHORTS[j])
        body.status_cutoff = example.get("status_cutoff", "")
    else:
        body.analysis.CopyFrom(analysis_from(example, "analysis"))
        cohort_text = COHORTS[j]
    if cohort_text is not None:
        body.cohort.CopyFrom(cohort_from(cohort_text, "cohort"))
    d = node.dictionary
    spec = parse_analysis(body.analysis, d)
    the = analysis(spec.kind)
    cohort = compile_cohort(body.cohort if body.HasField("cohort") else None, d, None,
                            status_cutoff=status_cutoff(body))
    rules = NodePolicy(allow_pooled_cox=True).rules(permit_k=None, epsilon=None)
    top = int(node.conn.execute("SELECT max(rowid) FROM tumours").fetchone()[0])
    rng = random.Random(f"{kind}/{i}/{j}/{CUTOFF}")
    diffs = [Diff(), Diff(add=tuple(sorted(rng.sample(range(1, top + 1), 7)))),
             Diff(remove=tuple(sorted(rng.sample(range(1, top + 1), 40)))),
             # overlapping lists and ids beyond the table: still (C ∖ removed) ∪ added
             Diff(add=tuple(sorted({*rng.sample(range(1, top + 1), 12), top + 5})),
                  remove=tuple(sorted({*rng.sample(range(1, top + 1), 12), top + 9})))]
    for diff in diffs:
        where, params = _old_form(cohort, diff)
        old = StoreReader(node.conn, d, where, params, cohort.fields, status_cutoff=status_cutoff(body))
        new = StoreReader(node.conn, d, cohort.where, cohort.params, cohort.fields,
                          status_cutoff=status_cutoff(body), change=diff)
        raw_old, raw_new = the.local(spec, old, clamp=False), the.local(spec, new, clamp=False)
        assert the.total(raw_new) == the.total(raw_old)
        vectors = [[encode(v) for v in (*out.values, *out.flags)]
                   for out in (release(the, spec, raw, rules) for raw in (raw_old, raw_new))]
        assert vectors[0] == vectors[1], (kind, i, j, diff)


def _plan(node: Node, sql: str, params: list[Any]) -> list[str]:
    return [str(r[3]) for r in node.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.parametrize("j", range(len(COHORTS)))
def test_the_cohort_part_runs_as_the_cohort_alone(node: Node, j: int) -> None:
    d = node.dictionary
    cohort = compile_cohort(cohort_from(COHORTS[j], "cohort") if COHORTS[j] else None, d, None)
    for fields in ((), ("stage_summary", "her2")):
        plain = _plan(node, *grouped_statement(fields, cohort.where, cohort.params))
        sql, params = signed_statement(lambda w, ps, f=fields: grouped_statement(f, w, ps), cohort.where,
                                       cohort.params, Diff(add=(3, 5), remove=(4,)))
        signed = _plan(node, sql, params)
        assert all(step in signed for step in plain), (plain, signed)
        lookups = [s for s in signed if "INTEGER PRIMARY KEY (rowid=?)" in s]
        scans = [s for s in signed if s.startswith(("SCAN tumours", "SEARCH tumours"))]
        assert len(lookups) == 2, signed                      # the corrections: rowid lookups only
        assert len(scans) == len([s for s in plain if s.startswith(("SCAN tumours", "SEARCH tumours"))]) + 2
        if j == 0 and not fields:
            assert any("COVERING INDEX" in s for s in signed)  # a count of every row reads an index

