"""`oncofed hub config` and `oncofed query config`: the settings file each prints or writes, its
help, and a refusal to overwrite — the same for both commands, which share one implementation."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from oncofed.cli import main
from oncofed.federation.client import config as researcher_config
from oncofed.federation.hub import config as hub_config

CASES = [
    (["hub", "config"], hub_config.render, "Print a hub.toml with every setting and its default, to fill in."),
    (["query", "config"], researcher_config.render, "Print a researcher.toml with every setting, to fill in."),
]


@pytest.mark.parametrize(("command", "render", "summary"), CASES)
def test_config_prints_writes_and_refuses_to_overwrite(command: list[str], render: object, summary: str,
                                                      tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(main, command)
    assert shown.exit_code == 0 and shown.output == render()          # type: ignore[operator]
    assert shown.output.startswith("# oncofed ") and "see docs/federation.md" in shown.output.splitlines()[0]
    out = tmp_path / "settings.toml"
    wrote = runner.invoke(main, [*command, "--out", str(out)])
    assert wrote.exit_code == 0 and wrote.output == f"wrote {out}\n"
    assert out.read_text("utf-8") == shown.output
    again = runner.invoke(main, [*command, "--out", str(out)])
    assert again.exit_code != 0 and f"{out} exists; refusing to overwrite it" in again.output
    assert again.output.strip().count("\n") == 0
    helped = runner.invoke(main, [*command, "--help"])
    assert helped.exit_code == 0
    assert f"Usage: main {' '.join(command)} [OPTIONS]\n\n  {summary}\n" in helped.output
    assert "--out FILE  Write the file here instead of printing it (refuses to" in helped.output
