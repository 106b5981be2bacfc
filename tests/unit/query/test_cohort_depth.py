"""A cohort nested too deep is refused as the contract's depth refusal on every path — the text
form, the compiler, the `node query` command — never by Python's recursion limit or protobuf's
(which refuses messages nested past 100 with a bare DecodeError)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from oncofed import dictionary as dictmod
from oncofed.cli import main
from oncofed.node.query.compiler import compile_cohort
from oncofed.query import QueryError, loads
from oncofed.query.nesting import MAX_COHORT_DEPTH
from oncofed.query.textform import from_mapping
from oncofed.v1 import query_pb2 as pb

D = dictmod.load()
LEAF = {"field": "sex", "equals": "2"}


def nested(levels: int, combine: str) -> dict:
    """A cohort `levels` deep (the leaf's level included), wrapped in `and` or `not`."""
    node: dict = LEAF
    for _ in range(levels - 1):
        node = {"not": node} if combine == "not" else {"and": [node]}
    return node


def as_text(levels: int, combine: str) -> str:
    """The same as JSON text, built without recursion (json.dumps would hit the limit itself)."""
    leaf = json.dumps(LEAF)
    opener, closer = ('{"not": ', "}") if combine == "not" else ('{"and": [', "]}")
    return ('{"analysis": "count", "cohort": ' + opener * (levels - 1) + leaf + closer * (levels - 1) + "}")


@pytest.mark.parametrize("combine", ["and", "not"])
def test_the_deepest_allowed_cohort_survives_the_wire(combine):
    body = from_mapping({"analysis": "count", "cohort": nested(MAX_COHORT_DEPTH, combine)})
    assert pb.QueryBody.FromString(body.SerializeToString()) == body  # protobuf parses it back


@pytest.mark.parametrize("combine", ["and", "not"])
@pytest.mark.parametrize("levels", [MAX_COHORT_DEPTH + 1, 60, 120, 600])
def test_a_deeper_cohort_is_the_depth_refusal(combine, levels):
    with pytest.raises(QueryError) as exc:
        from_mapping({"analysis": "count", "cohort": nested(levels, combine)})
    assert exc.value.code == "INVALID_ARGUMENT"
    assert exc.value.message.endswith(f"the cohort is nested deeper than {MAX_COHORT_DEPTH} levels")
    assert exc.value.path.startswith("cohort.")


@pytest.mark.parametrize("combine", ["and", "not"])
@pytest.mark.parametrize("levels", [60, 2_000, 100_000])
def test_deep_json_text_is_refused_not_a_recursion_error(combine, levels):
    with pytest.raises(QueryError) as exc:
        loads(as_text(levels, combine))
    assert exc.value.code == "INVALID_ARGUMENT" and "deep" in exc.value.message


def test_deep_toml_text_is_refused_not_a_recursion_error():
    text = 'analysis = "count"\ncohort = ' + '{ not = ' * 5_000 + '{ field = "sex", equals = "2" }' + ' }' * 5_000
    with pytest.raises(QueryError, match="nested too deeply"):
        loads(text, "toml")


def test_the_compiler_bounds_depth_whatever_the_policy_says():
    deep = pb.Cohort()
    node = deep
    for _ in range(3_000):  # built in memory: no parser stands in the way
        node = node.negate
    node.equals.CopyFrom(pb.Equals(field="sex", value="2"))
    with pytest.raises(QueryError, match=f"nested deeper than {MAX_COHORT_DEPTH} levels"):
        compile_cohort(deep, D, None, max_depth=10**6, max_nodes=10**6)
    with pytest.raises(QueryError, match="nested deeper than 8 levels"):
        compile_cohort(deep, D, None)


@pytest.mark.parametrize("levels", [MAX_COHORT_DEPTH + 1, 60, 5_000])
def test_node_query_refuses_a_deep_cohort_in_one_line(node_dir, tmp_path, levels):
    q = tmp_path / "deep.json"
    q.write_text(as_text(levels, "and"))
    result = CliRunner().invoke(main, ["node", "query", str(q), "-n", str(node_dir)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "deep" in lines[0]
    assert "Traceback" not in result.output
