"""Opening the store and migrating it, one migration list per component.

Each component (store bookkeeping, trust state, audit log, ...) has its own ordered migrations,
all listed in `migrations.MIGRATIONS`; the store records the version each component reached in
`schema_versions`. Every migration runs in its own IMMEDIATE transaction, so a crash
mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oncofed.errors import OncofedError, StoreLocked, StoreUnusable

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
    soft limit), an accepted-but-unanswered federated query (it fails; nothing was released),
    the release ledger's entries (the answer's audit entry, committed FULL before the answer
    leaves, syncs them). It still survives a process crash (WAL), and the next FULL commit on the
    file syncs it too. Never for audit entries (`commits_synced`).
    Each FULL commit costs about 2 ms here; a federated answer would otherwise pay several."""
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        with immediate(conn) as c:
            yield c
    finally:
        conn.execute("PRAGMA synchronous=FULL")


def commits_synced(conn: sqlite3.Connection) -> bool:
    """Whether a commit on `conn` now waits for the disk (synchronous=FULL or EXTRA): false only
    inside `immediate_unsynced`. For a writer that must never commit unsynced (the audit log: a
    signed head may name its newest entry at once)."""
    return int(conn.execute("PRAGMA synchronous").fetchone()[0]) >= 2


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One IMMEDIATE transaction: the write lock is taken at BEGIN (so a check-then-write inside
    cannot race another writer), committed on success, rolled back on any exception."""
    begin_immediate(conn)
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


#: How long a command waits for another process's lock on the store before it gives up.
LOCK_WAIT_SECONDS = 30.0


def connect(path: Path, *, create: bool = False) -> StoreDB:
    """Open the store with the settings every writer relies on.

    WAL lets readers (status, queries) run while an ingest writes; synchronous=FULL makes a
    committed ingest or ledger entry survive power loss, not only a process crash. A file that
    is not a database, or a lock held too long by another process, is a StoreUnusable or
    StoreLocked error with one readable line, never a traceback.
    """
    if not create and not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=LOCK_WAIT_SECONDS, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_SECONDS * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise store_error(path, exc) from None
    return StoreDB(conn)


def store_error(path: Path, exc: sqlite3.DatabaseError) -> OncofedError:
    """The one-line error for a store SQLite refuses to open or to lock."""
    if is_busy(exc):
        return StoreLocked(locked_message(path))
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return StoreUnusable(f"{path} is not a usable oncofed store (not an SQLite database, or damaged: "
                             f"{text}); restore it from your backup")
    return StoreUnusable(f"{path}: the store cannot be opened ({text})")


def is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(exc)


def locked_message(path: Path, waited: bool = True) -> str:
    """Which file is locked and by whom; with `waited`, that the wait ran out and what to do."""
    holders = lock_holders(path)
    who = f" ({'; '.join(holders)})" if holders else ""
    locked = f"the store {path} is locked by another process{who}"
    if not waited:
        return f"waiting up to {LOCK_WAIT_SECONDS:g} s: {locked}"
    return (f"{locked}; gave up after {LOCK_WAIT_SECONDS:g} s. Another ingest or admin command may "
            "still be running: try again when it has finished")


def lock_holders(path: Path) -> list[str]:
    """Which other processes hold a write lock on the store or its WAL index, from Linux's
    /proc/locks (best effort: empty elsewhere or when the holder is not visible)."""
    files = set()
    for p in (path, Path(f"{path}-shm")):
        try:
            st = p.stat()
        except OSError:
            continue
        files.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    pids: list[int] = []
    for line in table.splitlines():
        parts = line.split()
        try:
            kind, pid, dev = parts[3], int(parts[4]), parts[5].split(":")
            key = (int(dev[0], 16), int(dev[1], 16), int(dev[2]))
        except (IndexError, ValueError):
            continue
        if kind == "WRITE" and key in files and pid not in (os.getpid(), -1) and pid not in pids:
            pids.append(pid)
    return [f"pid {pid}: {_command(pid)}" for pid in pids]


def _command(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode("utf-8", "replace") for a in args if a)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 80 else text[:79] + "…"


def begin_immediate(conn: sqlite3.Connection, on_wait: Callable[[str], None] | None = None) -> None:
    """Take the store's write lock, waiting at most LOCK_WAIT_SECONDS for another writer; say
    who holds it through `on_wait` when there is a wait, raise StoreLocked when it runs out."""
    if on_wait is not None:
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            on_wait(locked_message(_path_of(conn), waited=False))
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_SECONDS * 1000)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise StoreLocked(locked_message(_path_of(conn))) from None
        raise


def store_path(conn: sqlite3.Connection) -> Path:
    """The file a connection's main database is."""
    return _path_of(conn)


def _path_of(conn: sqlite3.Connection) -> Path:
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file)
    return Path("store")


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
