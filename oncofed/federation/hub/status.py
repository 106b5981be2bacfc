"""What the hub operator sees: centres online or offline, queue depth, recent queries — the
metadata the hub holds, and nothing else (it holds nothing else)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from oncofed.federation.hub.config import HubConfig
from oncofed.federation.hub.store import HubStore, now_ms

ONLINE_MS = 60_000          # a centre long-polls every 20 s: silent for a minute means offline


def _iso(ms: int | None) -> str | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def hub_status(config: HubConfig, *, limit: int = 10) -> dict[str, Any]:
    store = HubStore(config.database)
    try:
        depth = store.queue_depth()
        conflicts = store.conflicts()
        at = now_ms()
        centres = [{"centre": c, "online": at - seen < ONLINE_MS, "last_seen": _iso(seen),
                    "queued": depth.get(c, 0), "audit_head_seq": seq, "audit_head": head.hex() if head else None,
                    # two heads it signed for one entry with different hashes: its log was rewritten there
                    "audit_rewrites": [{"entry": seq_, "first_head": first.hex(), "second_head": second.hex(),
                                        "seen": _iso(at_)} for seq_, first, second, at_ in conflicts.get(c, [])]}
                   for c, seen, head, seq in store.centres()]
        queries = []
        for q in store.recent_queries(limit):
            joined = sum(1 for p in store.progress(q.query_hash) if p.accept is not None)
            queries.append({"query_hash": q.query_hash.hex(), "researcher": q.researcher, "state": q.state,
                            "targets": list(q.targets), "participants": joined, "created": _iso(q.created_ms),
                            "seconds": (q.finished_ms - q.created_ms) / 1000 if q.finished_ms else None,
                            "sealed_bytes": q.sealed_bytes, "error": q.error})
        return {"hub": config.hub_id, "queued_tasks": sum(depth.values()), "centres": centres, "queries": queries}
    finally:
        store.close()
