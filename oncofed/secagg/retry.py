"""When a release may go out under a new participant set after going out under another (DESIGN §4
"Flow", the paragraph after step 5; decision D26).

A centre that released a cohort's answer summed over the set S₁ must not release it again summed
over S₂ ≠ S₁: if both sums reached the researcher, S₁'s sum − S₂'s sum would be the figures of
the centres in one set and not the other. A failed query is the one exception, and a retry must
prove that the earlier sum never existed. The proof is the abstentions ("never released query q",
signed) of the centres that left: without the answer of a member of S₁, the masks of S₁ do not
cancel and its partial sum is noise.

The rule asks more than one abstention. For every earlier release (S₁, q):

- S₂ ⊆ S₁: a retry only leaves centres out. A centre new to the set relies on nobody's word;
- every centre of S₁ ∖ S₂ abstained from q. The difference of the two sums is exactly the figures
  of S₁ ∖ S₂, so each of those centres vouches for its own figures: a centre that lies about
  abstaining (or colludes with the researcher) gives away its own figures and nobody else's.

An earlier release under the same set is no conflict (its sum is the same figures, freshly
masked); one under a set the store cannot name (made before sets were recorded) is refused.
Pure functions: the node's release ledger supplies the releases and the verified abstentions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EarlierRelease:
    """A release of the same answer that went out summed over `centres` (None: not recorded), in
    the queries `queries` (query hashes, hex)."""

    centres: frozenset[str] | None
    queries: frozenset[str]


def release_blocker(centres: Collection[str], earlier: Iterable[EarlierRelease],
                    abstained: Collection[tuple[str, str]]) -> str | None:
    """Why releasing over `centres` now could let two sums be differenced — in words for the local
    audit log — or None when it cannot. `abstained` holds (query hash, centre) pairs whose signed
    abstentions were verified against the registry."""
    mine = frozenset(centres)
    for e in earlier:
        if e.centres is None:
            return "released before under a participant set this store did not record"
        if e.centres == mine:
            continue
        extra = sorted(mine - e.centres)
        if extra:
            return f"released before under a set without {', '.join(extra)}"
        for q in sorted(e.queries):
            missing = [c for c in sorted(e.centres - mine) if (q, c) not in abstained]
            if missing:
                return f"released before in query {q[:16]} with {', '.join(missing)}, who did not abstain from it"
    return None
