"""The node's audit log: every request and decision, append-only, hash-chained and signed.

Each entry stores the hash of the entry before it; its own hash is SHA-256 over a domain tag and
the canonical JSON of all its columns (sequence number included) plus that previous hash. Every
`checkpoint_every` entries, and on demand, the node signs (entry id, entry hash) with its Ed25519
identity key (envelope tag `oncofed/audit-checkpoint/v1`), stores the signed bytes in
`audit_checkpoints` and records the checkpoint as an entry of the chain itself, so removing a
checkpoint row breaks the chain too.

A chain cannot show that it was cut short, so the log's length is also kept elsewhere: the
store's `audit_head` row (moved forward in the same transaction as every append), the head
journal file beside the store (a signed head per checkpoint), and signed heads in every reply
the node sends (`signed_head()`; oncofed.node.audit_heads). `verify` checks the log against all
of them.

What this proves (docs/audit.md): anyone who edits, deletes, inserts or reorders entries with
sqlite3 breaks the chain unless they recompute every later hash — which needs no secret, so only a
signed checkpoint or head proves that the entries up to it are the ones the node wrote, and only
a head held outside the node proves that the log was at least that long.

Researcher-chosen text is bounded and made printable before it is stored (oncofed.node.
audit_text): a refused request can name 900 KB of "field names" and escape codes.

Triggers (oncofed.node.store.audit_table) make the tables append-only for every ordinary writer;
they stop mistakes, not an attacker who can drop them (which is what the chain and the signatures
are for).

Concurrency: `append` runs in its own `BEGIN IMMEDIATE` transaction, or joins the caller's one
opened with `transaction()` (how the request verifier records a nonce and its decision atomically).
Give an AuditLog its own connection (`AuditLog.open`) when other components write on other threads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oncofed.errors import OncofedError
from oncofed.keys.envelope import sign
from oncofed.keys.identity import Identity
from oncofed.node.audit_heads import JOURNAL_NAME, HeadJournal, sign_head
from oncofed.node.audit_text import clean_detail, clean_fields, clean_text
from oncofed.node.store import audit_table as store
from oncofed.node.store import db as dbmod

if TYPE_CHECKING:
    from oncofed.keys.identity import PublicIdentity
    from oncofed.node.audit_verify import VerifyReport
    from oncofed.node.node import Node

log = logging.getLogger("oncofed.node.audit")

TAG_CHECKPOINT = "oncofed/audit-checkpoint/v1"
ENTRY_DOMAIN = b"oncofed/audit-entry/v1\n"
GENESIS = "0" * 64
LOCAL_ADMIN = "local-admin"
NODE = "node"
AUTHORITY = "authority"
CHECKPOINT_EVENT = "audit.checkpoint"
#: Columns of an entry, in the order they are hashed (then prev_hash).
COLUMNS = ("seq", "at_ms", "event", "who", "permit_hash", "query_hash", "analysis", "fields",
           "decision", "reason", "cells_suppressed", "cells_perturbed", "epsilon_spent", "detail")
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_HASH = re.compile(r"^([0-9a-f]{64})?$")


class AuditError(OncofedError):
    """The audit log cannot be written or read as asked."""


def canonical_json(value: Any) -> str:
    """One encoding per value: sorted keys, no spaces, UTF-8, no NaN — what hashes and signs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def entry_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 of an entry as stored (the `COLUMNS` and its prev_hash)."""
    values = [row[c] for c in COLUMNS]
    values[COLUMNS.index("epsilon_spent")] = float(values[COLUMNS.index("epsilon_spent")])
    doc = canonical_json([*values, row["prev_hash"]])
    return hashlib.sha256(ENTRY_DOMAIN + doc.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One entry as written: who asked what under which permit, and what the node decided."""

    seq: int
    at_ms: int
    event: str
    who: str
    permit_hash: str
    query_hash: str
    analysis: str
    fields: tuple[str, ...]
    decision: str
    reason: str
    cells_suppressed: int
    cells_perturbed: int
    epsilon_spent: float
    detail: dict[str, Any]
    prev_hash: str
    entry_hash: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditEntry:
        values = {k: row[k] for k in (*COLUMNS, "prev_hash", "entry_hash")}
        values["fields"] = tuple(json.loads(values["fields"]))
        values["detail"] = json.loads(values["detail"])
        values["epsilon_spent"] = float(values["epsilon_spent"])
        return cls(**values)

    @property
    def at(self) -> str:
        return dt.datetime.fromtimestamp(self.at_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, **{k: getattr(self, k) for k in COLUMNS[1:]},
                "fields": list(self.fields), "prev_hash": self.prev_hash,
                "entry_hash": self.entry_hash}


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement by the node: "entry `seq` of my log has hash `entry_hash`"."""

    id: int
    seq: int
    entry_hash: str
    at_ms: int
    signer_key_id: str
    envelope: bytes

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "entry_hash": self.entry_hash,
                "at_ms": self.at_ms, "signer_key_id": self.signer_key_id,
                "envelope_hex": self.envelope.hex()}


def checkpoint_body(node_id: str, checkpoint_id: int, seq: int, hash_: str, at_ms: int) -> bytes:
    """What a checkpoint signs; the node id keeps one node's checkpoint from passing as another's."""
    return canonical_json({"node_id": node_id, "checkpoint": checkpoint_id, "seq": seq,
                           "entry_hash": hash_, "at_ms": at_ms}).encode()


def _check_name(value: str, what: str, *, empty: bool = False) -> str:
    if (value == "" and empty) or _NAME.fullmatch(value):
        return value
    raise AuditError(f"audit {what} {value!r} must be a short lower-case code")


class AuditLog:
    """Append to, read, verify and export the audit log in one node store.

    `signer` is the node's identity (None: checkpoints and heads are not signed); a checkpoint is
    signed automatically every `checkpoint_every` entries and, with `head_journal`, a signed head
    appended to that file after the transaction commits."""

    def __init__(self, conn: sqlite3.Connection, signer: Identity | None = None, *,
                 checkpoint_every: int = 100, head_journal: Path | None = None) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.conn, self.signer, self.checkpoint_every = conn, signer, checkpoint_every
        self.journal = HeadJournal(head_journal) if head_journal is not None else None
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._signed: tuple[tuple[int, str], bytes] | None = None   # the last head signed, by (seq, hash)
        dbmod.migrate(dbmod.StoreDB(conn), ["audit"])

    @classmethod
    def open(cls, store: Path, signer: Identity | None = None, *,
             checkpoint_every: int = 100, head_journal: Path | None = None) -> AuditLog:
        """An AuditLog on its own connection to the store file (close it when done)."""
        return cls(dbmod.connect(store).conn, signer, checkpoint_every=checkpoint_every,
                   head_journal=head_journal)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (SQLite's write lock), committed with synchronous=FULL: what
        is written inside — by the caller and by `append` — commits together or not at all, and
        is on disk before anything that reflects it (a signed head, a sealed answer) leaves.
        Re-entrant on one thread; an entry appended inside a caller's own transaction that would
        not wait for the disk is refused (`_insert`)."""
        with self._lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            try:
                with dbmod.immediate(self.conn) as conn:
                    yield conn
            except BaseException:
                self._pending.clear()
                raise
            self._write_journal()

    def _write_journal(self) -> None:
        """Append the heads of checkpoints just committed (after the commit: a crash in between
        leaves the journal behind the log, never ahead of it)."""
        pending, self._pending = self._pending, []
        for line in pending:
            assert self.journal is not None
            try:
                self.journal.append(**line)
            except OSError as exc:
                log.warning("audit head journal %s not written: %s", self.journal.path, exc)

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent view of the log that does not block appenders."""
        with self._lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            with dbmod.snapshot(self.conn) as conn:
                yield conn

    # --- writing ------------------------------------------------------------------------------
    def append(self, *, event: str, decision: str, who: str, permit_hash: str = "",
               query_hash: str = "", analysis: str = "", fields: Iterable[str] = (),
               reason: str = "", cells_suppressed: int = 0, cells_perturbed: int = 0,
               epsilon_spent: float = 0.0, detail: Mapping[str, Any] | None = None,
               at: float | None = None) -> AuditEntry:
        """Append one entry (joining the caller's `transaction()` if one is open) and sign a
        checkpoint when one is due. `who` is a researcher id or LOCAL_ADMIN."""
        if not who:
            raise AuditError("audit entries need a `who`")
        for name, value in (("permit hash", permit_hash), ("query hash", query_hash)):
            if not _HASH.fullmatch(value):
                raise AuditError(f"audit {name} must be 64 lower-case hex digits or empty")
        if min(cells_suppressed, cells_perturbed) < 0 or not math.isfinite(epsilon_spent) \
                or epsilon_spent < 0:
            raise AuditError("cell counts and ε spent must be finite and ≥ 0")
        at_ms = int((time.time() if at is None else at) * 1000)
        row: dict[str, Any] = {
            "event": _check_name(event, "event"), "who": clean_text(who, 200),
            "permit_hash": permit_hash, "query_hash": query_hash,
            "analysis": _check_name(analysis, "analysis", empty=True),
            "fields": canonical_json(clean_fields(fields)),
            "decision": _check_name(decision, "decision"),
            "reason": _check_name(reason, "reason", empty=True),
            "cells_suppressed": int(cells_suppressed), "cells_perturbed": int(cells_perturbed),
            "epsilon_spent": float(epsilon_spent),
            "detail": canonical_json(clean_detail(detail, canonical_json)), "at_ms": at_ms}
        with self.transaction():
            entry = self._insert(row)
            if self.signer is not None and event != CHECKPOINT_EVENT \
                    and entry.seq - store.last_checkpointed_seq(self.conn) >= self.checkpoint_every:
                self._checkpoint(NODE, at_ms)
        return entry

    def _insert(self, row: dict[str, Any]) -> AuditEntry:
        if not dbmod.commits_synced(self.conn):
            # A head may name this entry as soon as it commits (D17: the hub keeps heads as
            # evidence of the log's length), so it may never be one a power loss could take.
            raise AuditError("audit entries commit with synchronous=FULL: append outside any "
                             "transaction that does not wait for the disk")
        last = store.last_entry(self.conn)
        full = {**row, "seq": (last[0] + 1) if last else 1, "prev_hash": last[1] if last else GENESIS}
        full["entry_hash"] = entry_hash(full)
        store.append_entry(self.conn, full)
        store.advance_head(self.conn, full["seq"], full["entry_hash"])
        return AuditEntry.from_row(full)

    def checkpoint(self, who: str = LOCAL_ADMIN, at: float | None = None) -> Checkpoint:
        """Sign the newest entry now (e.g. before a backup or at shutdown)."""
        if self.signer is None:
            raise AuditError("no node identity key is configured ([identity] key in node.toml): "
                             "checkpoints cannot be signed")
        with self.transaction():
            return self._checkpoint(who, int((time.time() if at is None else at) * 1000))

    def _checkpoint(self, who: str, at_ms: int) -> Checkpoint:
        assert self.signer is not None
        last = store.last_entry(self.conn)
        if last is None:
            raise AuditError("the audit log is empty: nothing to sign yet")
        if last[2] == CHECKPOINT_EVENT:  # nothing new since the last checkpoint
            return self.checkpoints()[-1]
        seq, hash_ = last[0], last[1]
        cid = store.next_checkpoint_id(self.conn)
        body = checkpoint_body(self.signer.member_id, cid, seq, hash_, at_ms)
        envelope = sign(self.signer, TAG_CHECKPOINT, body)
        key_id = self.signer.public.signing_key_id.hex()
        store.append_checkpoint(self.conn, checkpoint_id=cid, seq=seq, entry_hash=hash_, at_ms=at_ms,
                                signer_key_id=key_id, envelope=envelope)
        marker = self._insert({"event": CHECKPOINT_EVENT, "who": who, "permit_hash": "", "query_hash": "",
                               "analysis": "", "fields": "[]", "decision": "signed", "reason": "",
                               "cells_suppressed": 0, "cells_perturbed": 0, "epsilon_spent": 0.0,
                               "detail": canonical_json({"checkpoint": cid, "covers": seq,
                                                         "entry_hash": hash_}), "at_ms": at_ms})
        if self.journal is not None:  # the head covers the marker too: cutting it shows
            store.mark_journaled(self.conn)
            self._pending.append({"seq": marker.seq, "entry_hash": marker.entry_hash, "checkpoint": cid,
                                  "at_ms": at_ms,
                                  "envelope": sign_head(self.signer, marker.seq, marker.entry_hash, at_ms)})
        return Checkpoint(cid, seq, hash_, at_ms, key_id, envelope)

    # --- heads ---------------------------------------------------------------------------------
    def head(self) -> tuple[int, str]:
        """(seq, entry hash) of the newest entry; (0, 64 zeros) for an empty log."""
        with self._lock:
            last = store.last_entry(self.conn)
        return (last[0], last[1]) if last else (0, GENESIS)

    def signed_head(self, at: float | None = None) -> bytes:
        """The node's signed audit head now (envelope bytes, tag `oncofed/audit-head/v1`, body an
        `AuditHead`): attach it to every signed reply, so that whoever receives one holds evidence
        of how long this log was. Writes nothing (a head is a statement, not an event).

        While the log has not moved, the head signed when it reached its newest entry is returned
        again (its `signed_at_ms` is then that moment): the connector attaches a head to every
        pull and push, most of them between two appends, and the hub writes an identical head
        only once a second (oncofed.federation.hub.service `_seen`) instead of verifying and
        storing each. Every entry is committed with synchronous=FULL (`transaction`), so the
        entry a head names is on disk before the head is signed."""
        if self.signer is None:
            raise AuditError("no node identity key is configured ([identity] key in node.toml): "
                             "audit heads cannot be signed")
        seq, hash_ = self.head()
        kept = self._signed
        if at is None and kept is not None and kept[0] == (seq, hash_):
            return kept[1]
        envelope = sign_head(self.signer, seq, hash_, int((time.time() if at is None else at) * 1000))
        if at is None:
            self._signed = ((seq, hash_), envelope)
        return envelope

    # --- reading ------------------------------------------------------------------------------
    def raw_rows(self) -> Iterator[dict[str, Any]]:
        """Every entry as stored, in sequence order (what `verify` and `export` read)."""
        return store.entry_rows(self.conn)

    def entries(self, *, limit: int | None = None, query_hash: str | None = None) -> list[AuditEntry]:
        """Entries in order; `limit` keeps the newest N; `query_hash` only those of one query."""
        rows = store.newest_entry_rows(self.conn, limit=limit, query_hash=query_hash)
        return [AuditEntry.from_row(r) for r in rows]

    def checkpoints(self) -> list[Checkpoint]:
        return [Checkpoint(r["id"], r["seq"], r["entry_hash"], r["at_ms"], r["signer_key_id"],
                           bytes(r["envelope"]))
                for r in store.checkpoint_rows(self.conn)]

    def verify(self, keys: PublicIdentity | Iterable[PublicIdentity] | None = None, *,
               heads: Iterable[bytes | tuple[str, bytes]] = (), key_source: str = "") -> VerifyReport:
        """Check the whole log against the centre's public key(s) and signed heads; see
        `audit_verify.verify_log`."""
        from oncofed.node.audit_verify import verify_log

        return verify_log(self, keys, heads=heads, key_source=key_source)

    def export(self, path: Path, format: str = "jsonl") -> int:
        """Write the log to `path` (jsonl: entries then checkpoints; csv: entries); return the
        number of entries written."""
        from oncofed.node.audit_export import export_log

        return export_log(self, path, format)


def journal_path(node: Node) -> Path:
    """Where a node keeps its head journal: `logs/audit-heads.jsonl` in the node directory."""
    return node.paths.logs / JOURNAL_NAME


def open_audit(node: Node, *, signed: bool = True) -> AuditLog:
    """The audit log of an opened Node, on its own connection, with its head journal, signing
    with the node's identity key when node.toml names one ([identity] key) and `signed`."""
    from oncofed.node.keyfiles import checkpoint_every, load_node_identity

    signer = load_node_identity(node.config, node.paths.root) if signed else None
    return AuditLog.open(node.paths.store, signer, checkpoint_every=checkpoint_every(node.config),
                         head_journal=journal_path(node))
