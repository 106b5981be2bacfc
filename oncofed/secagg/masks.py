"""Pairwise masks over one concatenated answer vector mod 2^128 (DESIGN §4, "Masks").

Each member of the participant set S adds, for every other member, a mask only the two of them
can compute; for each pair the member with the lower centre id adds it and the higher subtracts
it, so in the sum over all of S every mask cancels and the researcher gets Σ vectors, while any
proper subset of answers stays uniformly random. Version 1, for the pair (lo, hi) of S, lo < hi:

    secret  = X25519(my ephemeral private key, the other's ephemeral public key)
              (nacl.bindings.crypto_scalarmult — the raw shared point, not Box.shared_key)
    info    = LP(query hash, 32 bytes) ‖ LP(round, 4 bytes big-endian) ‖ LP(H(S), 32 bytes)
              ‖ LP(id_lo) ‖ LP(public key_lo) ‖ LP(id_hi) ‖ LP(public key_hi)
    key     = HKDF-SHA256(secret, salt = b"oncofed/mask/v1", info, length 32)
    stream  = ChaCha20(key, 16-byte nonce = counter 0 (4 bytes) ‖ 12 zero bytes)
    mask[e] = stream[16e : 16e + 16] read little-endian;   lo adds it, hi subtracts it

Zero nonces are safe because every key is used once: it is bound to the query, the round, the
exact participant set and both keys, and each ephemeral key masks one vector only (`mask`
consumes it). A second vector under the same masks would hand the researcher the difference of
the two — hence `MaskKeyUsed`.
"""

from __future__ import annotations

import struct
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import nacl.bindings
import nacl.exceptions
import nacl.utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oncofed.secagg.errors import AnswersMismatch, InvalidParticipantSet, MaskKeyUsed, SecAggError
from oncofed.secagg.lanes import ELEMENT_BYTES, Accumulator, pack, sum_packed, unpack
from oncofed.secagg.participants import HASH_BYTES, KEY_BYTES, Accept, ParticipantSet, _lp, hash_bytes

SALT = b"oncofed/mask/v1"
NONCE = bytes(16)
MAX_ROUND = 2**32 - 1
MAX_VECTOR_LENGTH = 1 << 22      # 64 MiB of keystream per pair; answers are a few thousand values
_CONSTRUCT = object()


class EphemeralMaskKey:
    """A one-use X25519 key for one (query hash, round, participant set).

    Create it when accepting a query (`generate`), put `public_key` in the signed accept, and
    give it to `mask` once S is fixed: `mask` consumes and destroys it, and any further use
    raises `MaskKeyUsed`. It cannot be copied or pickled; its private half is never shown.
    """

    __slots__ = ("_lock", "_private", "_public", "_spent")

    def __init__(self, private: bytes, _construct: object = None) -> None:
        if _construct is not _CONSTRUCT:
            raise TypeError("use EphemeralMaskKey.generate()")
        if len(private) != KEY_BYTES:
            raise ValueError(f"an X25519 private key is {KEY_BYTES} bytes")
        self._private = bytearray(private)
        self._public = nacl.bindings.crypto_scalarmult_base(bytes(private))
        self._spent = False
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> EphemeralMaskKey:
        """A fresh key from the operating system's CSPRNG (libsodium's randombytes)."""
        return cls(nacl.utils.random(KEY_BYTES), _CONSTRUCT)

    @classmethod
    def from_cleartext_private_bytes(cls, private: bytes) -> EphemeralMaskKey:
        """Rebuild a key saved by `cleartext_private_bytes` — for a node that accepted a query,
        restarted, and must still answer under the S it accepted, and for public test vectors.
        Never for masking a second vector: the node's answer cache resends, it never remasks."""
        return cls(bytes(private), _CONSTRUCT)

    def cleartext_private_bytes(self) -> bytes:
        """The private half, for the node's own 0600 store only, deleted once the answer is
        recorded. Named loudly on purpose (as Tink's cleartext keyset handle)."""
        with self._lock:
            if self._spent:
                raise MaskKeyUsed("this mask key was already used or destroyed")
            return bytes(self._private)

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def usable(self) -> bool:
        return not self._spent

    def destroy(self) -> None:
        """Forget the private half (overwritten in place; Python may still hold transient
        copies, so the guarantee that matters is that this object refuses to mask again)."""
        with self._lock:
            self._spent = True
            self._private[:] = bytes(len(self._private))

    def _take(self) -> bytes:
        """Mark the key used and hand its private half to `mask` — once."""
        with self._lock:
            if self._spent:
                raise MaskKeyUsed("this mask key was already used or destroyed; a key masks one vector only")
            self._spent = True
            return bytes(self._private)

    def __repr__(self) -> str:
        state = "spent" if self._spent else "unused"
        return f"EphemeralMaskKey(public={self._public.hex()[:16]}…, {state})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an ephemeral mask key cannot be copied or pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("an ephemeral mask key cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("an ephemeral mask key cannot be copied")


@dataclass(frozen=True)
class MaskedVector:
    """One centre's masked answer vector and the context it was masked in. `data` is the packed
    vector (16 bytes little-endian per element), as it goes into the signed answer."""

    centre_id: str
    query_hash: str
    round: int
    set_digest: bytes
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        hash_bytes(self.query_hash)
        _check_round(self.round)
        if not isinstance(self.set_digest, bytes) or len(self.set_digest) != HASH_BYTES:
            raise ValueError(f"H(S) is {HASH_BYTES} bytes")
        if not self.data or len(self.data) % ELEMENT_BYTES:
            raise SecAggError(f"a masked vector is a positive multiple of {ELEMENT_BYTES} bytes")

    def __len__(self) -> int:
        return len(self.data) // ELEMENT_BYTES

    @property
    def values(self) -> list[int]:
        return unpack(self.data)


def _check_round(round: int) -> None:
    if isinstance(round, bool) or not isinstance(round, int) or not 0 <= round <= MAX_ROUND:
        raise ValueError(f"round must be an integer in [0, {MAX_ROUND}]")


def pair_info(*, query_hash: str, round: int, set_digest: bytes, a: Accept, b: Accept) -> bytes:
    """The HKDF info of the pair {a, b} (version 1); the same whichever of the two computes it."""
    lo, hi = (a, b) if a.centre_id < b.centre_id else (b, a)
    return b"".join((_lp(hash_bytes(query_hash)), _lp(struct.pack(">I", round)), _lp(set_digest),
                     _lp(lo.centre_id.encode("ascii")), _lp(lo.mask_public_key),
                     _lp(hi.centre_id.encode("ascii")), _lp(hi.mask_public_key)))


def _pair_key(private: bytes, their_public: bytes, info: bytes) -> bytes:
    try:
        secret = nacl.bindings.crypto_scalarmult(private, their_public)
    except nacl.exceptions.RuntimeError:
        # libsodium refuses a shared point of all zeros (a low-order public key)
        raise InvalidParticipantSet("a mask key in the participant set is not a usable X25519 key") from None
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=info).derive(secret)


def _keystream(key: bytes, zeros: bytes) -> bytes:
    return Cipher(algorithms.ChaCha20(key, NONCE), mode=None).encryptor().update(zeros)


def mask(vector: Sequence[int], *, key: EphemeralMaskKey, me: str, participants: ParticipantSet,
         query_hash: str, round: int) -> MaskedVector:
    """Mask `vector` (integers in [0, 2^128): values then flags, one concatenated vector) for
    centre `me` under S = `participants`, consuming `key`.

    Everything that needs no secret is checked first — S is for `query_hash`, holds `me` with
    this key's public half, the vector and round are in range — and nothing is consumed when a
    check fails. From then on the key is spent, whatever happens.
    """
    data = _checked(vector, public_key=key.public_key, me=me, participants=participants, query_hash=query_hash,
                    round=round)
    private = key._take()
    try:
        return _masked(data, private, me=me, participants=participants, query_hash=query_hash, round=round)
    finally:
        key.destroy()


def _checked(vector: Sequence[int], *, public_key: bytes, me: str, participants: ParticipantSet, query_hash: str,
             round: int) -> bytes:
    """The checks that need no secret, then the packed vector."""
    _check_round(round)
    participants.check(query_hash=query_hash, me=me, my_mask_key=public_key, min_size=2)
    if not 1 <= len(vector) <= MAX_VECTOR_LENGTH:
        raise SecAggError(f"an answer vector has 1–{MAX_VECTOR_LENGTH} elements, not {len(vector)}")
    return pack(vector)


def _masked(data: bytes, private: bytes, *, me: str, participants: ParticipantSet, query_hash: str,
            round: int) -> MaskedVector:
    """The packed vector plus (lower id) or minus (higher id) each pair's keystream."""
    digest = participants.digest()
    mine = participants.accept_of(me)
    n = len(data) // ELEMENT_BYTES
    acc = Accumulator(n)
    acc.add(data)
    zeros = bytes(len(data))
    for other in participants:
        if other.centre_id == me:
            continue
        info = pair_info(query_hash=query_hash, round=round, set_digest=digest, a=mine, b=other)
        stream = _keystream(_pair_key(private, other.mask_public_key, info), zeros)
        if me < other.centre_id:
            acc.add(stream)
        else:
            acc.subtract(stream)
    return MaskedVector(me, query_hash, round, digest, acc.result())


def unmask_sum(masked_vectors: Iterable[MaskedVector], *, participants: ParticipantSet, round: int) -> list[int]:
    """Σ of the masked answers mod 2^128 — the researcher's aggregate, once every mask cancelled.

    Refuses (`AnswersMismatch`) unless there is exactly one answer per member of S, each masked
    under this S, query and round, all of one length: any other sum is noise, not a smaller
    aggregate, and must not be mistaken for one.
    """
    answers = list(masked_vectors)
    digest = participants.digest()
    for a in answers:
        if a.set_digest != digest or a.query_hash != participants.query_hash or a.round != round:
            raise AnswersMismatch(f"the answer from {a.centre_id} was masked for another query, round or "
                                  "participant set")
    counts = Counter(a.centre_id for a in answers)
    twice = sorted(c for c, k in counts.items() if k > 1)
    missing = sorted(set(participants.centre_ids) - set(counts))
    extra = sorted(set(counts) - set(participants.centre_ids))
    if twice:
        raise AnswersMismatch(f"more than one answer from {', '.join(twice)}")
    if extra:
        raise AnswersMismatch(f"answers from {', '.join(extra)}, which are not in the participant set")
    if missing:
        raise AnswersMismatch(f"no answer from {', '.join(missing)}: the masks cannot cancel")
    lengths = {len(a) for a in answers}
    if len(lengths) != 1:
        raise AnswersMismatch(f"the answers differ in length ({', '.join(map(str, sorted(lengths)))} elements)")
    return unpack(sum_packed((a.data for a in answers), lengths.pop()))
