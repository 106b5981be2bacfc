"""The Flower apps' pure parts: the message layout both apps read and write, and the ClientApp's
import weight (a fresh process per message on the deployment engine: no pandas, statsmodels,
scipy, matplotlib or Ray at import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, RecordDict
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.flower import messages

ROOT = Path(__file__).resolve().parents[2]


@settings(max_examples=50, deadline=None)
@given(qh=st.binary(min_size=32, max_size=32), r=st.integers(1, 1000),
       beta=st.lists(st.integers(-(2**62), 2**62), max_size=20), accepts=st.lists(st.binary(max_size=300), max_size=8),
       offset=st.integers(-(2**62), 2**62))
def test_a_round_request_reads_back_as_written(qh: bytes, r: int, beta: list[int], accepts: list[bytes],
                                               offset: int) -> None:
    content = messages.round_content(qh, r, beta, accepts, offset=offset)
    assert messages.step_of(content) == messages.ROUND
    got = messages.read_round(content)
    assert (got.query_hash, got.round, list(got.beta), list(got.accepts), got.offset) == (qh, r, beta, accepts,
                                                                                          offset)


def test_prepare_and_replies_read_back() -> None:
    assert messages.read_prepare(messages.prepare_content(b"env")) == b"env"
    for kind in messages.REPLY_KINDS:
        assert messages.read_reply(messages.reply_content(kind, b"x")) == (kind, b"x")
    with pytest.raises(ValueError, match="reply kind"):
        messages.reply_content("sum", b"x")


@pytest.mark.parametrize("record", [
    {}, {"step": "train"}, {"step": 3}, {"step": "round", "query-hash": "not bytes", "round": 1},
    {"step": "round", "query-hash": b"q", "round": True}, {"step": "round", "query-hash": b"q", "round": 1,
                                                           "beta": [1.5]},
    {"step": "round", "query-hash": b"q", "round": 1, "accepts": ["text"]},
    {"step": "round", "query-hash": b"q", "round": 1, "offset": 0.5},
])
def test_malformed_requests_are_refused_with_a_message_error(record: dict[str, object]) -> None:
    content = RecordDict({messages.RECORD: ConfigRecord(record)}) if record else RecordDict({})  # type: ignore[arg-type]

    def read() -> object:
        return messages.read_round(content) if messages.step_of(content) == messages.ROUND else \
            messages.read_prepare(content)

    with pytest.raises(messages.MessageError):
        read()


def test_a_reply_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(messages.MessageError, match="unknown reply kind"):
        messages.read_reply(RecordDict({messages.RECORD: ConfigRecord({"kind": "sum", "data": b""})}))


def test_the_clientapp_imports_nothing_heavy() -> None:
    code = ("import sys, oncofed.flower.clientapp\n"
            "heavy = sorted(m for m in ('pandas', 'statsmodels', 'scipy', 'matplotlib', 'ray', 'lifelines')\n"
            "               if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == ""
