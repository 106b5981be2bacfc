"""Keyed pseudonymisation of patient and tumour identifiers.

BLAKE2b in keyed mode is a PRF: without the node's secret nobody can recompute or reverse a
pseudonym, and the same raw identifier always maps to the same pseudonym at this node (so
re-deliveries upsert). A different personalisation string per identifier kind keeps a patient id
and a tumour id that happen to share a value from mapping to the same pseudonym.
"""

from __future__ import annotations

import hashlib

_DIGEST_BYTES = 16  # 128-bit pseudonyms: collisions are negligible at registry scale


class Pseudonymiser:
    """Maps raw identifiers to hex pseudonyms under one node secret."""

    __slots__ = ("_patient", "_tumour")

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("pseudonymisation key must be at least 32 bytes")
        self._patient = hashlib.blake2b(key=key[:64], digest_size=_DIGEST_BYTES, person=b"oncofed-pid")
        self._tumour = hashlib.blake2b(key=key[:64], digest_size=_DIGEST_BYTES, person=b"oncofed-tid")

    def patient(self, raw: str) -> str:
        h = self._patient.copy()
        h.update(raw.encode("utf-8"))
        return h.hexdigest()

    def tumour(self, raw: str) -> str:
        h = self._tumour.copy()
        h.update(raw.encode("utf-8"))
        return h.hexdigest()

    def __repr__(self) -> str:  # never show key material
        return "Pseudonymiser(<secret>)"
