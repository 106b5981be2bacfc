"""The hub's bookkeeping for retries (oncofed.federation.hub.retries, D26): which retries it
queues, whom it asks to abstain, and when a retry's answer tasks may go out."""

from __future__ import annotations

from oncofed.federation.hub.retries import members, needs, submit_problem, to_ask
from oncofed.federation.hub.store import Progress, QueryRow


def _failed(state: str = "failed", participants: bool = True) -> QueryRow:
    return QueryRow(b"q" * 32, "res-1", b"p" * 32, ("a", "b", "c", "d"), 3, 0, 2**40, 0, state, "", 5,
                    (b"accepts",) if participants else (), 0, 1, 1)


def _progress(**states: str) -> dict[str, Progress]:
    """a=answered, c=failed … ; an accept for everyone but d (who never replied)."""
    out = {}
    for centre, state in states.items():
        out[centre] = Progress(centre, state, "", 0, None if centre == "d" else b"accept", None,
                               b"sealed" if state == "answered" else None, None,
                               b"abst-" + centre.encode() if state == "abstained" else None)
    return out


PROGRESS = _progress(a="answered", b="answered", c="failed", d="queued")


def test_the_failed_set_is_the_accepts_that_made_it_in() -> None:
    assert members(_failed(), PROGRESS) == ["a", "b", "c"]
    assert members(_failed(participants=False), PROGRESS) == []       # failed before a set was fixed


def test_only_a_failed_query_of_yours_is_retried_over_its_own_members() -> None:
    assert submit_problem(None, "res-1", ["a", "b"], {}) != ""
    assert "of yours" in submit_problem(_failed(), "res-2", ["a", "b"], PROGRESS)
    assert "not failed" in submit_problem(_failed("complete"), "res-1", ["a", "b"], PROGRESS)
    assert "not failed" in submit_problem(_failed("answering"), "res-1", ["a", "b"], PROGRESS)
    assert "not in it: d" in submit_problem(_failed(), "res-1", ["a", "b", "d"], PROGRESS)
    assert "b answered the failed query" in submit_problem(_failed(), "res-1", ["a"], PROGRESS)
    assert submit_problem(_failed(), "res-1", ["a", "b"], PROGRESS) == ""
    assert submit_problem(_failed("expired"), "res-1", ["a", "b"], PROGRESS) == ""


def test_the_hub_asks_the_members_left_out_that_can_still_abstain() -> None:
    assert to_ask(_failed(), PROGRESS, ["a", "b"]) == ["c"]
    done = _progress(a="answered", b="answered", c="abstained", d="queued")
    assert to_ask(_failed(), done, ["a", "b"]) == []


def test_answer_tasks_wait_for_every_abstention_and_a_releaser_fails_the_retry() -> None:
    waiting = needs(_failed(), PROGRESS, ["a", "b"])
    assert (waiting.abstentions, waiting.missing, waiting.refused) == ([], ["c"], [])
    ready = needs(_failed(), _progress(a="answered", b="answered", c="abstained", d="queued"), ["a", "b"])
    assert (ready.abstentions, ready.missing, ready.refused) == ([b"abst-c"], [], [])
    # b declined the retry, so the retry's set is {a}: b answered the failed query and cannot abstain
    stuck = needs(_failed(), _progress(a="answered", b="answered", c="abstained", d="queued"), ["a"])
    assert stuck.refused == ["b"]
    same = needs(_failed(), PROGRESS, ["a", "b", "c"])            # c is back in the set: nothing needed
    assert (same.abstentions, same.missing, same.refused) == ([], [], [])
