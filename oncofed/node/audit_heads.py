"""Signed audit heads: evidence, held outside the log, of how long the log was.

A hash chain and signed checkpoints find every edit, but not a cut: delete the newest
checkpoint, its marker entry and everything after it, and what is left is a shorter log that
is perfectly consistent. Only something that remembers the length can tell. A *head* is the
node's signed statement (`AuditHead` in protos/oncofed/v1/audit.proto, envelope tag
`oncofed/audit-head/v1`): "my log holds `seq` entries and entry `seq` has hash `entry_hash`".

Where heads are kept (docs/audit.md, "Heads"):
- in every reply the node sends (`AuditLog.signed_head()`: the hub connector's pulls, accepts
  and answers, the admin API's replies), so the hub and other callers hold them;
- in the node's **head journal** (`logs/audit-heads.jsonl`), one line per checkpoint, appended
  with O_APPEND and fsync: a file beside the store, which `chattr +a` can make impossible to
  shorten for the node's own OS user;
- wherever the admin saves `oncofed node audit head --out FILE`.

`open_head` verifies a head before anything in it is read; `read_head_file` accepts a raw
envelope, its hex, or JSON lines with a ``"head"`` member (the journal's format).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from oncofed.errors import OncofedError, UsageError
from oncofed.keys.envelope import MAGIC, sign, verify_from
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity, PublicIdentity
from oncofed.v1 import audit_pb2

TAG_HEAD = "oncofed/audit-head/v1"
JOURNAL_NAME = "audit-heads.jsonl"
MAX_HEAD_BYTES = 4096
MAX_HEAD_FILE_BYTES = 64 * 1024 * 1024
_HEX = re.compile(r"[0-9a-fA-F\s]+")


class HeadError(OncofedError):
    """A head that cannot be used: not a head, or not signed by a key of this node."""


@dataclass(frozen=True)
class Head:
    """A verified head: `node_id`'s log held `seq` entries, the newest with hash `entry_hash`."""

    node_id: str
    seq: int
    entry_hash: str
    signed_at_ms: int
    signer: PublicIdentity | None
    envelope: bytes


def sign_head(signer: Identity, seq: int, entry_hash: str, at_ms: int) -> bytes:
    """The envelope bytes of a head, as they travel and are kept."""
    body = audit_pb2.AuditHead(node_id=signer.member_id, seq=seq,
                               entry_hash=bytes.fromhex(entry_hash), signed_at_ms=at_ms)
    return sign(signer, TAG_HEAD, body.SerializeToString())


def open_head(envelope: bytes, keyring: Mapping[bytes, PublicIdentity], node_id: str) -> Head:
    """Verify a head against `keyring` (the centre's keys from the pinned registry) before
    parsing it; raise HeadError unless it is a well-formed head of `node_id`."""
    try:
        verified = verify_from(envelope, tag=TAG_HEAD, keyring=keyring, max_bytes=MAX_HEAD_BYTES)
        body = audit_pb2.AuditHead.FromString(verified.body)
    except (InvalidMessage, DecodeError):
        raise HeadError(f"not a head signed by {node_id}'s key in the pinned registry "
                        "(forged, altered, another node's, or the store's registry was "
                        "replaced)") from None
    if body.node_id != node_id or verified.signer.member_id != node_id:
        raise HeadError(f"a head of {body.node_id!r}, not of {node_id!r}")
    if len(body.entry_hash) != 32:
        raise HeadError("a head whose entry hash is not 32 bytes")
    return Head(node_id, int(body.seq), body.entry_hash.hex(), int(body.signed_at_ms),
                verified.signer, bytes(envelope))


def read_head_file(path: Path) -> list[bytes]:
    """Every head envelope in a file: raw envelope bytes, hex text, or JSON lines carrying a
    hex ``"head"`` (the head journal, `audit head --json`). Raises UsageError when none."""
    try:
        if path.stat().st_size > MAX_HEAD_FILE_BYTES:
            raise UsageError(f"{path} is larger than {MAX_HEAD_FILE_BYTES} bytes: not a head file")
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if data.startswith(MAGIC):
        return [data]
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a head file (raw envelope, hex or JSON lines)") from None
    if _HEX.fullmatch(text):
        return [bytes.fromhex("".join(text.split()))]
    try:
        docs = [json.loads(text)]  # one JSON document (`audit head --json`)
    except ValueError:
        docs = []
        for line in text.splitlines():  # JSON lines (the head journal)
            try:
                docs.append(json.loads(line))
            except ValueError:
                continue
    heads: list[bytes] = []
    for doc in docs:
        head = doc.get("head") if isinstance(doc, dict) else None
        try:
            if isinstance(head, str):
                heads.append(bytes.fromhex(head))
        except ValueError:
            continue
    if not heads:
        raise UsageError(f"{path} holds no audit head (raw envelope, hex or JSON lines)")
    return heads


@dataclass(frozen=True)
class JournalLine:
    """One line of the head journal, as read (nothing in it is trusted until `open_head`)."""

    number: int
    seq: int
    entry_hash: str
    envelope: bytes


class HeadJournal:
    """The append-only file of signed heads beside the store (one JSON line per checkpoint)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, *, seq: int, entry_hash: str, checkpoint: int, at_ms: int,
               envelope: bytes) -> None:
        """Append one line and fsync it; O_APPEND only, so `chattr +a` on the file is enough to
        stop the node's OS user from shortening it."""
        line = json.dumps({"seq": seq, "entry_hash": entry_hash, "checkpoint": checkpoint,
                           "at_ms": at_ms, "head": envelope.hex()}, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> tuple[list[JournalLine], int]:
        """(the readable lines, how many lines were unreadable — e.g. torn by a crash)."""
        if not self.path.exists():
            return [], 0
        lines: list[JournalLine] = []
        bad = 0
        with self.path.open("r", encoding="ascii", errors="replace") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    doc = json.loads(raw)
                    lines.append(JournalLine(number, int(doc["seq"]), str(doc["entry_hash"]),
                                             bytes.fromhex(doc["head"])))
                except (ValueError, KeyError, TypeError):
                    bad += 1
        return lines, bad
