"""The root of oncofed's exception tree, so the CLI and servers can turn any of them into one
readable line (CLI) or one status code with a public message (gRPC) without leaking internals.

    OncofedError                 exit 1 — anything oncofed refuses, with a message for people
    ├── UsageError               exit 2 — the command line or a file argument is wrong
    ├── NodeError                exit 1 — the node directory is missing, foreign or inconsistent
    │   ├── DictionaryMismatch   exit 1 — the store was created with another dictionary
    │   └── StoreUnusable        exit 1 — the store file is not an SQLite database, or unreadable
    ├── StoreLocked              exit 1 — another process holds the store's lock (also an
    │                                     sqlite3.OperationalError, which servers map to "busy")
    ├── IngestRejected           exit 3 — a file failed validation; nothing was changed
    └── (oncofed.keys raises its own subclasses for crypto and trust failures)
"""

from __future__ import annotations

import sqlite3


class OncofedError(Exception):
    """Base class: the message is safe to print to the person who ran the command."""

    exit_code = 1


class UsageError(OncofedError):
    exit_code = 2


class NodeError(OncofedError):
    exit_code = 1


class DictionaryMismatch(NodeError):
    pass


class StoreUnusable(NodeError):
    pass


class StoreLocked(OncofedError, sqlite3.OperationalError):
    """The wait for another process's lock on the store ran out; the message names the file."""


class IngestRejected(OncofedError):
    """Validation failed for a file; carries every fault found (row, column, reason)."""

    exit_code = 3

    def __init__(self, message: str, faults: list[tuple[int, str, str]] | None = None,
                 total: int = 0) -> None:
        super().__init__(message)
        self.faults = faults or []
        self.total = total or len(self.faults)
