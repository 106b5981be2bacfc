"""Keyed hashes of the release ledger (DESIGN §4 "Flow" step 4, §10), under the node's ledger key.

The ledger remembers, per permit, the set of rows each released answer rests on, so a cohort
that differs from an earlier one in fewer than k rows is answered with the earlier row set. It
needs four keyed functions, all here so no other module touches key material:

- `rowset_digest(ids)` — the identity of an exact row set: keyed BLAKE2b-256 (a PRF, as for
  pseudonyms, decision D7; personalisation `oncofed-lrows`) over the row count and the sorted row
  ids, i.e. DESIGN's HMAC(ledger key, sorted row ids). Equal digests mean equal sets.
- `mix(ids)` — places rows in the ledger's sketch (oncofed.node.store.rowsets): a keyed 64-bit
  mixing of each row id (SplitMix64's finaliser over id + a secret seed), vectorised with numpy.
  It is a mixing function, not a PRF: its outputs never leave the node, nobody but the node chooses
  row ids, and nothing about privacy rests on it (a collision only makes the ledger more cautious);
  the decisions it supports are checked against `rowset_digest`.
- `radius(k, a, b)` — the keyed, uniformly drawn distance below which cohort a counts as a near
  duplicate of row set b: k + (PRF(a ‖ b) mod k), in [k, 2k). A fixed threshold would make the
  ledger itself an oracle (docs/security.md, "Differencing").
- `release_key(spec, rowset, participants)` — the federation's release key
  H(analysis spec ‖ row-set digest ‖ participant set), unkeyed SHA-256 over keyed inputs.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import numpy.typing as npt

_DIGEST_PERSON = b"oncofed-lrows"
_RADIUS_PERSON = b"oncofed-lradius"
_SEED_PERSON = b"oncofed-lmix"
_RELEASE_TAG = b"oncofed/release/v1"
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class LedgerKeys:
    """The ledger's keyed functions under one ledger key (32 bytes, `secrets/ledger.key`)."""

    __slots__ = ("_digest", "_radius", "_seed")

    def __init__(self, ledger_key: bytes) -> None:
        if len(ledger_key) < 32:
            raise ValueError("the ledger key must be at least 32 bytes")
        key = ledger_key[:64]
        self._digest = hashlib.blake2b(key=key, digest_size=32, person=_DIGEST_PERSON)
        self._radius = hashlib.blake2b(key=key, digest_size=8, person=_RADIUS_PERSON)
        seed = hashlib.blake2b(b"sketch", key=key, digest_size=8, person=_SEED_PERSON).digest()
        self._seed = np.uint64(int.from_bytes(seed, "little"))

    def rowset_digest(self, ids: npt.NDArray[np.int64]) -> bytes:
        """The keyed digest of a row set given as sorted, distinct row ids."""
        h = self._digest.copy()
        h.update(struct.pack("<Q", len(ids)))
        h.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
        return h.digest()

    def mix(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        """A keyed 64-bit mix of each row id (positions and check values in the sketch)."""
        z = np.asarray(ids, dtype=np.int64).astype(np.uint64) + self._seed
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
        return z

    def radius(self, k: int, cohort: bytes, earlier: bytes) -> int:
        """The near-duplicate radius between a cohort and an earlier row set (digests): uniform
        in [k, 2k), fixed for the pair, unpredictable without the ledger key."""
        if k < 1:
            raise ValueError("k must be at least 1")
        h = self._radius.copy()
        h.update(cohort)
        h.update(earlier)
        return k + int.from_bytes(h.digest(), "little") % k

    def __repr__(self) -> str:  # never show key material
        return "LedgerKeys(<secret>)"


def release_key(spec_hash: bytes, rowset_digest: bytes, participants: bytes | None = None) -> bytes:
    """DESIGN §4's release key: H(analysis spec ‖ HMAC(ledger key, sorted row ids)), with the
    participant set's id appended when there is one (b"" or None: a node-local answer)."""
    h = hashlib.sha256(_RELEASE_TAG)
    for part in (spec_hash, rowset_digest, participants or b""):
        h.update(struct.pack("<I", len(part)))
        h.update(part)
    return h.digest()
