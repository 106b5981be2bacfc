"""Record keys for cell-key perturbation: a secret, stable random number per tumour.

Cell-key perturbation (ABS/ONS) gives every row a record key r in [0, 1) that nobody outside the
centre can compute; a table cell's key is Σr mod 1 over its rows and picks the cell's noise from a
published table. The same rows therefore always get the same noise, however a query is phrased,
so asking again or rephrasing reveals nothing new.

r is a PRF of the tumour's pseudonym under the node's *perturbation* key — never the
pseudonymisation key, so a leaked pseudonym list does not reveal record keys. The PRF is keyed
BLAKE2b (as for pseudonyms, decision D7) with its own personalisation string. r is carried as a
32-bit integer R (r = R / 2^32), so a cell key Σr mod 1 is the exact integer ΣR mod 2^32 and
cannot depend on the order in which rows are added up.
"""

from __future__ import annotations

import hashlib

RECORD_KEY_BITS = 32
RECORD_KEY_MOD = 1 << RECORD_KEY_BITS


class RecordKeyer:
    """Maps tumour pseudonyms to 32-bit record keys under one perturbation key."""

    __slots__ = ("_h",)

    def __init__(self, perturbation_key: bytes) -> None:
        if len(perturbation_key) < 32:
            raise ValueError("the perturbation key must be at least 32 bytes")
        self._h = hashlib.blake2b(key=perturbation_key[:64], digest_size=8, person=b"oncofed-cellkey")

    def record_key(self, tumour_id: str) -> int:
        """R in [0, 2^32): the tumour's record key r = R / 2^32."""
        h = self._h.copy()
        h.update(tumour_id.encode("utf-8"))
        return int.from_bytes(h.digest()[:4], "big")

    def __repr__(self) -> str:  # never show key material
        return "RecordKeyer(<secret>)"


def cell_key(record_keys_sum: int) -> int:
    """A cell's key ΣR mod 2^32 (the exact form of Σr mod 1) from the sum of its record keys."""
    return record_keys_sum % RECORD_KEY_MOD
