"""Who waits at the hub, and what wakes them (D39, D41).

A centre's long poll (a Pull, or a Push that also pulls) waits on its centre's event, set when a
task is queued for it; a researcher's Watch waits on an event of its own, registered under its
query and set when that query changes. A wake-up costs its waiter a store read, so a change wakes
only the waiters it concerns: waking every watch on every change made each reply cost a read per
query open. Every wait also looks again every RECHECK_SECONDS, so that a change nobody announced
is seen late, never missed, and ends when the hub stops, the call ends or its time is up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import grpc

MAX_WAIT_MS = 25_000
RECHECK_SECONDS = 1.0        # a waiter looks again this often even when not woken


class Waiters:
    """The hub's waiting calls: per centre an event and the number of its newest long poll, per
    query the events of the watches waiting on it. `stopping` is the hub's stop flag."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        self._lock = threading.Lock()
        self._work: dict[str, threading.Event] = {}           # per centre: set when it got work
        self._watches: dict[bytes, set[threading.Event]] = {}  # per query: one event per waiting watch
        self._polls: dict[str, int] = {}                       # per centre: its newest poll's number

    def wake_all(self) -> None:
        """After `stopping` is set: every wait ends now."""
        with self._lock:
            for ev in [*self._work.values(), *(e for watching in self._watches.values() for e in watching)]:
                ev.set()

    def notify(self, centres: Iterable[str] = (), queries: Iterable[bytes] = ()) -> None:
        """Wake the long polls of the centres that got work and the watches of the queries that
        changed (call it after the change is committed)."""
        with self._lock:
            for qh in queries:
                for ev in self._watches.get(qh, ()):
                    ev.set()
        for centre in centres:
            self._event(centre).set()

    def number(self, centre: str) -> int:
        """Number a long poll of the centre as it arrives: the newest number is the one call of
        the centre that may take its tasks."""
        with self._lock:
            poll = self._polls[centre] = self._polls.get(centre, 0) + 1
        return poll

    def is_newest(self, centre: str, poll: int) -> bool:
        with self._lock:
            return self._polls.get(centre) == poll

    def for_work(self, centre: str, ready: Callable[[], bool], wait_ms: int, context: grpc.ServicerContext) -> None:
        """A long poll's wait: until `ready()` (the centre has tasks)."""
        _wait(self._event(centre), ready, wait_ms, context, self.stopping)

    def for_query(self, query_hash: bytes, ready: Callable[[], bool], wait_ms: int,
                  context: grpc.ServicerContext) -> None:
        """A watch's wait: until `ready()`, woken by this query's changes only."""
        event = threading.Event()
        with self._lock:
            self._watches.setdefault(query_hash, set()).add(event)
        try:
            _wait(event, ready, wait_ms, context, self.stopping)
        finally:
            with self._lock:
                watching = self._watches.get(query_hash)
                if watching is not None:
                    watching.discard(event)
                    if not watching:
                        del self._watches[query_hash]

    def _event(self, centre: str) -> threading.Event:
        with self._lock:
            return self._work.setdefault(centre, threading.Event())


def _wait(event: threading.Event, ready: Callable[[], bool], wait_ms: int, context: grpc.ServicerContext,
          stopping: threading.Event) -> None:
    """Wait on `event` until `ready()`, the hub stops, the call ends, or `wait_ms` (at most
    MAX_WAIT_MS, and half a second before the call's deadline) is over. The event is reset
    *before* each look, so a wake-up between the look and the wait is kept for the wait (the
    other order lost a closing hub's wake-up for the whole interval)."""
    deadline = time.monotonic() + min(max(wait_ms, 0), MAX_WAIT_MS) / 1000
    remaining = context.time_remaining()
    if remaining is not None:
        deadline = min(deadline, time.monotonic() + max(remaining - 0.5, 0))
    while True:
        event.clear()
        if stopping.is_set() or not context.is_active() or ready():
            return
        left = deadline - time.monotonic()
        if left <= 0:
            return
        event.wait(min(left, RECHECK_SECONDS))
