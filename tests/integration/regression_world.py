"""Real nodes holding a dataset split across centres, and a coordinator that drives a model fit
through each node's one answering pipeline (signed envelope → verify → engine → disclosure →
vector → audit), summing the vectors mod 2^128 — the query plane without its transport, which
test_regression_federated covers. For the datasets' exactness and the edge cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from node_fed_helpers import Fed, make_fed, query_body, signed
from regression_data import EXTENSION, registry_rows, write_csv

from oncofed import dictionary as dictmod
from oncofed.analyses import finalise, parse_analysis
from oncofed.analyses.fitting import ModelFit
from oncofed.analyses.model_result import ModelResult
from oncofed.analyses.newton import FitOptions
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.node import Node, init_node, open_node
from oncofed.node.query.policy import NodePolicy
from oncofed.node.verify import QueryVerifier
from oncofed.query import sum_vectors
from oncofed.query.textform import analysis_from, cohort_from

FIELDS = ["x1", "x2", "x3", "x4", "x5", "h1", "h2", "s1", "w1", "k1", "k2",
    "b1", "b2", "b3", "b4", "b5", "b6", "c1", "c2", "age_at_incidence", "sex"]
EXACT = NodePolicy(mode="threshold", min_cell_count=1, rate_per_minute=100_000, rate_per_day=1_000_000)
#: EXACT, and the centre opts in to the pooled Cox model and allows exact survival times (a 1-day lattice).
POOLED = NodePolicy(mode="threshold", min_cell_count=1, rate_per_minute=100_000, rate_per_day=1_000_000,
                    allow_pooled_cox=True, allow_exact_survival_times=True, max_values=200_000)


@dataclass
class Network:
    fed: Fed
    pipelines: dict[str, AnsweringPipeline]
    permit: dict[str, str]
    d: dictmod.Dictionary
    nodes: list[Node] = field(default_factory=list)

    def close(self) -> None:
        for p in self.pipelines.values():
            p.verifier.close()
        for n in self.nodes:
            n.close()

    def with_policy(self, policy: NodePolicy) -> dict[str, AnsweringPipeline]:
        return {c: AnsweringPipeline(p.node, p.verifier, policy) for c, p in self.pipelines.items()}


def network(base: Path, parts: Sequence[list[dict[str, str]]], *, policy: NodePolicy = EXACT,
            min_cell_count: int = 1, exact_dates: bool = False) -> Network:
    """One node per part of registry rows (regression_data.registry_rows), ingested for real;
    `exact_dates`: the permits allow exact dates (a 1-day survival lattice, with the policy's leave)."""
    centres = tuple(f"centre-{chr(97 + i)}" for i in range(len(parts)))
    fed = make_fed(base, centres=centres, researchers=("res-1",))
    d = dictmod.load(EXTENSION)
    pipelines, permits, nodes = {}, {}, []
    for centre, rows in zip(centres, parts, strict=True):
        node = open_node(init_node(base / centre, centre, extension=EXTENSION).root)
        node.ingest(write_csv(rows, base / f"{centre}.csv"))
        trust = fed.attach(node.paths.store, centre)
        permits[centre] = fed.permit(trust, analyses=["logistic", "cox", "poisson", "cox_pooled", "count"],
                                     fields=FIELDS, min_cell_count=min_cell_count, outcomes=["os", "rfs"],
                                     allow_exact_dates=exact_dates)
        trust.close()
        pipelines[centre] = AnsweringPipeline(node, QueryVerifier.for_node(node), policy)
        nodes.append(node)
    return Network(fed, pipelines, permits, d, nodes)


def split(frame: pd.DataFrame, by: Sequence[int], **mapping: Any) -> list[list[dict[str, str]]]:
    """The frame's rows as registry rows, one list per centre label in `by` (0, 1, 2, …)."""
    frame = frame.assign(_centre=list(by))
    return [registry_rows(part.drop(columns="_centre").to_dict("records"), prefix=f"C{c}", **mapping)
            for c, part in sorted(frame.groupby("_centre"), key=lambda kv: kv[0])]


def fit(net: Network, model: Any, *, cohort: Any = None, options: FitOptions | None = None,
        pipelines: dict[str, AnsweringPipeline] | None = None) -> ModelResult:
    """Fit `model` (its text form) over the network's pipelines, round by round."""
    pipelines = pipelines or net.pipelines
    centres = tuple(pipelines)
    f = ModelFit(analysis_from(model, "model"), net.d, options or FitOptions())
    while (analysis := f.next_analysis()) is not None:
        vectors = []
        for centre, pipeline in pipelines.items():
            body = query_body(net.permit[centre], targets=centres, d=net.d)
            body.ClearField("cohort")
            if cohort is not None:
                body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
            body.analysis.CopyFrom(analysis)
            vectors.append(pipeline.answer_envelope(signed(net.fed.identities["res-1"], body)).vector)
        spec = parse_analysis(analysis, net.d)
        f.observe({**finalise(spec, sum_vectors(vectors), members=len(vectors))})
    return f.result(participants=list(centres))
