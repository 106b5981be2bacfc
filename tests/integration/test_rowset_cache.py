"""The release ledger's row-set cache (oncofed.node.store.rowsets.cohort_rowset) on a real node:
a cohort asked again is the very row set a fresh read gives, an ingest reads afresh, and another
permit's scope or another cohort never shares an entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oncofed import dictionary as dictmod
from oncofed.keys.ledger import LedgerKeys
from oncofed.keys.secrets import load_secret_file
from oncofed.node.config import LEDGER_KEY
from oncofed.node.node import init_node, open_node
from oncofed.node.store import rowsets
from oncofed.synth import write_all


def test_a_cached_row_set_is_the_fresh_one_until_an_ingest(tmp_path: Path) -> None:
    d = dictmod.load()
    first, second = write_all(tmp_path / "csv", 2, 400, 5, d)[:2]
    node = open_node(init_node(tmp_path / "centre-a", "centre-a").root)
    try:
        node.ingest(first.path)
        keys = LedgerKeys(load_secret_file(node.paths.secret(LEDGER_KEY)))
        reads = rowsets.PlannedReads()
        reads.groups_asked = True
        rowsets.ROWSETS.clear()

        def ask(where: str, params: tuple[object, ...], scope: str) -> rowsets.RowSet:
            return rowsets.cohort_rowset(node.conn, d, reads, where, params, frozenset({"sex"}), keys, scope)

        fresh = rowsets.RowSet.of(rowsets.read_rowids(node.conn, d, reads, '"sex" = ?', (1,), frozenset({"sex"})), keys)
        a = ask('"sex" = ?', (1,), "permit:p1")
        b = ask('"sex" = ?', (1,), "permit:p1")
        assert b is a                                     # served from the cache …
        assert a.digest == fresh.digest and np.array_equal(a.ids, fresh.ids)   # … and it is the fresh set
        assert not a.ids.flags.writeable                  # shared: nobody may change it
        assert len(rowsets.ROWSETS) == 1
        other_scope = ask('"sex" = ?', (1,), "permit:p2")
        other_cohort = ask('"sex" = ?', (2,), "permit:p1")
        assert other_scope is not a and other_scope.digest == a.digest   # same rows, its own entry
        assert other_cohort.digest != a.digest and len(rowsets.ROWSETS) == 3
        node.ingest(second.path)                          # a new data version: read afresh
        after = ask('"sex" = ?', (1,), "permit:p1")
        assert after is not a and after.n > a.n
        again = rowsets.RowSet.of(rowsets.read_rowids(node.conn, d, reads, '"sex" = ?', (1,), frozenset({"sex"})), keys)
        assert after.digest == again.digest
    finally:
        rowsets.ROWSETS.clear()
        node.close()
