"""Every component's migrations, in one place.

Which tables a store has must not depend on which modules a process happened to import, so the
list is explicit rather than filled in by import side effects: opening any node brings every
component up to date. Each migration function lives beside the SQL of its tables.

A component's list is append-only: index i brings it to version i + 1, and `schema_versions`
in existing stores records these component names and versions. Never rename a component, nor
edit, remove or reorder a released migration; append a new one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from oncofed.node.store import audit_table, budgets, federation, flower_runs, ledger, meta, nonces, rounds, trust_state
from oncofed.node.store.db import Migration

#: component → its migrations, applied in this order (components are independent of each other).
MIGRATIONS: Mapping[str, Sequence[Migration]] = {
    "store": (meta.migration_1,),           # node identity, dictionary identity, ingest log
    "trust": (trust_state.migration_1,      # pinned root, registry/revocations, permit decisions
              trust_state.migration_2),     # a change counter the node's cached view is keyed by
    "audit": (audit_table.migration_1,      # hash-chained audit log and its signed checkpoints
              audit_table.migration_2),     # the recorded head (a truncated log shows)
    "verify": (nonces.migration_1,),        # nonces of accepted or refused queries (replays)
    "query": (budgets.migration_1,),        # rate limits and the privacy ledger
    "federation": (federation.migration_1,    # accepted queries, sent answers and declines (connector)
                   federation.migration_2,    # abstentions from failed queries, and others' (retries)
                   federation.migration_3),   # no abstention from a Flower run after a round of it (D28)
    "ledger": (ledger.migration_1,          # the release ledger: row sets answered over, answers released
               ledger.migration_2),         # the centres and queries of each release under a set (retries)
    "rounds": (rounds.migration_1,),        # distinct coefficients answered per model fit (the round cap)
    "flower": (flower_runs.migration_1,     # Flower runs accepted, their round answers and declines
               flower_runs.migration_2),    # no round answer after an abstention from the run (D28)
}
