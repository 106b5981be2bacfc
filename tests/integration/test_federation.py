"""Federated queries end to end on 127.0.0.1 with mutual TLS: a real hub, three centres' nodes
with real stores and outbound connectors, and the researcher's client (DESIGN §4 "Flow").

For every analysis of the catalogue the federated result equals the pooled statistic under a
policy that releases exact cells; the hub's store holds no plaintext; a declining centre is left
out and named; a centre that fails after the participant set is fixed fails the query cleanly;
a replay is refused; a restarted hub loses nothing; a hub that tampers with what it relays is
caught by the client."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from federation_world import World, make_world

from oncofed import dictionary as dictmod
from oncofed.analyses import KINDS, finalise_query
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy

EXAMPLES: dict[str, Any] = {
    "count": "count",
    "crosstab": {"crosstab": {"fields": ["stage_summary", "her2"]}},
    "summary": {"summary": {"field": "age_at_incidence", "unit_bins": True}},
    "histogram": {"histogram": {"field": "age_at_incidence"}},
    "kaplan_meier": {"kaplan_meier": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}},
    "logrank": {"logrank": {"outcome": "OS", "cutoff": "2025-12-31", "by": "stage_summary"}},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("fed"))
    w.start_hub()
    for c in w.centres.values():
        c.start(w.fed, w.target)
    w.wait_connected()
    yield w
    w.close()


@pytest.fixture(scope="module")
def pooled(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = open_node(init_node(tmp_path_factory.mktemp("pooled") / "pooled", "pooled").root)
    for f in sorted((world.base / "csv").glob("*.csv")):
        node.ingest(f)
    yield node
    node.close()


def close(a: Any, b: Any, path: str = "result") -> None:
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), path
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: {sorted(a)} != {sorted(b)}"
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_federated_result_equals_the_pooled_statistic(world: World, pooled: Any, kind: str) -> None:
    body = world.body(EXAMPLES[kind])
    result = world.client().run(body, dictionary=dictmod.load(), timeout=60)
    assert result.participants == tuple(sorted(world.centres)) and result.declined == {}
    exact = answer(pooled, body, None, policy=NodePolicy(mode="none"))
    expected = finalise_query(body, dictmod.load(), exact.vector)
    got = dict(result.result)
    assert got.pop("centres") == 3 and expected.pop("centres") == 1
    empty, _ = got.pop("suppressed_groups", {}), expected.pop("suppressed_groups", {})
    for group in empty:                    # flagged at k = 1: the centres hold no row of it
        assert group not in expected.get("curves", {}) and group not in expected.get("groups", [])
    close(got, expected)
