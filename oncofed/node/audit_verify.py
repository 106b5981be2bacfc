"""Checking a node's audit log (oncofed.node.audit writes it; docs/audit.md says what it proves).

`verify_log` recomputes the chain from the first entry: sequence numbers must run 1, 2, 3, …
without a gap, each entry's stored hash must equal the hash of its contents, and each entry must
name the hash of the one before it. Every checkpoint must cover an entry that exists, with the
hash the chain has there, be recorded in the chain, and — given the centre's public keys (from
the pinned registry) — carry a valid signature over exactly that (entry id, hash).

Then the log's *length* is checked against everything that remembers it:
 1. the store's recorded head (`audit_head`), moved forward with every append — the log must end
    exactly there;
 2. the seen nonces: each was stored in the same transaction as an entry of its query, so each
    query they name must be in the log;
 3. the head journal beside the store (a signed head per checkpoint);
 4. signed heads held outside the node (`heads`: from the hub, a researcher, `audit head`).
A head says "entry `seq` had hash `h`": the log must still hold that entry with that hash.

The first problem found is reported with the entry id where the log stops being trustworthy.
What none of this can see — and the report says — is a cut made together with every local record
of the length, after the newest head held outside the node.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from oncofed.keys.envelope import verify_from
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import PublicIdentity
from oncofed.node.audit import (
    CHECKPOINT_EVENT,
    GENESIS,
    TAG_CHECKPOINT,
    AuditError,
    AuditLog,
    Checkpoint,
    entry_hash,
)
from oncofed.node.audit_heads import HeadError, open_head
from oncofed.node.store import audit_table, nonces

#: A head to check: the bytes as received, or (label for messages, bytes).
GivenHead = bytes | tuple[str, bytes]


def _count(n: int, one: str, many: str = "") -> str:
    """"1 entry", "3 entries": never "entr(ies)"."""
    return f"1 {one}" if n == 1 else f"{n} {many or one + 's'}"


def _entries(n: int) -> str:
    return _count(n, "entry", "entries")


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify_log`. `signatures`: "verified" (every checkpoint checked with the
    centre's keys), "unchecked" (checkpoints exist but no key was available), "none" (no
    checkpoints: the node has no identity key, or nothing was signed yet). `witnessed_through`:
    the highest entry a signed head from outside the store (journal or given) vouches for."""

    ok: bool
    entries: int
    checkpoints: int
    signatures: str
    signed_through: int
    first_bad: int | None = None
    problem: str | None = None
    key_source: str = ""
    recorded_head: int | None = None
    journal: str = "none"
    journal_heads: int = 0
    heads_given: int = 0
    witnessed_through: int = 0

    @property
    def unsigned_tail(self) -> int:
        """Entries after the newest verified checkpoint: protected by the chain alone."""
        return max(self.entries - self.signed_through, 0)

    def summary(self) -> str:
        """For people (the CLI prints it): one line when tampered, a few when intact."""
        if not self.ok:
            where = f" at entry {self.first_bad}" if self.first_bad is not None else ""
            return f"TAMPERED{where}: {self.problem}"
        key = f" ({self.key_source})" if self.key_source else ""
        signed = {
            "verified": f"{_count(self.checkpoints, 'checkpoint')}, signatures verified{key}; signed "
                        f"through entry {self.signed_through}, {_entries(self.unsigned_tail)} "
                        "after it unsigned",
            "unchecked": f"{_count(self.checkpoints, 'checkpoint')} present, signatures NOT checked{key}",
            "none": "not signed (no [identity] key configured, or no checkpoint yet)",
        }[self.signatures]
        journal = {"kept": f"{self.journal_heads} in the head journal",
                   "unchecked": f"{self.journal_heads} in the head journal (signatures not "
                                "checked)",
                   "none": "no head journal"}[self.journal]
        if self.witnessed_through:
            limit = (f"a cut after entry {self.witnessed_through} shows only in the store's own "
                     "head record, which whoever can write the store can reset; a newer head "
                     "held outside the node (--head FILE) covers more")
        else:
            limit = ("no signed head held outside the store vouches for any entry: a cut made "
                     "together with the store's head record would not show; check against a "
                     "head the hub or a reply holds (--head FILE)")
        ending = "" if self.recorded_head is None else \
            f", ending at the node's recorded head (entry {self.recorded_head})"
        return "\n".join([
            f"intact: {_entries(self.entries)}, chain unbroken{ending}",
            f"  checkpoints: {signed}",
            f"  heads: {journal}, {self.heads_given} given; witnessed through entry "
            f"{self.witnessed_through}",
            f"  limit: {limit}"])

    def to_json(self) -> dict[str, Any]:
        keys = ("ok", "entries", "checkpoints", "signatures", "signed_through", "unsigned_tail",
                "first_bad", "problem", "key_source", "recorded_head", "journal",
                "journal_heads", "heads_given", "witnessed_through")
        return {k: getattr(self, k) for k in keys} | {"summary": self.summary()}


class _Broken(Exception):
    def __init__(self, seq: int | None, problem: str) -> None:
        super().__init__(problem)
        self.seq, self.problem = seq, problem


def _keyring(keys: PublicIdentity | Iterable[PublicIdentity] | None) -> dict[bytes, PublicIdentity]:
    if keys is None:
        return {}
    items = [keys] if isinstance(keys, PublicIdentity) else list(keys)
    return {k.signing_key_id: k for k in items}


def _walk_chain(log: AuditLog, remembered: set[str]) -> tuple[dict[int, str], dict[int, int]]:
    """Entry hashes by id, and the entry id recording each checkpoint id; raise _Broken.
    Removes from `remembered` every query hash an entry names."""
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
        remembered.discard(row["query_hash"])
        hashes[seq], prev, expected = row["entry_hash"], row["entry_hash"], expected + 1
    return hashes, markers


def _check_signature(cp: Checkpoint, keyring: dict[bytes, PublicIdentity]) -> None:
    try:
        verified = verify_from(cp.envelope, tag=TAG_CHECKPOINT, keyring=keyring)
        body = json.loads(verified.body)
    except (InvalidMessage, ValueError):
        raise _Broken(cp.seq, f"checkpoint {cp.id}: the signature does not verify with the "
                      "centre's key (forged, altered or signed by another key)") from None
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


def _check_recorded_head(log: AuditLog, hashes: dict[int, str], remembered: set[str]) -> int:
    """The log must end exactly at the head the store recorded; every remembered query must be
    in it. Returns the recorded head's entry id."""
    last = len(hashes)
    recorded = audit_table.recorded_head(log.conn)
    if recorded is None:
        raise _Broken(last + 1, "the node's recorded head (table audit_head) is missing: deleted, "
                      f"so the log may have been cut after entry {last}")
    seq, hash_, _ = recorded
    if seq > last:
        raise _Broken(last + 1, f"the log ends at entry {last}, but the node recorded entry {seq} "
                      f"as its newest: {_entries(seq - last)} were cut off")
    if hashes.get(seq, GENESIS) != hash_:
        raise _Broken(seq or 1, f"entry {seq} is not the one the node recorded as its newest: the "
                      "log was rewritten")
    if seq < last:
        raise _Broken(seq + 1, f"entries {seq + 1}–{last} were not appended by the node (its "
                      f"recorded head is entry {seq})")
    if remembered:
        example = sorted(remembered)[0][:16]
        raise _Broken(last + 1, f"the store remembers {len(remembered)} quer"
                      f"{'y' if len(remembered) == 1 else 'ies'} (seen nonces; e.g. {example}…) "
                      "that no entry records: entries were cut off or removed")
    return seq


def _check_head(label: str, seq: int, hash_: str, hashes: dict[int, str]) -> None:
    last = len(hashes)
    if seq > last:
        raise _Broken(last + 1, f"{label} says the log held entry {seq}; it ends at entry {last}: "
                      f"{_entries(seq - last)} were cut off")
    if hashes.get(seq, GENESIS) != hash_:
        raise _Broken(seq or 1, f"{label}: entry {seq} is not the entry the node signed: the log "
                      f"was rewritten up to entry {seq}")


def _check_journal(log: AuditLog, hashes: dict[int, str], keyring: dict[bytes, PublicIdentity],
                   node_id: str | None) -> tuple[str, int, int]:
    """(journal state, heads in it, highest entry a verified one vouches for)."""
    recorded = audit_table.recorded_head(log.conn)
    if log.journal is None:
        return "none", 0, 0
    if not log.journal.exists():
        if recorded is not None and recorded[2]:
            raise _Broken(len(hashes) + 1, f"the head journal {log.journal.path.name} is missing "
                          "although this node keeps one: deleted, perhaps with the log's tail")
        return "none", 0, 0
    lines, _unreadable = log.journal.read()
    through = 0
    for line in lines:
        label = f"head journal line {line.number}"
        if keyring and node_id:
            try:
                head = open_head(line.envelope, keyring, node_id)
            except HeadError as exc:
                raise _Broken(None, f"{label}: {exc}") from None
            _check_head(label, head.seq, head.entry_hash, hashes)
            through = max(through, head.seq)
        else:
            _check_head(label, line.seq, line.entry_hash, hashes)
    return ("kept" if keyring and node_id else "unchecked"), len(lines), through


def _check_given(given: list[tuple[str, bytes]], hashes: dict[int, str],
                 keyring: dict[bytes, PublicIdentity], node_id: str | None) -> int:
    if given and not (keyring and node_id):
        raise AuditError("a head can only be checked with the centre's key: install the "
                         "registry (oncofed node trust update FILE)")
    through = 0
    for label, envelope in given:
        assert node_id is not None
        try:
            head = open_head(envelope, keyring, node_id)
        except HeadError as exc:
            raise _Broken(None, f"{label}: {exc}") from None
        _check_head(label, head.seq, head.entry_hash, hashes)
        through = max(through, head.seq)
    return through


def _labelled(heads: Iterable[GivenHead]) -> list[tuple[str, bytes]]:
    out = []
    for i, h in enumerate(heads, 1):
        out.append(h if isinstance(h, tuple) else (f"head {i}", h))
    return out


def verify_log(log: AuditLog, keys: PublicIdentity | Iterable[PublicIdentity] | None = None, *,
               heads: Iterable[GivenHead] = (), key_source: str = "") -> VerifyReport:
    """Find any edit, deletion, insertion, reorder or cut; check checkpoints and heads with
    `keys` (the centre's public identities: every key the registry ever listed for it)."""
    keyring = _keyring(keys)
    members = {k.member_id for k in keyring.values()}
    node_id = next(iter(members)) if len(members) == 1 else None
    given = _labelled(heads)
    with log.snapshot():  # one consistent view while appends go on
        entries, n_checkpoints = audit_table.counts(log.conn)
        remembered = nonces.query_hashes(log.conn)
        recorded: int | None = None
        try:
            hashes, markers = _walk_chain(log, remembered)
            n_checkpoints, signed_through = _check_checkpoints(log, hashes, markers, keyring)
            recorded = _check_recorded_head(log, hashes, remembered)
            journal, journal_heads, journal_through = _check_journal(log, hashes, keyring, node_id)
            given_through = _check_given(given, hashes, keyring, node_id)
        except _Broken as broken:
            return VerifyReport(False, entries, n_checkpoints, "failed", 0, broken.seq,
                                broken.problem, key_source, recorded, heads_given=len(given))
    signatures = "none" if not n_checkpoints else ("verified" if keyring else "unchecked")
    return VerifyReport(True, entries, n_checkpoints, signatures, signed_through,
                        key_source=key_source, recorded_head=recorded, journal=journal,
                        journal_heads=journal_heads, heads_given=len(given),
                        witnessed_through=max(journal_through, given_through))
