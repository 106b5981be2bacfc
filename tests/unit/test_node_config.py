"""What a new centre admin meets in node.toml: every setting shown with its default, and a wrong
value refused by its key and type with one line and exit code 1 — never a Python error."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib

import pytest
from click.testing import CliRunner

from oncofed.analyses import KINDS
from oncofed.cli import main
from oncofed.node.config import QUERY_COMMENTS
from oncofed.node.node import init_node, open_node
from oncofed.node.query.engine import load_policy
from oncofed.node.query.policy import NodePolicy


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_generated_node_toml_shows_every_query_setting_with_its_default_and_a_comment(node_dir):
    text = (node_dir / "node.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    names = [f.name for f in dataclasses.fields(NodePolicy)]
    assert list(raw["query"]) == names
    assert NodePolicy.from_mapping(raw["query"]) == NodePolicy()
    with open_node(node_dir) as node:
        assert load_policy(node) == NodePolicy()
    lines = text.splitlines()
    for name in names:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
        assert lines[at - 1].startswith("# "), f"{name} has no comment above it"
        assert QUERY_COMMENTS[name]
    assert max(len(line) for line in lines) <= 100
    # The optional sections are shown commented out, so appending them stays valid TOML.
    for section in ("identity", "tls", "audit", "hub"):
        assert f"# [{section}]" in text and section not in raw


def _edit(node_dir, old, new):
    cfg = node_dir / "node.toml"
    text = cfg.read_text("utf-8")
    assert re.search(rf"^{re.escape(old)}$", text, flags=re.M), old
    cfg.write_text(re.sub(rf"^{re.escape(old)}$", new, text, count=1, flags=re.M), "utf-8")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("min_cell_count = 10", 'min_cell_count = "10"',
     "[query] min_cell_count must be a whole number ≥ 1, not '10' (text)"),
    ("min_cell_count = 10", "min_cell_count = 0", "[query] min_cell_count must be a whole number ≥ 1, not 0"),
    ("max_rows = 10000000", "max_rows = 1.5e7", "[query] max_rows must be a whole number ≥ 1, not 15000000.0"),
    ('mode = "cell_key"', "mode = 1", "[query] mode must be text, not 1"),
    ('mode = "cell_key"', 'mode = "noise"', "[query] query mode must be one of cell_key, threshold, none"),
    ("allow_exact_survival_times = false", 'allow_exact_survival_times = "no"',
     "[query] allow_exact_survival_times must be true or false, not 'no' (text)"),
    ('allowed_analyses = [\n' + "".join(f'    "{k}",\n' for k in KINDS) + "]",
     'allowed_analyses = "count"', "[query] allowed_analyses must be a list of names, not 'count' (text)"),
    ("max_depth = 8", "max_depth = 500", "[query] max_depth must be a whole number from 1 to 32, not 500"),
    ("dp_delta = 1e-09", "dp_delta = 2", "[query] dp_delta must be a number from 0 to 1, not 2"),
    ("max_nodes = 64", "max_node = 64", "unknown [query] setting 'max_node' (known: min_cell_count,"),
    ("workers = 0", 'workers = "four"', "[ingest] workers must be a whole number from 0 to 64, not 'four' (text)"),
    ("workers = 0", "workers = -1", "[ingest] workers must be a whole number from 0 to 64, not -1"),
    ("workers = 0", "workers = 2.5", "[ingest] workers must be a whole number from 0 to 64, not 2.5"),
    ("batch_rows = 5000", "batch_rows = true", "[ingest] batch_rows must be a whole number from 1 to"),
    ('listen = "127.0.0.1:7443"', "listen = 7443", "[admin] listen must be text, not 7443"),
    ('id = "centre-test"', 'id = "Centre A"', "[node] id 'Centre A' must be 2-63 lower-case letters"),
])
def test_a_wrong_setting_names_its_key_and_type_in_one_line(node_dir, old, new, message):
    _edit(node_dir, old, new)
    for command in (("node", "status"), ("node", "summary")):
        result = run(*command, "-n", node_dir)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {node_dir / 'node.toml'}: "), lines
        assert message in lines[0]
        assert "not supported between" not in lines[0] and "invalid literal" not in lines[0]


def test_a_wrong_query_setting_stops_the_preview_before_any_query(node_dir, tmp_path):
    _edit(node_dir, "min_cell_count = 10", 'min_cell_count = "10"')
    q = tmp_path / "q.json"
    q.write_text('{"analysis": "count"}')
    result = run("node", "query", q, "-n", node_dir)
    assert result.exit_code == 1
    assert "[query] min_cell_count must be a whole number ≥ 1, not '10' (text)" in result.stderr


def test_a_missing_node_hints_the_full_init_command(tmp_path):
    result = run("node", "status", "-n", tmp_path / "nowhere")
    assert result.exit_code == 1
    assert f"run: oncofed node init {tmp_path / 'nowhere'} --id CENTRE_ID" in result.stderr


def test_with_json_an_error_is_a_json_object_with_the_same_exit_code(node_dir, tmp_path):
    missing = run("node", "status", "-n", tmp_path / "nowhere", "--json")
    assert missing.exit_code == 1 and missing.stderr == ""
    err = json.loads(missing.stdout)
    assert err["exit_code"] == 1 and err["kind"] == "NodeError" and "--id CENTRE_ID" in err["error"]
    # a refused query (exit 2), and an error click finds before the command runs (exit 2)
    q = tmp_path / "q.json"
    q.write_text('{"analysis": {"count": {}}, "cohort": {"field": "no_such_field", "equals": "1"}}')
    refused = run("node", "query", q, "-n", node_dir, "--json")
    assert refused.exit_code == 2 and json.loads(refused.stdout)["kind"] == "QueryError"
    assert "no_such_field" in json.loads(refused.stdout)["error"]
    usage = run("node", "query", tmp_path / "absent.json", "-n", node_dir, "--json")
    assert usage.exit_code == 2
    assert json.loads(usage.stdout) == {"error": json.loads(usage.stdout)["error"], "exit_code": 2,
                                        "kind": "BadParameter"}
    assert "absent.json" in json.loads(usage.stdout)["error"]
    # without --json the same failures stay one line on stderr
    plain = run("node", "status", "-n", tmp_path / "nowhere")
    assert plain.stdout == "" and plain.stderr.startswith("error: ")


def test_init_writes_a_config_that_opens(tmp_path):
    root = init_node(tmp_path / "fresh", "centre-b").root
    with open_node(root) as node:
        assert node.config.node_id == "centre-b" and node.config.workers == 0
