"""The node store's abstention invariant on a real store file (D26): a query has released answers
or this centre's abstention, never both — whatever writes to the store, and across a reopen."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from oncofed.node.node import open_node
from oncofed.node.store import federation as fedstore
from oncofed.node.store.db import immediate

Q = os.urandom(32)


def _answer(conn: sqlite3.Connection, qh: bytes, digest: bytes = b"S") -> None:
    with immediate(conn):
        fedstore.record_answer(conn, qh, 0, digest, b"sealed", 1)


def test_an_abstention_is_durable_idempotent_and_forbids_an_answer(node_dir: Path) -> None:
    with open_node(node_dir) as node:
        with immediate(node.conn):
            fedstore.add_pending(node.conn, Q, b"envelope", b"accept", b"mask secret", 2**40, 1)
        signed = fedstore.abstain(node.conn, Q, lambda: b"signed abstention", 5)
        assert signed == b"signed abstention"
        assert fedstore.abstain(node.conn, Q, lambda: b"another signature", 6) == signed   # the same bytes
        assert fedstore.pending(node.conn, Q) == (b"envelope", b"accept", None)          # mask secret gone
        with pytest.raises(fedstore.Abstained):
            _answer(node.conn, Q)
    with open_node(node_dir) as node:                                                   # after a restart
        assert fedstore.abstention_of(node.conn, Q) == signed
        with pytest.raises(sqlite3.IntegrityError, match="abstained"):                  # even raw SQL
            node.conn.execute("INSERT INTO fed_answers VALUES (?, 0, x'00', x'00', 0)", (Q,))
        assert fedstore.answers_of(node.conn, Q) == []


def test_a_centre_that_released_cannot_abstain(node_dir: Path) -> None:
    signed: list[bytes] = []
    with open_node(node_dir) as node:
        _answer(node.conn, Q, b"under another set")
        with pytest.raises(fedstore.AlreadyReleased):
            fedstore.abstain(node.conn, Q, lambda: signed.append(b"x") or b"x", 5)
        assert signed == []                                         # nothing was even signed
        with pytest.raises(sqlite3.IntegrityError, match="answered"):
            node.conn.execute("INSERT INTO fed_abstentions VALUES (?, x'00', 0)", (Q,))
        assert fedstore.abstention_of(node.conn, Q) is None
        other = os.urandom(32)                                      # another query: free to abstain
        assert fedstore.abstain(node.conn, other, lambda: b"y", 5) == b"y"


def test_evidence_is_kept_per_query_and_centre(node_dir: Path) -> None:
    with open_node(node_dir) as node:
        with immediate(node.conn):
            fedstore.add_evidence(node.conn, Q, "centre-c", b"signed by c", 1)
            fedstore.add_evidence(node.conn, Q, "centre-c", b"again", 2)
        assert fedstore.abstained(node.conn, {Q.hex(), "not a hash"}) == {(Q.hex(), "centre-c")}
        assert fedstore.abstained(node.conn, {os.urandom(32).hex()}) == set()
