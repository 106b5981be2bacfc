"""The engine's hook into the release ledger: a centre refuses to be differenced (DESIGN §10).

For a permit holder outside differential privacy, every answer goes through a `Guard`:

    1. the rows the analysis will read — its planned reads (oncofed.node.store.rowsets), fetched
       as row ids in the same read snapshot as the answer itself;
    2. the ledger (oncofed.node.store.ledger) resolves which release those rows are answered as:
       their own (new, or the same rows as before) or an earlier release within the keyed
       near-duplicate radius (k ≤ r < 2k rows);
    3. the engine computes the answer over the release's rows — the cohort with the exact
       difference applied, the same three-part statements for every query (store/substitution.py);
    4. `keep`: the vector released before for the same release and analysis is sent, byte for
       byte; otherwise this one is recorded durably, then sent.

What the researcher sees does not tell the paths apart: an answer from the ledger is the very
answer the earlier row set got (under cell key or threshold the same rows give the same bytes
anyway); the work done is the same (one rowid read, one sketch, one ledger decision with one
digest check, one computation, one write); the audit log gets the same entries, with the ledger's
decision only inside the local entry's detail. DP permits stay as they are (their answers are
fresh noise each time, paid from the budget); the centre's own admin is not ledgered.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from oncofed.analyses import Analysis, Rules
from oncofed.analyses.disclosure import withheld
from oncofed.keys.ledger import LedgerKeys
from oncofed.keys.secrets import load_secret_file
from oncofed.node.config import LEDGER_KEY
from oncofed.node.node import Node
from oncofed.node.query.compiler import CompiledCohort
from oncofed.node.store import rowsets
from oncofed.node.store.ledger import Participation, ReleaseLedger, Resolution
from oncofed.query.vector import encode
from oncofed.v1 import query_pb2 as pb

_SPEC_TAG = b"oncofed/ledger/spec/v1"


def scope_of(permit_id: str) -> str:
    """Whose answers are compared: one permit's (a permit is held by one researcher)."""
    return f"permit:{permit_id}"


def spec_hash(body: pb.QueryBody, rules: Rules) -> bytes:
    """What makes two answers over the same rows the same answer: the analysis with all its
    parameters, the cutoff of any derived status field (a crosstab of os_status_at_cutoff over the
    same rows differs by cutoff) and the disclosure rules it was released under."""
    h = hashlib.sha256(_SPEC_TAG)
    h.update(body.analysis.SerializeToString(deterministic=True))
    h.update(f"|{body.status_cutoff}|{body.exact_dates}".encode())
    h.update(f"|{rules.mode}|{rules.k}|{rules.survival_counts}|{rules.survival_table}".encode())
    return h.digest()


@dataclass
class Guard:
    """One answer's passage through the ledger (see the module docstring)."""

    ledger: ReleaseLedger
    conn: sqlite3.Connection
    meta: dict[str, Any] = field(default_factory=dict)
    resolution: Resolution | None = None
    rows: rowsets.RowSet | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def open(cls, node: Node) -> Guard:
        """A guard on a second store connection (from the node's pool): the ledger writes while
        the answer's read snapshot stays open on the node's connection. Its commits do not wait
        for the disk: the pipeline's audit entry of the answer, committed with synchronous=FULL
        before the answer leaves, syncs them (D34) (ReleaseLedger, `synced=False`)."""
        stack = ExitStack()
        conn = stack.enter_context(node.side_connection())
        try:
            keys = LedgerKeys(load_secret_file(node.paths.secret(LEDGER_KEY)))
        except BaseException:
            stack.close()
            raise
        return cls(ReleaseLedger(conn, keys, synced=False), conn, _stack=stack)

    def close(self) -> None:
        self._stack.close()

    def resolve(self, node: Node, the: Analysis[Any, Any], spec: Any, cohort: CompiledCohort, scope: str,
                k: int, now: int | None) -> rowsets.Diff:
        """Steps 1–2; returns the difference from the cohort's rows to the release's (step 3's
        input, for the store's reader: oncofed.node.store.substitution). Call inside the read
        snapshot the answer is computed in."""
        reads = rowsets.planned_reads(the, spec)
        self.rows = rowsets.cohort_rowset(node.conn, node.dictionary, reads, cohort.where, cohort.params, cohort.fields,
                                          self.ledger.keys, scope)
        res = self.ledger.resolve(scope, self.rows, k, now=now)
        self.resolution = res
        self.meta = {"ledger": res.decision, "ledger_entry": res.entry_id, "ledger_release": res.release_id}
        if res.delta is not None:
            self.meta["ledger_delta"] = res.delta
        return res.diff or rowsets.NO_CHANGE

    def keep(self, vector: list[int], the: Analysis[Any, Any], spec: Any, raw: Any, body: pb.QueryBody,
             rules: Rules, query_hash: str, now: int | None, *,
             participants: Participation | None = None) -> list[int]:
        """Step 4: the vector to send. When the difference to the release is not known (a chain of
        sketches that did not peel), the answer just computed — over the cohort's own rows — must
        not go out: the release's stored answer does, else a withheld one. `participants` (the
        federation's participant set) is kept with the answer; when the same release went out
        under another set and may not go out under this one (no abstentions that make it safe,
        D26), `meta["ledger_other_participants"]` is true and the caller must not send it."""
        res, rows = self.resolution, self.rows
        assert res is not None and rows is not None, "resolve() comes first"
        key = spec_hash(body, rules)
        if res.diff is None:
            before = self.ledger.stored(res, key, participants)
            if before is None:
                out = withheld(spec)
                vector = [encode(v) for v in (*out.values, *out.flags)]
                self.meta["ledger"] = "near_duplicate_withheld"
        elif not res.diff.size and the.total(raw) != rows.n:
            # The rows an answer rests on must be the rows its reads return (an analysis must not
            # drop rows it read): otherwise the ledger would compare the wrong sets.
            raise AssertionError(f"{spec.kind}: the answer rests on {the.total(raw)} rows, its reads on {rows.n}")
        kept = self.ledger.keep(res, key, vector, query_hash, participants=participants, now=now)
        self.meta["ledger_reused"] = kept.reused
        if participants is not None:
            self.meta["ledger_other_participants"] = kept.other_participants
            if kept.blocker:
                self.meta["ledger_blocker"] = kept.blocker
        return kept.vector
