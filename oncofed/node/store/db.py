"""Opening the store and migrating it, one migration list per component.

Each component (store bookkeeping, trust state, audit log, ...) has its own ordered migrations,
all listed in `migrations.MIGRATIONS`; the store records the version each component reached in
`schema_versions`. Every migration runs in its own IMMEDIATE transaction, so a crash
mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Migration = Callable[[sqlite3.Connection], None]


class StoreDB:
    """The store connection, with sqlite-utils' Database API on demand.

    sqlite-utils imports pandas whenever it is installed (half a second and ~50 MB per
    command), so hot paths use `.conn` (stdlib sqlite3) and sqlite-utils is only loaded when
    someone uses its API (introspection, exports): `db["table"]`, `db.tables`, ...
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._utils: Any = None

    @property
    def utils(self) -> Any:
        if self._utils is None:
            import sqlite_utils

            self._utils = sqlite_utils.Database(self.conn)
        return self._utils

    def __getattr__(self, name: str) -> Any:
        return getattr(self.utils, name)

    def __getitem__(self, table: str) -> Any:
        return self.utils[table]

    def close(self) -> None:
        self.conn.close()


@contextmanager
def immediate_unsynced(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """An IMMEDIATE transaction committed without waiting for the disk (synchronous=NORMAL),
    for records whose loss on power failure costs nothing that matters: a rate-limit event (a
    soft limit) or an accepted-but-unanswered federated query (it fails; nothing was released).
    It still survives a process crash (WAL), and the next FULL commit on the file syncs it too.
    Each FULL commit costs about 2 ms here; a federated answer would otherwise pay several."""
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        with immediate(conn) as c:
            yield c
    finally:
        conn.execute("PRAGMA synchronous=FULL")


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One IMMEDIATE transaction: the write lock is taken at BEGIN (so a check-then-write inside
    cannot race another writer), committed on success, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One deferred read transaction: a consistent view that, in WAL mode, blocks no writer."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def connect(path: Path, *, create: bool = False) -> StoreDB:
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
    return StoreDB(conn)


def set_page_cache(conn: sqlite3.Connection, mebibytes: int) -> None:
    """Size this connection's page cache (a bulk load wants more than SQLite's ~2 MB default)."""
    conn.execute(f"PRAGMA cache_size={-1024 * int(mebibytes)}")


def checkpoint_wal(conn: sqlite3.Connection) -> None:
    """Fold the WAL into the main file and truncate it, so a fresh store is one file."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def schema_versions(conn: sqlite3.Connection) -> dict[str, int]:
    """The version each component's migrations reached in this store."""
    return dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())


def migrate(db: StoreDB, components: Sequence[str] | None = None) -> dict[str, int]:
    """Apply pending migrations of `components` (default: every component, in the order
    `migrations.MIGRATIONS` lists them); return their versions."""
    # Imported when called: the migration list imports the table modules, some of which import this one.
    from oncofed.node.store.migrations import MIGRATIONS

    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    versions: dict[str, int] = {}
    for component in components or list(MIGRATIONS):
        steps = MIGRATIONS[component]
        row = conn.execute(
            "SELECT version FROM schema_versions WHERE component = ?", (component,)
        ).fetchone()
        current = row[0] if row else 0
        for target in range(current + 1, len(steps) + 1):
            with immediate(conn):
                steps[target - 1](conn)
                conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, target),
                )
        versions[component] = max(current, len(steps))
    return versions
