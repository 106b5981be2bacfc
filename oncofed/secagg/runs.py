"""A mask key for every round of one iterative run — a Flower model fit (D25, docs/flower.md).

The query plane accepts each round as its own query, so each round gets a fresh one-use
`EphemeralMaskKey`. A Flower run signs one envelope for all its rounds and its participant set S
is fixed once, after the single prepare: asking every centre for a fresh accept each round would
double the messages (each one a ClientApp process in deployment). So a centre accepts a run
once, with one `RunMaskKey`, and masks round r under it with r in the HKDF info (the pair key of
`masks.pair_info`: query hash, round, H(S), both ids and keys). Different rounds therefore use
unrelated keystreams, and the key itself refuses what would break the masks:

- a round it has already masked, or any earlier one (rounds only go up): the same pair key over a
  second vector would hand the coordinator the difference of the two;
- round 0, which is the query plane's one-shot round;
- a participant set other than the one it first masked under: the run's S is fixed.

A node that restarts (or, on Flower's deployment engine, starts a fresh ClientApp process for
every message) rebuilds the key from its store with the last round it masked and the S it masked
under (`restore`), so the refusal holds across processes; the store writes both in the same
transaction as the answer, before the answer leaves.

    key = RunMaskKey.generate()                    # at prepare; key.public_key into the accept
    masked = key.mask(v1, me="centre-a", participants=s, query_hash=q, round=1)
    masked = key.mask(v2, me="centre-a", participants=s, query_hash=q, round=2)
    key.mask(v3, …, round=2)                       # MaskKeyUsed
    total = unmask_sum(answers_of_round_2, participants=s, round=2)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import NoReturn

import nacl.bindings
import nacl.utils

from oncofed.secagg.errors import InvalidParticipantSet, MaskKeyUsed
from oncofed.secagg.masks import MaskedVector, _check_round, _checked, _masked
from oncofed.secagg.participants import HASH_BYTES, KEY_BYTES, ParticipantSet

_CONSTRUCT = object()


class RunMaskKey:
    """One X25519 mask key for the rounds 1, 2, … of one run, each round masked once (see the
    module docstring). It cannot be copied or pickled; its private half is never shown."""

    __slots__ = ("_digest", "_lock", "_private", "_public", "_spent", "_through")

    def __init__(self, private: bytes, through: int, digest: bytes | None, _construct: object = None) -> None:
        if _construct is not _CONSTRUCT:
            raise TypeError("use RunMaskKey.generate() or RunMaskKey.restore()")
        if len(private) != KEY_BYTES:
            raise ValueError(f"an X25519 private key is {KEY_BYTES} bytes")
        _check_round(through)
        if digest is not None and len(digest) != HASH_BYTES:
            raise ValueError(f"H(S) is {HASH_BYTES} bytes")
        if (through == 0) != (digest is None):
            raise ValueError("a key that masked a round knows its participant set, and only then")
        self._private = bytearray(private)
        self._public = nacl.bindings.crypto_scalarmult_base(bytes(private))
        self._through, self._digest = through, digest
        self._spent = False
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> RunMaskKey:
        """A fresh key from the operating system's CSPRNG, that has masked no round yet."""
        return cls(nacl.utils.random(KEY_BYTES), 0, None, _CONSTRUCT)

    @classmethod
    def restore(cls, private: bytes, *, masked_through: int, set_digest: bytes | None) -> RunMaskKey:
        """Rebuild a key saved by `cleartext_private_bytes`, with the last round it masked and the
        H(S) it masked under (both None/0 when it masked none) — from the node's own store, which
        records them with each answer. Given an older round than the truth, it would mask a round
        twice: the caller must pass what the store says, read in the transaction that records."""
        return cls(bytes(private), masked_through, set_digest, _CONSTRUCT)

    def cleartext_private_bytes(self) -> bytes:
        """The private half, for the node's own 0600 store only. Named loudly on purpose."""
        with self._lock:
            if self._spent:
                raise MaskKeyUsed("this mask key was destroyed")
            return bytes(self._private)

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def masked_through(self) -> int:
        """The last round masked (0: none)."""
        return self._through

    @property
    def set_digest(self) -> bytes | None:
        """H(S) of the participant set the rounds were masked under (None before round 1)."""
        return self._digest

    def mask(self, vector: Sequence[int], *, me: str, participants: ParticipantSet, query_hash: str,
             round: int) -> MaskedVector:
        """Mask `vector` for round `round` (≥ 1, above every round masked before) under S, the
        same S as every earlier round. Refusals consume nothing: `MaskKeyUsed` for a round not
        above the last, `InvalidParticipantSet` for another S (or one without this key)."""
        data = _checked(vector, public_key=self._public, me=me, participants=participants, query_hash=query_hash,
                        round=round)
        if round < 1:
            raise MaskKeyUsed("round 0 is the query plane's one-shot round; a run's rounds start at 1")
        digest = participants.digest()
        with self._lock:
            if self._spent:
                raise MaskKeyUsed("this mask key was destroyed")
            if round <= self._through:
                raise MaskKeyUsed(f"round {round} is not above round {self._through}, the last this key masked; "
                                  "a key masks each round once")
            if self._digest is not None and digest != self._digest:
                raise InvalidParticipantSet("a run's participant set is fixed: this key masked earlier rounds "
                                            "under another one")
            self._through, self._digest = round, digest
            private = bytes(self._private)
        return _masked(data, private, me=me, participants=participants, query_hash=query_hash, round=round)

    def destroy(self) -> None:
        """Forget the private half (overwritten in place); every later use raises MaskKeyUsed."""
        with self._lock:
            self._spent = True
            self._private[:] = bytes(len(self._private))

    def __repr__(self) -> str:
        state = "destroyed" if self._spent else f"masked through round {self._through}"
        return f"RunMaskKey(public={self._public.hex()[:16]}…, {state})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a run mask key cannot be copied or pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("a run mask key cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("a run mask key cannot be copied")

