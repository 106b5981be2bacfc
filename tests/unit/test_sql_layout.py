"""SQL lives only in oncofed/node/store/ (DESIGN §9), and every node has every component's tables.

The SQL check reads source with `ast`, so it sees string constants and `.execute(...)` calls and
ignores comments and prose. A statement is a string constant that starts with an upper-case SQL
keyword; in an f-string only its first literal part counts (later parts may start with anything).
"""

from __future__ import annotations

import ast
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from oncofed.node.store import audit_table
from oncofed.node.store.migrations import MIGRATIONS

PACKAGE = Path(__file__).resolve().parents[2] / "oncofed"
STORE = PACKAGE / "node" / "store"
GENERATED = PACKAGE / "v1"

#: Modules outside the store still allowed to hold SQL. Shrink it; never grow it. The compiler
#: emits parameterised WHERE fragments by design (the store runs them).
SQL_ALLOWED_OUTSIDE_STORE = frozenset({
    "oncofed/node/query/compiler.py",
    "oncofed/federation/hub/store.py",   # the hub's own store (D14): it never touches a centre's data
})

SQL_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|BEGIN|COMMIT|ROLLBACK|PRAGMA|WITH)\b")
EXECUTE = frozenset({"execute", "executemany", "executescript"})

#: Every component's tables, spelled out so that dropping a component from MIGRATIONS fails here.
TABLES = {
    "store": {"node_meta", "ingests"},
    "trust": {"trust_root", "trust_documents", "trust_permits", "trust_version"},
    "audit": {"audit_log", "audit_checkpoints", "audit_head"},
    "verify": {"seen_nonces"},
    "query": {"query_rate_events", "query_privacy_budgets", "query_privacy_charges"},
    "federation": {"fed_pending", "fed_answers", "fed_declines", "fed_abstentions", "fed_evidence"},
    "ledger": {"ledger_entries", "ledger_answers", "ledger_queries", "ledger_sets"},
    "rounds": {"model_rounds"},
    "flower": {"flower_runs", "flower_answers", "flower_declines"},
}


def sql_in(source: str) -> list[tuple[int, str]]:
    """(line, what) for every SQL statement and `.execute`-style call in `source`."""
    tree = ast.parse(source)
    tail_parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                  for part in node.values[1:]}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in tail_parts and SQL_STATEMENT.match(node.value)):
            found.append((node.lineno, f"SQL {node.value.strip()[:50]!r}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in EXECUTE):
            found.append((node.lineno, f".{node.func.attr}(...) call"))
    return sorted(found)


def checked_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if not p.is_relative_to(STORE) and not p.is_relative_to(GENERATED)
                  and p.relative_to(PACKAGE.parent).as_posix() not in SQL_ALLOWED_OUTSIDE_STORE)


def test_no_sql_outside_the_store() -> None:
    offences = [f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
                for path in checked_modules() for line, what in sql_in(path.read_text("utf-8"))]
    assert not offences, "SQL belongs in oncofed/node/store/:\n" + "\n".join(offences)


def test_the_allowance_names_existing_modules() -> None:
    """A module that moved or went away must leave the allowance too."""
    assert all((PACKAGE.parent / name).is_file() for name in SQL_ALLOWED_OUTSIDE_STORE)


@pytest.mark.parametrize("source", [
    'conn.execute(sql)',
    'Q = "SELECT 1"',
    'Q = "  INSERT INTO t VALUES (?)"',
    'Q = ("DELETE FROM t "\n     "WHERE a = ?")',
    'Q = f"UPDATE {table} SET a = 1"',
    'cur.executemany(sql, rows)',
])
def test_the_check_sees_sql(source: str) -> None:
    assert sql_in(source)


@pytest.mark.parametrize("source", [
    '# SELECT * FROM tumours',
    'msg = "select the cohort first"',
    'msg = f"{n} DELETE requests"',
    'msg = "Selected: UPDATE later"',
    'executor.submit(job)',
])
def test_the_check_ignores_prose(source: str) -> None:
    assert not sql_in(source)


def test_the_check_catches_a_planted_violation() -> None:
    """A node module that regains SQL is reported (the check reads files, not imports)."""
    clean = (PACKAGE / "node" / "audit.py").read_text("utf-8")
    planted = "\n".join([clean, "def _count(conn):", '    return conn.execute("SELECT count(*) FROM audit_log")'])
    assert sql_in(clean) == []
    assert [what for _, what in sql_in(planted)] == [".execute(...) call", "SQL 'SELECT count(*) FROM audit_log'"]


def test_migrations_are_one_explicit_list() -> None:
    assert list(MIGRATIONS) == ["store", "trust", "audit", "verify", "query", "federation", "ledger", "rounds",
                                "flower"]
    for component, steps in MIGRATIONS.items():
        assert steps, component
        assert all(step.__module__.startswith("oncofed.node.store.") for step in steps), component


def _tables_made_by(component: str) -> set[str]:
    conn = sqlite3.connect(":memory:")
    for step in MIGRATIONS[component]:
        step(conn)
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_each_component_makes_its_tables() -> None:
    assert {c: _tables_made_by(c) for c in MIGRATIONS} == TABLES


def test_a_fresh_node_has_every_components_tables(tmp_path: Path) -> None:
    """In a fresh interpreter that imports nothing but init_node: no table may depend on which
    other modules a process happened to import."""
    script = (
        "import json, sqlite3, sys\n"
        "from pathlib import Path\n"
        "from oncofed.node.node import init_node\n"
        "paths = init_node(Path(sys.argv[1]), 'centre-a')\n"
        "conn = sqlite3.connect(paths.store)\n"
        "tables = [n for (n,) in conn.execute(\"SELECT name FROM sqlite_master WHERE type = 'table'\")]\n"
        "versions = dict(conn.execute('SELECT component, version FROM schema_versions'))\n"
        "print(json.dumps({'tables': tables, 'versions': versions}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "node")], env=env,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    store = json.loads(out)
    wanted = set().union(*TABLES.values(), *(_tables_made_by(c) for c in MIGRATIONS))
    assert wanted <= set(store["tables"])
    assert {"tumours", "schema_versions"} <= set(store["tables"])
    assert store["versions"] == {c: len(steps) for c, steps in MIGRATIONS.items()}
    assert store["versions"] == {"store": 1, "trust": 2, "audit": 2, "verify": 1, "query": 1, "federation": 3,
                                 "ledger": 2, "rounds": 1, "flower": 2}


def test_audit_rows_hold_exactly_the_hashed_columns() -> None:
    """The chain hashes oncofed.node.audit.COLUMNS; the table must store exactly those, then the
    two hashes, or an entry read back would not hash as written."""
    from oncofed.node.audit import COLUMNS

    assert (*COLUMNS, "prev_hash", "entry_hash") == audit_table.ENTRY_COLUMNS
