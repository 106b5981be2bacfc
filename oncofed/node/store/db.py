"""Opening the store and migrating it, one migration list per component.

Each component (tumours, trust state, audit log, ...) registers its own ordered migrations; the
store records the version each component reached in `schema_versions`. Every migration runs in
its own IMMEDIATE transaction, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlite_utils

Migration = Callable[[sqlite3.Connection], None]
_REGISTRY: dict[str, Sequence[Migration]] = {}


def register_migrations(component: str, migrations: Sequence[Migration]) -> None:
    """Declare a component's migrations in order; index i brings it to version i + 1.

    Never edit or reorder a released migration: append a new one.
    """
    _REGISTRY[component] = migrations


def connect(path: Path, *, create: bool = False) -> sqlite_utils.Database:
    """Open the store with the settings every writer relies on.

    WAL lets readers (status, queries) run while an ingest writes; synchronous=FULL makes a
    committed ingest or ledger entry survive power loss, not only a process crash.
    """
    if not create and not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return sqlite_utils.Database(conn)


def migrate(db: sqlite_utils.Database, components: Sequence[str] | None = None) -> dict[str, int]:
    """Apply pending migrations of the registered components; return their versions."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    versions: dict[str, int] = {}
    for component in components or sorted(_REGISTRY):
        steps = _REGISTRY[component]
        row = conn.execute(
            "SELECT version FROM schema_versions WHERE component = ?", (component,)
        ).fetchone()
        current = row[0] if row else 0
        for target in range(current + 1, len(steps) + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                steps[target - 1](conn)
                conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, target),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        versions[component] = max(current, len(steps))
    return versions
