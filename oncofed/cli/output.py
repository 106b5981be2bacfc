"""Shared output helpers so every command prints text for people and `--json` for programs.

With `--json`, a refusal is JSON too: `{"error": MESSAGE, "exit_code": N, "kind": NAME}` on
stdout (where the command's JSON would have been), and the exit code is the same as without it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

JSON_META = "oncofed.json"


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[JSON_META] = True  # ctx.meta is shared by every context of one invocation
    return value


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, callback=_remember, expose_value=True,
                        help="Print machine-readable JSON (errors too).")(fn)


def wants_json(ctx: click.Context, argv: Sequence[str]) -> bool:
    """Whether this invocation asked for JSON: the option was parsed, or it is on the command
    line (an error can come before the option is parsed)."""
    words = list(argv)
    if "--" in words:
        words = words[:words.index("--")]
    return bool(ctx.meta.get(JSON_META)) or "--json" in words


def emit_error(message: str, exit_code: int, kind: str) -> None:
    emit_json({"error": message, "exit_code": exit_code, "kind": kind})


def plural(n: int, word: str, many: str = "") -> str:
    """`n` and its noun, singular or plural ("1 entry", "3 entries"): never "entr(ies)"."""
    if n == 1:
        return f"1 {word}"
    if not many:
        many = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{n:,} {many}"
