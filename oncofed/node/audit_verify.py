"""Checking and exporting a node's audit log (oncofed.node.audit writes it).

`verify_log` recomputes the chain from the first entry: sequence numbers must run 1, 2, 3, …
without a gap, each entry's stored hash must equal the hash of its contents, and each entry must
name the hash of the one before it. Then every checkpoint must cover an entry that exists, with
the hash the chain has there, be recorded in the chain, and — given the node's public key — carry
a valid signature over exactly that (entry id, hash). The first problem found is reported with the
entry id where the log stops being trustworthy; everything before it verified.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncofed.keys.envelope import verify_from
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import PublicIdentity
from oncofed.node.audit import (
    CHECKPOINT_EVENT,
    COLUMNS,
    GENESIS,
    TAG_CHECKPOINT,
    AuditEntry,
    AuditError,
    AuditLog,
    Checkpoint,
    entry_hash,
)
from oncofed.node.store import audit_table

FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify_log`. `signatures`: "verified" (every checkpoint checked with the
    key given), "unchecked" (checkpoints exist but no key was given), "none" (no checkpoints:
    the node has no identity key, or nothing was signed yet)."""

    ok: bool
    entries: int
    checkpoints: int
    signatures: str
    signed_through: int
    first_bad: int | None = None
    problem: str | None = None

    @property
    def unsigned_tail(self) -> int:
        """Entries after the newest verified checkpoint: protected by the chain alone."""
        return max(self.entries - self.signed_through, 0)

    def summary(self) -> str:
        """One line for people (the CLI prints it)."""
        if not self.ok:
            return f"TAMPERED at entry {self.first_bad}: {self.problem}"
        signed = {
            "verified": f"signed through entry {self.signed_through} by "
                        f"{_count(self.checkpoints, 'checkpoint')}; "
                        f"{_count(self.unsigned_tail, 'later entry', 'later entries')} unsigned",
            "unchecked": f"{_count(self.checkpoints, 'checkpoint')} present but NOT checked (no public key)",
            "none": "not signed (no [identity] key configured, or no checkpoint yet)",
        }[self.signatures]
        return f"intact: {_count(self.entries, 'entry', 'entries')}, chain unbroken; {signed}"

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "checkpoints": self.checkpoints,
                "signatures": self.signatures, "signed_through": self.signed_through,
                "unsigned_tail": self.unsigned_tail, "first_bad": self.first_bad,
                "problem": self.problem, "summary": self.summary()}


class _Broken(Exception):
    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(problem)
        self.seq, self.problem = seq, problem


def _keyring(keys: PublicIdentity | Iterable[PublicIdentity] | None) -> dict[bytes, PublicIdentity]:
    if keys is None:
        return {}
    items = [keys] if isinstance(keys, PublicIdentity) else list(keys)
    return {k.signing_key_id: k for k in items}


def _walk_chain(log: AuditLog) -> tuple[dict[int, str], dict[int, int]]:
    """Entry hashes by id, and the entry id recording each checkpoint id; raise _Broken."""
    hashes: dict[int, str] = {}
    markers: dict[int, int] = {}
    expected, prev = 1, GENESIS
    for row in log.raw_rows():
        seq = row["seq"]
        if seq != expected:
            raise _Broken(expected, f"entries {expected}–{seq - 1} are missing before entry {seq} "
                          "(deleted, or the log was renumbered)" if seq > expected + 1 else
                          f"entry {expected} is missing before entry {seq} (deleted)")
        try:
            contents_ok = entry_hash(row) == row["entry_hash"]
            marker = json.loads(row["detail"]).get("checkpoint") \
                if row["event"] == CHECKPOINT_EVENT else None
        except (ValueError, TypeError, AttributeError):
            contents_ok, marker = False, None
        if not contents_ok:
            raise _Broken(seq, f"entry {seq} does not match its hash: it was edited, or moved "
                          "from another position")
        if row["prev_hash"] != prev:
            raise _Broken(seq, f"entry {seq} does not follow entry {seq - 1}: an entry before it "
                          "was edited, removed, inserted or moved")
        if marker is not None:
            markers[int(marker)] = seq
        hashes[seq], prev, expected = row["entry_hash"], row["entry_hash"], expected + 1
    return hashes, markers


def _check_signature(cp: Checkpoint, keyring: dict[bytes, PublicIdentity]) -> None:
    try:
        verified = verify_from(cp.envelope, tag=TAG_CHECKPOINT, keyring=keyring)
        body = json.loads(verified.body)
    except (InvalidMessage, ValueError):
        raise _Broken(cp.seq, f"checkpoint {cp.id}: the signature does not verify with the "
                      "node's key (forged, altered or signed by another key)") from None
    expected = {"node_id": verified.signer.member_id, "checkpoint": cp.id, "seq": cp.seq,
                "entry_hash": cp.entry_hash, "at_ms": cp.at_ms}
    if body != expected:
        raise _Broken(cp.seq, f"checkpoint {cp.id}: what the node signed does not match the "
                      "stored checkpoint")


def _check_checkpoints(log: AuditLog, hashes: dict[int, str], markers: dict[int, int],
                       keyring: dict[bytes, PublicIdentity]) -> tuple[int, int]:
    """(number of checkpoints, highest entry id covered by a verified signature)."""
    checkpoints = log.checkpoints()
    signed_through = 0
    for number, cp in enumerate(checkpoints, 1):
        if cp.id != number:
            raise _Broken(cp.seq, f"checkpoint {number} is missing (deleted)")
        if cp.seq not in hashes:
            raise _Broken(cp.seq, f"checkpoint {cp.id} covers entry {cp.seq}, which is missing "
                          "(the log was truncated)")
        if hashes[cp.seq] != cp.entry_hash:
            raise _Broken(cp.seq, f"checkpoint {cp.id} does not match entry {cp.seq}: the log up "
                          "to it was rewritten")
        if markers.get(cp.id) != cp.seq + 1:
            raise _Broken(cp.seq + 1, f"checkpoint {cp.id} is not recorded as entry {cp.seq + 1} "
                          "(entries after it were removed or replaced)")
        if keyring:
            _check_signature(cp, keyring)
            signed_through = cp.seq
    known = {cp.id for cp in checkpoints}
    for cid, seq in sorted(markers.items(), key=lambda kv: kv[1]):
        if cid not in known:
            raise _Broken(seq, f"entry {seq} records checkpoint {cid}, which is missing (deleted)")
    return len(checkpoints), signed_through


def verify_log(log: AuditLog,
               keys: PublicIdentity | Iterable[PublicIdentity] | None = None) -> VerifyReport:
    """Find any edit, deletion, insertion or reorder; check checkpoints (signatures when `keys`,
    the node's public identity or several after a key rotation, are given)."""
    keyring = _keyring(keys)
    with log.snapshot():  # one consistent view while appends go on
        entries, n_checkpoints = audit_table.counts(log.conn)
        try:
            hashes, markers = _walk_chain(log)
            n_checkpoints, signed_through = _check_checkpoints(log, hashes, markers, keyring)
        except _Broken as broken:
            return VerifyReport(False, entries, n_checkpoints, "failed", 0, broken.seq,
                                broken.problem)
    signatures = "none" if not n_checkpoints else ("verified" if keyring else "unchecked")
    return VerifyReport(True, entries, n_checkpoints, signatures, signed_through)


def export_log(log: AuditLog, path: Path, format: str = "jsonl") -> int:
    """Write entries (jsonl: then checkpoints, with their signed bytes in hex) to `path`,
    replacing it atomically. Returns the number of entries written."""
    if format not in FORMATS:
        raise AuditError(f"export format must be one of {', '.join(FORMATS)}, not {format!r}")
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with log.snapshot(), tmp.open("w", encoding="utf-8", newline="") as fh:
            if format == "csv":
                writer = csv.writer(fh)
                writer.writerow(["seq", "at", *COLUMNS[1:], "prev_hash", "entry_hash"])
            for row in log.raw_rows():
                try:
                    entry = AuditEntry.from_row(row).to_json()
                except (ValueError, TypeError) as exc:
                    raise AuditError(f"entry {row['seq']} cannot be read ({exc}); run "
                                     "`oncofed node audit verify`") from None
                if format == "csv":
                    entry["fields"] = " ".join(entry["fields"])
                    entry["detail"] = json.dumps(entry["detail"], sort_keys=True)
                    writer.writerow([entry["seq"], entry["at"], *(entry[c] for c in COLUMNS[1:]),
                                     entry["prev_hash"], entry["entry_hash"]])
                else:
                    fh.write(json.dumps({"type": "entry", **entry}, ensure_ascii=False) + "\n")
                count += 1
            if format == "jsonl":
                for cp in log.checkpoints():
                    fh.write(json.dumps({"type": "checkpoint", **cp.to_json()}) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _count(n: int, one: str, many: str = "") -> str:
    """"1 entry", "3 entries": never "entr(ies)"."""
    return f"1 {one}" if n == 1 else f"{n} {many or one + 's'}"
