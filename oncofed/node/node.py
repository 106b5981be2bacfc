"""A node directory as one object: create it, open it, report on it.

`init_node` builds the whole directory beside its final place and renames it into place, so an
interrupted init leaves nothing half-made. `open_node` refuses a directory that is not a node or
was created under another dictionary: a store's columns only mean what its dictionary says.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncofed import __version__
from oncofed import dictionary as dictmod
from oncofed.errors import DictionaryMismatch, NodeError, StoreLocked, UsageError
from oncofed.keys.cellkey import RecordKeyer
from oncofed.keys.pseudonym import Pseudonymiser
from oncofed.keys.secrets import create_secret_file, load_secret_file
from oncofed.node.config import (
    LEDGER_KEY,
    NODE_ID_RE,
    PERTURBATION_KEY,
    PSEUDONYM_KEY,
    NodeConfig,
    NodePaths,
    load_config,
)
from oncofed.node.store import db as dbmod
from oncofed.node.store import meta
from oncofed.node.store.ingest import Ingestor, IngestResult, Progress
from oncofed.node.store.schema import create_labelled_view, create_tumour_table


@dataclass
class Node:
    """An opened node directory: its config, dictionary and store connection."""

    paths: NodePaths
    config: NodeConfig
    dictionary: dictmod.Dictionary
    db: dbmod.StoreDB
    _side: list[sqlite3.Connection] = field(default_factory=list, repr=False)
    _side_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextmanager
    def side_connection(self) -> Iterator[sqlite3.Connection]:
        """A second connection to the store, for writes made while a read snapshot stays open on
        `conn` (the release ledger's, inside an answer). Kept in a small pool: opening one costs
        several milliseconds (the pragmas), which every federated answer would otherwise pay; one
        connection serves one caller at a time."""
        with self._side_lock:
            conn = self._side.pop() if self._side else None
        if conn is None:
            conn = dbmod.connect(self.paths.store).conn
        try:
            yield conn
        except BaseException:
            conn.close()                    # a connection left in an unknown state is not reused
            raise
        if conn.in_transaction:
            conn.close()
            return
        with self._side_lock:
            self._side.append(conn)

    def close(self) -> None:
        with self._side_lock:
            side, self._side[:] = list(self._side), []
        for conn in side:
            conn.close()
        self.db.conn.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ingestor(self, today: dt.date | None = None) -> Ingestor:
        key = load_secret_file(self.paths.secret(PSEUDONYM_KEY))
        keyer = RecordKeyer(load_secret_file(self.paths.secret(PERTURBATION_KEY)))
        dbmod.set_page_cache(self.conn, mebibytes=16)  # while loading
        ingestor = Ingestor(self.conn, self.dictionary, Pseudonymiser(key),
                            batch_rows=self.config.batch_rows, max_faults=self.config.max_faults_shown,
                            today=today, record_keyer=keyer)
        if self.config.workers:  # 0 keeps the automatic choice
            ingestor.workers = self.config.workers
        return ingestor

    def ingest(self, path: Path, progress: Progress | None = None, today: dt.date | None = None,
               on_lock_wait: Callable[[str], None] | None = None) -> IngestResult:
        """Load one file; `on_lock_wait` hears who holds the store when the load has to wait."""
        ingestor = self.ingestor(today)
        ingestor.on_lock_wait = on_lock_wait
        return ingestor.ingest(path, progress)

    def status(self) -> dict[str, Any]:
        tumours, patients = meta.counts(self.conn)
        store_bytes = sum(
            p.stat().st_size for p in (self.paths.store, Path(f"{self.paths.store}-wal")) if p.exists()
        )
        versions = dbmod.schema_versions(self.conn)
        return {
            "node_id": self.config.node_id,
            "dictionary": self.dictionary.identity(),
            "dictionary_label": self.dictionary.label(),
            "tumours": tumours,
            "patients": patients,
            "last_ingest": meta.last_ingest(self.conn),
            "store_bytes": store_bytes,
            "schema_versions": versions,
            "software_version": __version__,
        }


def init_node(root: Path, node_id: str, extension: Path | None = None) -> NodePaths:
    """Create a node directory with config, secrets (0600) and an empty store."""
    if not NODE_ID_RE.match(node_id):
        raise UsageError(f"node id {node_id!r} must be 2-63 lower-case letters, digits or '-'")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"{root} exists and is not an empty directory")
    try:
        d = dictmod.load(extension)
    except dictmod.DictionaryError as exc:
        raise UsageError(str(exc)) from None
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
    try:
        paths = NodePaths(staging)
        os.chmod(staging, 0o700)  # the directory holds secrets and patient-level data
        paths.secrets.mkdir(mode=0o700)
        paths.logs.mkdir()
        for name in (PSEUDONYM_KEY, PERTURBATION_KEY, LEDGER_KEY):
            create_secret_file(paths.secret(name))
        if extension is not None:
            shutil.copyfile(extension, paths.extension)
        cfg = NodeConfig(node_id=node_id, dictionary=d.identity())
        paths.config.write_text(cfg.render(), "utf-8")
        store = dbmod.connect(paths.store, create=True)
        try:
            dbmod.migrate(store)
            with dbmod.immediate(store.conn) as conn:
                create_tumour_table(conn, d)
                create_labelled_view(conn, d)
                meta.set_meta(conn, {
                    "node_id": node_id, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "created_by": f"oncofed {__version__}",
                    **{f"dictionary.{k}": v for k, v in d.identity().items()},
                })
            dbmod.checkpoint_wal(store.conn)
        finally:
            store.conn.close()
        if root.exists():
            root.rmdir()
        os.rename(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return NodePaths(root)


def open_node(root: Path) -> Node:
    """Open an initialised node directory, checking it matches this oncofed's dictionary.

    Every component's migrations run here (store.migrations), so an opened node has every table
    whatever else this process imported, and a store made by an older oncofed catches up."""
    cfg = load_config(root)
    paths = NodePaths(root)
    try:
        d = dictmod.load(paths.extension if paths.extension.exists() else None)
    except dictmod.DictionaryError as exc:
        raise NodeError(f"{root}: {exc}") from None
    if d.identity() != cfg.dictionary:
        raise DictionaryMismatch(
            f"{root} was created with dictionary {_label(cfg.dictionary)}, but this oncofed loads "
            f"{d.label()}; upgrade or use a node created with this dictionary"
        )
    try:
        store = dbmod.connect(paths.store)
    except FileNotFoundError:
        raise NodeError(f"{root}: the store {paths.store.name} is missing") from None
    try:
        dbmod.migrate(store)
        stored = meta.get_meta(store.conn)
    except StoreLocked:
        store.conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        store.conn.close()
        raise dbmod.store_error(paths.store, exc) from None
    recorded = {k.removeprefix("dictionary."): v for k, v in stored.items() if k.startswith("dictionary.")}
    if recorded != d.identity():
        store.conn.close()
        raise DictionaryMismatch(
            f"{root}: the store was created with dictionary {_label(recorded)}; node.toml and "
            f"the store disagree or the store belongs to another node"
        )
    return Node(paths=paths, config=cfg, dictionary=d, db=store)


def _label(identity: dict[str, str]) -> str:
    ext = ""
    if identity.get("extension_name"):
        ext = f" + {identity.get('extension_name')} {identity.get('extension_version')}"
    return f"{identity.get('name')} {identity.get('version')}{ext}"
