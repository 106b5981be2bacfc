"""The `config` command of every role with a settings file (`oncofed hub config`, `oncofed query
config`): print the file with every setting and its default, or write it once. One definition,
over `oncofed.settings.render`, so the files are made alike and a new role's file costs one line.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import click

from oncofed.errors import UsageError


def config_command(group: click.Group, settings_module: str, summary: str) -> click.Command:
    """Add `config` to `group`: the settings file of `settings_module` (a module with SCHEMA and
    TITLE, imported only when the command runs, so other commands start no slower)."""

    @group.command("config", help=summary)
    @click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
                  help="Write the file here instead of printing it (refuses to overwrite).")
    def config_cmd(out: Path | None) -> None:
        from oncofed.settings import render

        module = import_module(settings_module)
        text = render(module.SCHEMA, module.TITLE)
        if out is None:
            click.echo(text, nl=False)
            return
        if out.exists():
            raise UsageError(f"{out} exists; refusing to overwrite it")
        out.write_text(text, "utf-8")
        click.echo(f"wrote {out}")

    return config_cmd
