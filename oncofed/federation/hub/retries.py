"""The hub's part in retrying a failed query (DESIGN §4 "Flow"; decision D26).

A query fails when a member of its participant set fails or stays silent after the set is fixed:
no partial sum exists. The researcher retries with a new signed query that names the failed one
(`retry_of`). The hub cannot read either, and it is not trusted to decide anything: it only
collects what the centres need and relays it.

- At submission the retry may target only centres of the failed set (when it had one), and must
  keep every member whose answer to the failed query reached the hub — such a member cannot
  abstain, so leaving it out could only fail later.
- Each member of the failed set that the retry leaves out is asked for a signed abstention from
  the failed query (an abstain task filed under the failed query's hash). Once the retry's own
  set S′ is fixed, every member of the failed set outside S′ must have abstained before the answer
  tasks go out, carrying the abstentions; the members verify them and their release ledgers decide.
- The retry waits for missing abstentions (a centre that is down cannot sign one) until its
  answer deadline, then fails naming them; a centre that answers "I released it" fails it at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from oncofed.federation.hub.store import OPEN_STATES, Progress, QueryRow

#: The coarse code of a centre's failure notice that answers an abstain task: "I released an
#: answer to the failed query" (oncofed.node.connector). Any other failure notice for a failed
#: query is a late reply to its own answer task — nothing released — and no refusal to abstain.
RELEASED = "ANSWERED"


@dataclass(frozen=True)
class Needs:
    """What a retry over the set `members` still needs from the failed query's set."""

    abstentions: list[bytes]      # the signed abstentions it has, in centre order
    missing: list[str]            # members left out that have not abstained yet
    refused: list[str]            # members left out that cannot abstain (they released it)


def members(failed: QueryRow, progress: Mapping[str, Progress]) -> list[str]:
    """The failed query's participant set (its centres whose accepts made it in)."""
    if not failed.participants:
        return []
    return sorted(c for c, p in progress.items() if p.accept is not None)


def _released(p: Progress) -> bool:
    return p.answer is not None or p.state == "no_abstention"


def submit_problem(failed: QueryRow | None, researcher: str, targets: list[str],
                   progress: Mapping[str, Progress]) -> str:
    """Why a retry of `failed` with these targets cannot be queued, in words ('' when it can)."""
    if failed is None or failed.researcher != researcher:
        return "retry_of names no query of yours at this hub"
    if failed.state in OPEN_STATES or failed.state == "complete":
        return f"the query retried is {failed.state}, not failed: only a failed query is retried"
    old = members(failed, progress)
    if not old:
        return ""
    outside = sorted(set(targets) - set(old))
    if outside:
        return (f"a retry targets only centres of the failed query's participant set; not in it: "
                f"{', '.join(outside)}")
    answered = sorted(c for c in old if c not in targets and _released(progress[c]))
    if answered:
        return (f"{', '.join(answered)} answered the failed query and cannot abstain from it: "
                "a retry must include it")
    return ""


def to_ask(failed: QueryRow, progress: Mapping[str, Progress], targets: list[str]) -> list[str]:
    """Members of the failed set the retry does not target and that have not abstained yet."""
    return [c for c in members(failed, progress)
            if c not in targets and progress[c].abstention is None and not _released(progress[c])]


def needs(failed: QueryRow, progress: Mapping[str, Progress], new_members: list[str]) -> Needs:
    """What a retry whose set is `new_members` needs before its answer tasks may go out."""
    have, missing, refused = [], [], []
    for c in members(failed, progress):
        if c in new_members:
            continue
        p = progress[c]
        if p.abstention is not None:
            have.append(p.abstention)
        elif _released(p):
            refused.append(c)
        else:
            missing.append(c)
    return Needs(have, missing, refused)
