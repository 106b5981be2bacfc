"""Participant sets: who takes part in one query's secure aggregation, and with which mask key.

After verifying a query, each centre creates an ephemeral X25519 mask key and answers with a
signed *accept* {query hash, centre id, ephemeral public key}. The hub collects the accepts into
the participant set S and sends it to every member; each member masks against every other member
of S, and the researcher's client sums one answer per member (DESIGN §4, "Flow").

Wire formats, version 1 (pinned by tests/vectors/secagg_vectors.json). LP(x) is x prefixed by
its length as 4 bytes big-endian.

    accept body   LP(query hash, 32 raw bytes) ‖ LP(centre id, ASCII) ‖ LP(mask public key, 32 bytes)
                  signed by the centre's identity key in an envelope of type "oncofed/accept/v1"
    S             LP("oncofed/participants/v1") ‖ count (4 bytes big-endian) ‖ LP(accept body) × count,
                  accepts sorted by centre id
    H(S)          SHA-256 of S's canonical bytes

Why sorted: S is a set, so the order the hub happens to list accepts in must not change H(S)
(which every mask depends on). Why H(S) covers the accept bodies and not their signatures: it
names who takes part with which key, whoever carried the signatures; signatures are checked on
arrival (`ParticipantSet.from_signed`) and kept beside the set for forwarding.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from oncofed.keys.envelope import Keyring, sign, verify_from
from oncofed.keys.identity import Identity, check_member_id
from oncofed.secagg.errors import InvalidParticipantSet

ACCEPT_TAG = "oncofed/accept/v1"
SET_DOMAIN = b"oncofed/participants/v1"
KEY_BYTES = 32
HASH_BYTES = 32
MIN_PARTICIPANTS = 2                # structural: with one member there is nothing to mask against
DEFAULT_MIN_PARTICIPANTS = 3        # DESIGN §4: a query's and every member's minimum, by default
MAX_PARTICIPANTS = 1000             # far above any federation; bounds the work one S can demand
MAX_ACCEPT_ENVELOPE = 4096          # an accept envelope is ~250 bytes


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_lp(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(data):
        raise ValueError("truncated")
    (n,) = struct.unpack_from(">I", data, pos)
    end = pos + 4 + n
    if end > len(data):
        raise ValueError("truncated")
    return data[pos + 4:end], end


def hash_bytes(query_hash: str) -> bytes:
    """The 32 raw bytes of a query hash as oncofed.query.query_hash writes it (lower-case hex)."""
    if not isinstance(query_hash, str) or len(query_hash) != 2 * HASH_BYTES or query_hash != query_hash.lower():
        raise ValueError("query hash must be 64 lower-case hex characters (oncofed.query.query_hash)")
    try:
        return bytes.fromhex(query_hash)
    except ValueError:
        raise ValueError("query hash must be 64 lower-case hex characters (oncofed.query.query_hash)") from None


@dataclass(frozen=True)
class Accept:
    """One centre's accept: it takes part in `query_hash` with the ephemeral `mask_public_key`."""

    query_hash: str
    centre_id: str
    mask_public_key: bytes

    def __post_init__(self) -> None:
        hash_bytes(self.query_hash)
        check_member_id(self.centre_id)
        if not isinstance(self.mask_public_key, bytes) or len(self.mask_public_key) != KEY_BYTES:
            raise ValueError(f"a mask public key is {KEY_BYTES} bytes")

    def encode(self) -> bytes:
        """The canonical body a centre signs (version 1)."""
        return (_lp(hash_bytes(self.query_hash)) + _lp(self.centre_id.encode("ascii"))
                + _lp(self.mask_public_key))

    @classmethod
    def decode(cls, body: bytes) -> Accept:
        """Parse an accept body strictly: exact lengths, no trailing bytes."""
        try:
            qh, pos = _read_lp(body, 0)
            cid, pos = _read_lp(body, pos)
            key, pos = _read_lp(body, pos)
            if pos != len(body) or len(qh) != HASH_BYTES:
                raise ValueError("malformed")
            return cls(qh.hex(), cid.decode("ascii"), key)
        except (ValueError, UnicodeDecodeError):
            raise InvalidParticipantSet("malformed accept") from None


def sign_accept(identity: Identity, accept: Accept) -> bytes:
    """The centre's signed accept, as envelope bytes to send unchanged."""
    if identity.role != "centre" or identity.member_id != accept.centre_id:
        raise ValueError(f"{identity.role} {identity.member_id} cannot sign an accept for {accept.centre_id}")
    return sign(identity, ACCEPT_TAG, accept.encode())


def open_accept(signed: bytes, *, keyring: Keyring) -> Accept:
    """Verify a signed accept against the registry's keys (`oncofed.keys.envelope.keyring`); the
    signer must be the centre the accept names. A bad signature raises `InvalidMessage`."""
    verified = verify_from(signed, tag=ACCEPT_TAG, keyring=keyring, max_bytes=MAX_ACCEPT_ENVELOPE)
    accept = Accept.decode(verified.body)
    if verified.signer.role != "centre" or verified.signer.member_id != accept.centre_id:
        raise InvalidParticipantSet(
            f"an accept for {accept.centre_id} was signed by {verified.signer.role} {verified.signer.member_id}")
    return accept


@dataclass(frozen=True)
class ParticipantSet:
    """S: the accepts of one query, in canonical order (by centre id), checked for structure.

    Construct from accepts (`ParticipantSet(accepts)`), from signed accepts as they arrive
    (`from_signed`) or from canonical bytes (`decode`). `signed` holds the envelopes when known,
    in the same order, so the hub and client can forward them; it takes no part in equality.
    """

    accepts: tuple[Accept, ...]
    signed: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        accepts = tuple(self.accepts)
        if not all(isinstance(a, Accept) for a in accepts):
            raise TypeError("a participant set is made of Accept objects")
        if self.signed and len(self.signed) != len(accepts):
            raise ValueError("one signed envelope per accept")
        order = sorted(range(len(accepts)), key=lambda i: accepts[i].centre_id)
        object.__setattr__(self, "accepts", tuple(accepts[i] for i in order))
        if self.signed:
            object.__setattr__(self, "signed", tuple(bytes(self.signed[i]) for i in order))
        if not MIN_PARTICIPANTS <= len(accepts) <= MAX_PARTICIPANTS:
            raise InvalidParticipantSet(
                f"a participant set has {MIN_PARTICIPANTS}–{MAX_PARTICIPANTS} members, not {len(accepts)}")
        dupes = sorted(c for c, k in Counter(a.centre_id for a in accepts).items() if k > 1)
        if dupes:
            raise InvalidParticipantSet(f"centre {', '.join(dupes)} appears more than once in the participant set")
        if len({a.mask_public_key for a in accepts}) != len(accepts):
            raise InvalidParticipantSet("two accepts in the participant set carry the same mask key")
        if len({a.query_hash for a in accepts}) != 1:
            raise InvalidParticipantSet("the accepts in the participant set are for different queries")

    @classmethod
    def from_signed(cls, signed: Iterable[bytes], *, keyring: Keyring) -> ParticipantSet:
        """S from signed accepts, each verified against the registry's keys (`open_accept`)."""
        envelopes = [bytes(s) for s in signed]
        if len(envelopes) > MAX_PARTICIPANTS:
            raise InvalidParticipantSet(f"a participant set has at most {MAX_PARTICIPANTS} members")
        return cls(tuple(open_accept(e, keyring=keyring) for e in envelopes), signed=tuple(envelopes))

    @property
    def query_hash(self) -> str:
        return self.accepts[0].query_hash

    @property
    def centre_ids(self) -> tuple[str, ...]:
        return tuple(a.centre_id for a in self.accepts)

    def __len__(self) -> int:
        return len(self.accepts)

    def __iter__(self) -> Iterator[Accept]:
        return iter(self.accepts)

    def __contains__(self, centre_id: object) -> bool:
        return any(a.centre_id == centre_id for a in self.accepts)

    def accept_of(self, centre_id: str) -> Accept:
        """The accept of `centre_id`; `InvalidParticipantSet` when it takes no part."""
        for a in self.accepts:
            if a.centre_id == centre_id:
                return a
        raise InvalidParticipantSet(f"{centre_id} is not in the participant set")

    def encode(self) -> bytes:
        """S's canonical bytes (version 1)."""
        return self._canonical

    @cached_property
    def _canonical(self) -> bytes:
        # computed once: a member reads H(S) for the ledger, the masks and the answer's header,
        # and encoding a hundred accepts costs more than hashing them
        return b"".join([_lp(SET_DOMAIN), struct.pack(">I", len(self.accepts)),
                         *(_lp(a.encode()) for a in self.accepts)])

    @classmethod
    def decode(cls, data: bytes) -> ParticipantSet:
        """Parse canonical bytes strictly; the accepts must already be in canonical order, so a
        set has exactly one encoding."""
        data = bytes(data)
        try:
            domain, pos = _read_lp(data, 0)
            if domain != SET_DOMAIN or pos + 4 > len(data):
                raise ValueError("not a participant set")
            (count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            if count > MAX_PARTICIPANTS:
                raise ValueError("too many")
            bodies = []
            for _ in range(count):
                body, pos = _read_lp(data, pos)
                bodies.append(body)
            if pos != len(data):
                raise ValueError("trailing bytes")
        except ValueError:
            raise InvalidParticipantSet("malformed participant set") from None
        s = cls(tuple(Accept.decode(b) for b in bodies))
        if s.encode() != data:
            raise InvalidParticipantSet("participant set not in canonical order")
        return s

    def digest(self) -> bytes:
        """H(S): SHA-256 of the canonical bytes — what every mask and answer header binds."""
        return self._digest

    @cached_property
    def _digest(self) -> bytes:
        return hashlib.sha256(self._canonical).digest()

    def check(self, *, query_hash: str, me: str | None = None, my_mask_key: bytes | None = None,
              targets: Collection[str] | None = None,
              min_size: int = DEFAULT_MIN_PARTICIPANTS) -> None:
        """The checks a member (step 4) or the researcher's client (step 5) makes on S beyond its
        structure: S is for this query, holds my accept with my key, lies within the query's
        targets T and has at least `min_size` members. Raises `InvalidParticipantSet`."""
        if self.query_hash != query_hash:
            raise InvalidParticipantSet("the participant set is for another query")
        if me is not None:
            mine = self.accept_of(me)
            if my_mask_key is not None and mine.mask_public_key != my_mask_key:
                raise InvalidParticipantSet(f"the participant set carries another mask key for {me}")
        if targets is not None:
            outside = sorted(set(self.centre_ids) - set(targets))
            if outside:
                raise InvalidParticipantSet(f"centre {', '.join(outside)} in the participant set was not targeted")
        if len(self) < min_size:
            raise InvalidParticipantSet(f"too few participants: {len(self)} < {min_size}")

