"""What several commands share beyond output: a foreground service's shutdown on a signal, and the
hub operator's status reports (the hub's and its SuperLink's)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from oncofed.cli.output import emit_json


@contextmanager
def until_signal(on_signal: Callable[[signal.Signals], None] | None = None) -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets, the previous handlers put back on leaving: a service
    run in the foreground (systemd, a terminal) stops cleanly instead of dying mid-call."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if on_signal is not None:
            on_signal(signal.Signals(signum))
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def limit_option(what: str) -> Callable[[Any], Any]:
    """`--limit N`: how many recent items a status report shows."""
    return click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True,
                        help=f"Recent {what} shown.")


def hub_report(config_path: Path, build: Callable[..., dict[str, Any]], *, limit: int,
               as_json: bool) -> dict[str, Any] | None:
    """A status report built from hub.toml: printed as JSON (then None), or returned for the
    command to print as text."""
    from oncofed.federation.hub.config import load

    report = build(load(config_path), limit=limit)
    if as_json:
        emit_json(report)
        return None
    return report
